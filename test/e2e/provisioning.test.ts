/**
 * Provisioning end to end, on the local providers: a signed checkout in, a running, isolated instance out, with
 * the effects checked where they land (the control-plane and customer databases, the SMTP server, the runtime's
 * HTTP answers, Redis).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import { ADMIN, dumpKeys, startHarness, waitUntil, type Harness } from '../support/harness.ts';
import { bullBoardHeaders } from '../support/jobWaits.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../src/instances/secrets.ts';
import { provision, type Provisioned } from '../support/provision.ts';

async function canOpen(url: string): Promise<true | string> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await client.end().catch(() => undefined);
  }
}

describe('provisioning end to end (local providers)', function () {
  this.timeout(90_000);
  let h: Harness;
  let ann: Provisioned;
  let bob: Provisioned;

  before(async () => {
    // No reveal window: the sealed keys nobody revealed on the welcome page go at the sweep after their email.
    h = await startHarness({ KEY_REVEAL_WINDOW: '0' });
    [ann, bob] = await Promise.all([
      provision(h, 'ann@example.com', 'Ann Lee', 'pro'),
      provision(h, 'bob@example.com', 'Bob Stone', 'starter'),
    ]);
  });
  after(async () => h?.close());

  it('emails the access URL, the workspace id and the key, and records every step', async () => {
    expect(ann.mail.text).to.include(ann.view.accessUrl!).and.include(ann.view.workspaceId).and.include('Hello Ann Lee');
    expect(ann.mail.headers['message-id']).to.equal(`<welcome-${ann.view.workspaceId}@clawdbot>`);
    expect(ann.view.plan).to.equal('pro');
    expect(ann.view.steps.map((s) => s.name)).to.have.members([
      'create-branch', 'create-service', 'build-workspace', 'deploy', 'health-check', 'send-welcome-email', 'finalize',
    ]);
    expect(ann.view.steps.every((s) => s.state === 'completed' && s.startedAt && s.finishedAt)).to.equal(true);
    const { rows } = await h.db.query('SELECT action FROM audit WHERE instance_id = $1 ORDER BY id', [ann.instanceId]);
    expect(rows.map((r) => r.action)).to.deep.equal(['instance.created', 'instance.active']);
  });

  it('runs the runtime: /health answers, /status takes only the customer’s own key', async () => {
    const health = await fetch(`${ann.view.accessUrl}/health`);
    expect(health.status).to.equal(200);
    const status = await fetch(`${ann.view.accessUrl}/status`, { headers: { authorization: `Bearer ${ann.apiKey}` } });
    expect(status.status).to.equal(200);
    const body = (await status.json()) as { workspaceId: string; plan: string; usage: { messageLimit: number } };
    expect(body.workspaceId).to.equal(ann.view.workspaceId);
    expect(body.plan).to.equal('pro');
    expect(body.usage.messageLimit).to.equal(20_000);

    expect((await fetch(`${ann.view.accessUrl}/status`)).status).to.equal(401);
    const crossed = await fetch(`${ann.view.accessUrl}/status`, { headers: { authorization: `Bearer ${bob.apiKey}` } });
    expect(crossed.status).to.equal(401);
    const own = await fetch(`${bob.view.accessUrl}/status`, { headers: { authorization: `Bearer ${bob.apiKey}` } });
    expect(own.status).to.equal(200);
  });

  it('keeps only the hash of the key, and the sealed copy is gone once the email is sent and the reveal window passed', async () => {
    const { rows } = await h.db.query('SELECT api_key_hash FROM instances WHERE id = $1', [ann.instanceId]);
    expect(rows[0].api_key_hash).to.match(/^[0-9a-f]{64}$/);
    for (const instanceId of [ann.instanceId, bob.instanceId]) {
      await waitUntil(async () => (await h.plane.ctx.secrets.get(instanceOwner(instanceId), INSTANCE_SECRETS.pendingApiKey)) === null, 10_000);
    }
    const keys = [ann.apiKey, bob.apiKey];

    // Every sealed secret, opened: the database URLs are there, no key is.
    const { rows: sealed } = await h.db.query<{ owner: string; name: string }>('SELECT owner, name FROM secrets');
    const opened = await Promise.all(sealed.map(async ({ owner, name }) => ({ owner, name, value: (await h.plane.ctx.secrets.get(owner, name))! })));
    expect(opened.find((s) => s.owner === instanceOwner(ann.instanceId) && s.name === INSTANCE_SECRETS.databaseUrl)?.value).to.equal(ann.databaseUrl);
    for (const { owner, name, value } of opened) {
      for (const key of keys) expect(value, `secret ${owner}/${name}`).to.not.include(key);
    }

    // Every row of every control-plane table, as text: neither a key nor a database password.
    const passwords = [new URL(ann.databaseUrl).password, new URL(bob.databaseUrl).password];
    expect(passwords.every((p) => p.length >= 16)).to.equal(true);
    const { rows: tables } = await h.db.query<{ name: string }>(
      `SELECT quote_ident(table_name) AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`,
    );
    expect(tables.map((t) => t.name)).to.include.members(['instances', 'secrets', 'steps', 'audit']);
    for (const { name } of tables) {
      const { rows } = await h.db.query<{ row: string }>(`SELECT t::text AS row FROM ${name} t`);
      const text = rows.map((r) => r.row).join('\n');
      for (const secret of [...keys, ...passwords]) expect(text, `table ${name}`).to.not.include(secret);
    }
  });

  it('writes the workspace with the customer’s details, on disk and in the customer database', async () => {
    const { rows } = await h.db.query('SELECT service_id FROM instances WHERE id = $1', [ann.instanceId]);
    const dir = path.join(h.config.runtime.workspacesDir, rows[0].service_id);
    const user = await readFile(path.join(dir, 'USER.md'), 'utf8');
    expect(user).to.include('Ann Lee').and.include('ann@example.com');
    const state = JSON.parse(await readFile(path.join(dir, 'STATE.json'), 'utf8'));
    expect(state).to.include({ workspaceId: ann.view.workspaceId, plan: 'pro', messageLimit: 20_000 });
    await readFile(path.join(dir, 'skills/gmail/SKILL.md'), 'utf8');

    const client = new pg.Client({ connectionString: ann.databaseUrl });
    await client.connect();
    try {
      const files = await client.query<{ path: string; content: string }>('SELECT path, content FROM workspace_files');
      const paths = files.rows.map((r) => r.path);
      expect(paths).to.include.members(['SOUL.md', 'USER.md', 'AGENTS.md', 'TOOLS.md', 'HEARTBEAT.md', 'STATE.json', 'MEMORY.md', '.env']);
      expect(files.rows.find((r) => r.path === 'USER.md')!.content).to.equal(user);
      const keys = await client.query('SELECT count(*)::int AS n FROM api_keys WHERE revoked_at IS NULL');
      expect(keys.rows[0].n).to.equal(1);
    } finally {
      await client.end();
    }
  });

  it('keeps what the customer changed when build-workspace runs again (an operator re-runs a completed job)', async () => {
    const client = new pg.Client({ connectionString: ann.databaseUrl });
    await client.connect();
    try {
      await client.query(`UPDATE workspace_files SET content = '# Ann prefers short answers' WHERE path = 'MEMORY.md'`);
      const jobId = `${ann.view.workspaceId}-build-workspace`;
      const finishedBefore = (await h.plane.ctx.queues.get('provision').getJob(jobId))!.finishedOn!;
      const retry = await fetch(`${h.url}/admin/queues/api/queues/provision/${jobId}/retry`, { method: 'PUT', headers: bullBoardHeaders(h) });
      expect(retry.status).to.equal(204);
      await waitUntil(async () => {
        const job = (await h.plane.ctx.queues.get('provision').getJob(jobId))!;
        return (await job.getState()) === 'completed' && job.finishedOn! > finishedBefore;
      });
      const memory = await client.query(`SELECT content FROM workspace_files WHERE path = 'MEMORY.md'`);
      expect(memory.rows[0].content).to.equal('# Ann prefers short answers');
      const keys = await client.query('SELECT count(*)::int AS n FROM api_keys');
      expect(keys.rows[0].n).to.equal(1);
    } finally {
      await client.end();
    }
    const status = await fetch(`${ann.view.accessUrl}/status`, { headers: { authorization: `Bearer ${ann.apiKey}` } });
    expect(status.status).to.equal(200);
  });

  it('isolates databases: each customer’s credentials open its own database and no other', async () => {
    expect(await canOpen(ann.databaseUrl)).to.equal(true);
    expect(await canOpen(bob.databaseUrl)).to.equal(true);
    const bobIntoAnn = new URL(bob.databaseUrl);
    bobIntoAnn.pathname = new URL(ann.databaseUrl).pathname;
    expect(await canOpen(bobIntoAnn.toString())).to.match(/permission denied for database/);
    const bobIntoControlPlane = new URL(bob.databaseUrl);
    bobIntoControlPlane.pathname = new URL(h.config.databaseUrl).pathname;
    expect(await canOpen(bobIntoControlPlane.toString())).to.match(/permission denied for database/);
  });

  it('serves Bull Board only to operators', async () => {
    const anonymous = await fetch(`${h.url}/admin/queues`);
    expect(anonymous.status).to.equal(401);
    expect(anonymous.headers.get('www-authenticate')).to.match(/^Basic/);
    const wrong = await fetch(`${h.url}/admin/queues`, { headers: { authorization: `Basic ${btoa(`${ADMIN.user}:nope`)}` } });
    expect(wrong.status).to.equal(401);
    const auth = { authorization: `Basic ${btoa(`${ADMIN.user}:${ADMIN.password}`)}` };
    const page = await fetch(`${h.url}/admin/queues`, { headers: auth });
    expect(page.status).to.equal(200);
    const queues = await fetch(`${h.url}/admin/queues/api/queues?activeQueue=provision&status=completed&page=1`, { headers: auth });
    expect(queues.status).to.equal(200);
    const names = ((await queues.json()) as { queues: { name: string }[] }).queues.map((q) => q.name);
    expect(names).to.include.members(['stripe-events', 'provision', 'compute', 'database', 'alerts']);
  });

  it('shows the flow as a tree of jobs whose return values carry ids and URLs only', async () => {
    const finalize = await h.plane.ctx.queues.get('provision').getJob(`${ann.view.workspaceId}-finalize`);
    expect(finalize, 'the root of the flow').to.not.equal(undefined);
    const children = await finalize!.getChildrenValues();
    expect(Object.keys(children)).to.have.length(1);
    const deploy = await h.plane.ctx.queues.get('compute').getJob(`${ann.view.workspaceId}-deploy`);
    expect(deploy!.parentKey).to.include(`${ann.view.workspaceId}-health-check`);
    expect(JSON.stringify(deploy!.returnvalue)).to.not.match(/postgres|claw_/);
    const logs = await h.plane.ctx.queues.get('compute').getJobLogs(deploy!.id!);
    expect(logs.logs.join('\n')).to.include('deployment');
  });

  it('refuses the admin API without the token and validates provisioning requests', async () => {
    const anonymous = await fetch(`${h.url}/api/customers/${ann.customerId}/instance`);
    expect(anonymous.status).to.equal(401);
    expect(await anonymous.json()).to.have.property('error', 'unauthorized');
    const bad = await h.admin('/api/admin/provision', { method: 'POST', body: JSON.stringify({ email: 'not-an-email', plan: 'gold' }) });
    expect(bad.status).to.equal(400);
    const reason = ((await bad.json()) as { reason: string }).reason;
    expect(reason).to.include('email').and.include('plan');
    const missing = await h.admin('/api/customers/cus_nobody/instance');
    expect(missing.status).to.equal(404);
    const { rows } = await h.db.query('SELECT count(*)::int AS n FROM instances');
    expect(rows[0].n).to.equal(2);
  });

  it('provisions a comped customer through the admin API, once per idempotency key', async () => {
    const request = () =>
      h.admin('/api/admin/provision', {
        method: 'POST',
        headers: { 'idempotency-key': 'comp-carol-1' },
        body: JSON.stringify({ email: 'carol@example.com', plan: 'team', name: 'Carol' }),
      });
    const first = await request();
    expect(first.status).to.equal(202);
    const created = (await first.json()) as { customerId: string; workspaceId: string };
    const again = (await (await request()).json()) as { customerId: string; workspaceId: string };
    expect(again).to.deep.include({ customerId: created.customerId, workspaceId: created.workspaceId });
    const view = await h.waitForStatus(created.customerId, ['active', 'failed']);
    expect(view.status).to.equal('active');
    expect(view.plan).to.equal('team');
    await h.smtp.waitFor((m) => m.to.includes('carol@example.com'));
    const later = await request(); // after the flow is done (and possibly long gone from Redis): nothing new
    expect(later.status).to.equal(200);
    const customers = await h.db.query('SELECT count(*)::int AS n FROM customers WHERE email = $1', ['carol@example.com']);
    expect(customers.rows[0].n).to.equal(1);
  });

  it('leaves no key, password or connection string anywhere in Redis', async () => {
    const dump = (await dumpKeys(h.redis, `${h.config.queuePrefix}:*`)).join('\n');
    expect(dump.length).to.be.greaterThan(1000); // the queues are really there
    const secrets = [ann.apiKey, bob.apiKey, new URL(ann.databaseUrl).password, new URL(bob.databaseUrl).password];
    for (const secret of secrets) expect(dump).to.not.include(secret);
    expect(dump).to.not.match(/claw_[0-9A-Za-z]{20,}/);
    expect(dump).to.not.match(/postgres(ql)?:\/\/[^"\s]*:[^"\s]*@/);
    expect(dump).to.not.include(h.config.secretsKey.toString('base64'));
    expect(dump).to.not.include(ADMIN.token);
  });
});
