/**
 * The shipped entry points as real processes: web and worker started apart provision a customer together, SIGTERM
 * drains both to a clean exit, and bad configuration stops start-up with every problem named.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import pg from 'pg';
import { quoteIdent } from '../../core/postgres.ts';
import { deleteKeys, waitUntil } from '../support/harness.ts';

interface Proc {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function start(script: string, env: Record<string, string>): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** The log lines a process wrote (JSON, one event a line). */
function logLines(proc: Proc): Record<string, unknown>[] {
  return proc
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('the web and worker processes', function () {
  this.timeout(60_000);
  const id = randomBytes(4).toString('hex');
  const database = `cp_proc_${id}`;
  let varDir: string;
  let env: Record<string, string>;

  before(async () => {
    varDir = await mkdtemp(path.join(tmpdir(), 'clawdbot-proc-'));
    env = {
      DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${database}`,
      QUEUE_PREFIX: `{proc-${id}}`,
      VAR_DIR: varDir,
      ADMIN_TOKEN: 'proc-admin-token',
      HEALTH_CHECK_INTERVAL: '100ms',
      LOG_FORMAT: 'json',
    };
  });

  after(async () => {
    const cp = new pg.Client({ connectionString: env.DATABASE_URL });
    const made = await cp.connect().then(
      () => cp.query<{ database_name: string }>('SELECT database_name FROM instances WHERE database_name IS NOT NULL'),
      () => ({ rows: [] as { database_name: string }[] }), // the control-plane database was never created
    );
    await cp.end().catch(() => undefined);
    const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
    await admin.connect();
    for (const { database_name: name } of made.rows) {
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
      await admin.query(`DROP ROLE IF EXISTS ${quoteIdent(name)}`);
    }
    await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
    await admin.end();
    const redis = new Redis('redis://127.0.0.1:6379');
    await deleteKeys(redis, `{proc-${id}}:*`);
    redis.disconnect();
    await rm(varDir, { recursive: true, force: true });
  });

  it('provisions with web and worker as separate processes, then drains both on SIGTERM', async () => {
    const web = start('src/bin/web.ts', { ...env, PORT: '0' });
    const listening = () => logLines(web).find((line) => line.message === 'web listening');
    await waitUntil(async () => listening() !== undefined, 20_000);
    const url = listening()!.url as string;
    expect(listening()).to.include({ level: 'info', scope: 'control-plane' });
    expect(listening()!.bullBoard).to.include('/admin/queues');
    const worker = start('src/bin/worker.ts', env);

    const response = await fetch(`${url}/api/admin/provision`, {
      method: 'POST',
      headers: { authorization: 'Bearer proc-admin-token', 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'ivy@example.com', plan: 'starter' }),
    });
    expect(response.status).to.equal(202);
    const { customerId } = (await response.json()) as { customerId: string };
    let view: { status: string; accessUrl: string } | undefined;
    await waitUntil(async () => {
      const r = await fetch(`${url}/api/customers/${customerId}/instance`, { headers: { authorization: 'Bearer proc-admin-token' } });
      view = (await r.json()) as { status: string; accessUrl: string };
      return view.status === 'active';
    }, 30_000);
    expect((await fetch(`${view!.accessUrl}/health`)).status).to.equal(200);

    // Without SMTP_URL the welcome email lands in var/outbox as an .eml file.
    const outbox = path.join(varDir, 'outbox');
    const [eml] = await readdir(outbox);
    expect(await readFile(path.join(outbox, eml!), 'utf8')).to.include('To: ivy@example.com').and.include('claw_');

    worker.child.kill('SIGTERM');
    web.child.kill('SIGTERM');
    expect(await worker.exited).to.equal(0);
    expect(await web.exited).to.equal(0);
    expect(logLines(worker).map((line) => line.message)).to.include.members(['draining', 'stopped']);
    // The worker stopped the runtimes it ran.
    await waitUntil(async () => (await fetch(`${view!.accessUrl}/health`).catch(() => undefined)) === undefined);
  });

  it('refuses to start with bad configuration, naming every problem at once', async () => {
    const proc = start('src/bin/start.ts', { PORT: 'abc', REDIS_URL: 'http://nope', COMPUTE_PROVIDER: 'aws', VAR_DIR: varDir });
    expect(await proc.exited).to.equal(1);
    // One JSON line, as an operator's log reader (Railway) takes it.
    const [line, ...more] = logLines(proc);
    expect(more).to.deep.equal([]);
    expect(line).to.include({ level: 'error', message: 'invalid configuration' });
    expect(JSON.stringify(line!.problems)).to.include('PORT').and.include('REDIS_URL').and.include('COMPUTE_PROVIDER');
  });

  it('refuses to start in production without its secrets', async () => {
    const proc = start('src/bin/start.ts', { NODE_ENV: 'production', VAR_DIR: varDir });
    expect(await proc.exited).to.equal(1);
    for (const name of ['SECRETS_KEY', 'STRIPE_WEBHOOK_SECRET', 'STRIPE_SECRET_KEY', 'ADMIN_PASSWORD', 'ADMIN_TOKEN']) {
      expect(proc.output()).to.include(name);
    }
  });
});
