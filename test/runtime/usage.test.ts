/** The monthly message count: reservations against a real customer database, alone and racing each other. */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import type { HttpError } from '../../core/http/httpError.ts';
import { quoteIdent } from '../../core/postgres.ts';
import { monthUsage, releaseMessage, reserveMessage } from '../../runtime/src/usage.ts';
import { rejection } from '../support/rejection.ts';
import { createRuntimeDatabase, PG_SERVER } from '../support/runtimeDatabase.ts';

describe('runtime usage: reserving a message', () => {
  const dbName = `rt_usage_${randomBytes(6).toString('hex')}`;
  let pool: pg.Pool;
  const now = new Date('2026-05-20T12:00:00Z');

  before(async () => {
    pool = (await createRuntimeDatabase(dbName, 12)).pool;
  });
  beforeEach(async () => {
    await pool.query('TRUNCATE usage_tracking, conversations CASCADE');
  });
  after(async () => {
    await pool?.end();
    const admin = new pg.Client({ connectionString: `${PG_SERVER}/postgres` });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(dbName)} WITH (FORCE)`);
    await admin.end();
  });

  it('counts the month across its days, not the month before, and refuses past the limit with 429 and when it resets', async () => {
    await pool.query(`INSERT INTO usage_tracking (day, messages) VALUES ('2026-04-30', 50), ('2026-05-01', 2), ('2026-05-19', 1)`);
    expect(await reserveMessage(pool, 5, now)).to.equal(4);
    expect(await reserveMessage(pool, 5, now)).to.equal(5);
    const refused = (await rejection(reserveMessage(pool, 5, now))) as HttpError;
    expect(refused).to.include({ status: 429, code: 'message_limit_reached' });
    expect(refused.extra).to.deep.equal({ limit: 5, used: 5, resetsAt: '2026-06-01T00:00:00Z' });
    expect(Number(refused.headers['Retry-After'])).to.equal((Date.parse('2026-06-01T00:00:00Z') - now.getTime()) / 1000);
    expect((await monthUsage(pool, now)).messages).to.equal(5);

    await releaseMessage(pool, '2026-05-20');
    expect(await reserveMessage(pool, 5, now)).to.equal(5); // a message given back makes room again
  });

  it('refuses a conversation that does not exist with 404 and counts nothing; an existing one is counted', async () => {
    const missing = (await rejection(reserveMessage(pool, 5, now, '00000000-0000-4000-8000-000000000000'))) as HttpError;
    expect(missing).to.include({ status: 404, code: 'not_found' });
    expect((await monthUsage(pool, now)).messages).to.equal(0);

    const { rows } = await pool.query<{ id: string }>(`INSERT INTO conversations (title) VALUES ('it''s a test') RETURNING id`);
    expect(await reserveMessage(pool, 5, now, rows[0]!.id)).to.equal(1);
    // Even at the limit, an unknown conversation is what the answer says.
    await pool.query(`UPDATE usage_tracking SET messages = 5`);
    expect(((await rejection(reserveMessage(pool, 5, now, "x' OR true --"))) as Error).message).to.match(/uuid/);
    expect((await rejection(reserveMessage(pool, 5, now, '00000000-0000-4000-8000-000000000000'))) as HttpError).to.include({ status: 404 });
  });

  it('lets concurrent reservations pass the limit together never: exactly the limit succeed, each with its own count', async () => {
    const limit = 10;
    const results = await Promise.allSettled(Array.from({ length: 3 * limit }, () => reserveMessage(pool, limit, now)));
    const counts = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const refusals = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as HttpError).code] : []));
    expect(counts.sort((a, b) => a - b)).to.deep.equal(Array.from({ length: limit }, (_, i) => i + 1));
    expect(refusals).to.deep.equal(Array(2 * limit).fill('message_limit_reached'));
    expect((await monthUsage(pool, now)).messages).to.equal(limit);
  });
});
