/**
 * Preloaded into a bench's worker process (BENCH_PROFILE): counts the Postgres queries and Redis commands the process
 * makes, by statement and by command (BullMQ's scripts by name), and writes them to
 * `$BENCH_PROFILE/round-trips-<pid>.json` when the process exits. Measuring only: nothing here changes a result.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';

const dir = process.env.BENCH_PROFILE!;
const pgCounts = new Map<string, number>();
const redisCounts = new Map<string, number>();
const scripts = new Map<string, string>();
const bump = (counts: Map<string, number>, key: string) => counts.set(key, (counts.get(key) ?? 0) + 1);

const query = pg.Client.prototype.query as (...args: unknown[]) => unknown;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  const first = args[0] as string | { text?: string; name?: string };
  const text = typeof first === 'string' ? first : (first?.text ?? first?.name ?? '?');
  bump(pgCounts, text.replace(/\s+/g, ' ').trim().slice(0, 120));
  return query.apply(this, args);
} as typeof pg.Client.prototype.query;

const defineCommand = Redis.prototype.defineCommand;
Redis.prototype.defineCommand = function (this: Redis, name: string, definition: { lua: string; numberOfKeys?: number }) {
  scripts.set(createHash('sha1').update(definition.lua).digest('hex'), name);
  return defineCommand.call(this, name, definition);
};
const sendCommand = Redis.prototype.sendCommand;
Redis.prototype.sendCommand = function (this: Redis, command: { name: string; args: unknown[] }, ...rest: unknown[]) {
  const name = command.name === 'evalsha' || command.name === 'eval' ? `script ${scripts.get(String(command.args[0])) ?? '?'}` : command.name;
  bump(redisCounts, name);
  return (sendCommand as (...a: unknown[]) => unknown).call(this, command, ...rest);
} as typeof Redis.prototype.sendCommand;

const sorted = (counts: Map<string, number>) => Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]));
process.on('exit', () => {
  writeFileSync(join(dir, `round-trips-${process.pid}.json`), JSON.stringify({ postgres: sorted(pgCounts), redis: sorted(redisCounts) }, null, 1));
});
