/**
 * Fleet settings and rollouts, end to end on the local providers: a settings rollout moves the canary, then each
 * batch; a runtime version that fails its health check halts the rollout at the canary, which goes back to what it
 * ran, with one alert; and a control plane restarted with ANTHROPIC_API_KEY set brings existing customers their model
 * with one request.
 */
import { expect } from 'chai';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { logTo } from '../../core/logger.ts';
import { QUEUES } from '../../src/queues/catalogue.ts';
import { dumpKeys, RUNTIME_IMAGE, RUNTIME_REPO, startHarness, waitUntil, type Harness } from '../support/harness.ts';
import type { RuntimeSpec } from '../emulators/railwayEmulator.ts';

interface RolloutView {
  id: number;
  state: string;
  targetGeneration: number;
  previousGeneration: number;
  haltReason: string | null;
  instances: { instanceId: string; batch: number; position: number; state: string; rollback: string | null; fromGeneration: number | null; startedAt: string | null; finishedAt: string | null; detail: string | null }[];
}

interface Customer {
  instanceId: string;
  accessUrl: string;
  key: string;
}

/** Provisions customers through Stripe checkouts; each with its access URL and the key from its welcome email. */
async function provision(h: Harness, emails: string[]): Promise<Customer[]> {
  const checkouts = emails.map((email) => ({ email, ...h.checkout({ email }) }));
  for (const c of checkouts) expect((await h.deliver(c.event)).status).to.equal(200);
  const customers: Customer[] = [];
  for (const c of checkouts) {
    const view = await h.waitForStatus(c.customerId, ['active', 'failed'], 60_000);
    expect(view.status, JSON.stringify(view.failure)).to.equal('active');
    const mail = await h.smtp.waitFor((m) => m.to.includes(c.email));
    customers.push({ instanceId: view.instanceId, accessUrl: view.accessUrl!, key: /claw_[0-9A-Za-z]{43}/.exec(mail.text)![0] });
  }
  return customers;
}

function chat(customer: Customer, message: string): Promise<Response> {
  return fetch(`${customer.accessUrl}/api/chat`, {
    method: 'POST',
    headers: { authorization: `Bearer ${customer.key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ message }),
  });
}

async function rollout(h: Harness, id: number): Promise<RolloutView> {
  const response = await h.admin(`/api/admin/rollouts/${id}`);
  expect(response.status).to.equal(200);
  return (await response.json()) as RolloutView;
}

async function finished(h: Harness, id: number, timeoutMs = 120_000): Promise<RolloutView> {
  let last: RolloutView | undefined;
  await waitUntil(async () => {
    last = await rollout(h, id);
    return ['completed', 'halted', 'aborted'].includes(last.state);
  }, timeoutMs);
  return last!;
}

async function currentGeneration(h: Harness): Promise<number> {
  const { rows } = await h.db.query<{ generation_id: number }>('SELECT generation_id FROM fleet_current');
  return rows[0]!.generation_id;
}

describe('rollouts', function () {
  this.timeout(300_000);
  let h: Harness;
  let releases: string;
  let customers: Customer[];

  before(async () => {
    // A release whose runtime starts and answers every request, /health too, with 500.
    releases = await mkdtemp(path.join(tmpdir(), 'clawdbot-releases-'));
    await mkdir(path.join(releases, 'broken'));
    await writeFile(
      path.join(releases, 'broken', 'main.ts'),
      `import { createServer } from 'node:http';
createServer((req, res) => { res.writeHead(500, { 'content-type': 'application/json' }); res.end('{"status":"broken"}'); })
  .listen(Number(process.env.PORT), process.env.HOST ?? '127.0.0.1');
`,
    );
    h = await startHarness({ RUNTIME_RELEASES_DIR: releases, ROLLOUT_HEALTH_TIMEOUT: '15s' });
    customers = await provision(h, ['r1@example.com', 'r2@example.com', 'r3@example.com', 'r4@example.com', 'r5@example.com', 'r6@example.com']);
  });
  after(async () => {
    await h?.close();
    if (releases) await rm(releases, { recursive: true, force: true });
  });

  it('refuses secrets and unknown fields in the body, and versions that are not on disk, changing nothing', async () => {
    const post = (body: unknown) => h.admin('/api/admin/rollouts', { method: 'POST', body: JSON.stringify(body) });
    const before = await currentGeneration(h);
    for (const body of [{ settings: { anthropicApiKey: 'sk-ant-x' } }, { apiKey: 'sk-ant-x' }, { settings: { ANTHROPIC_API_KEY: 'x' } }]) {
      const response = await post(body);
      expect(response.status).to.equal(400);
      const reason = ((await response.json()) as { message?: string; error?: string }) ;
      expect(JSON.stringify(reason)).to.include('secrets').and.include('configuration').and.not.include('sk-ant-x');
    }
    expect((await post({ colour: 'blue' })).status).to.equal(400);
    expect((await post({ batchSize: 0 })).status).to.equal(400);
    const missing = await post({ version: 'nowhere' });
    expect(missing.status).to.equal(400);
    expect(JSON.stringify(await missing.json())).to.include('not on disk');
    const { rows } = await h.db.query('SELECT count(*)::int AS n FROM rollouts');
    expect(rows[0].n).to.equal(0);
    expect(await currentGeneration(h)).to.equal(before);
  });

  it('rolls a new model out to 6 instances, the canary first and then batches of 2; each runtime then asks for it', async () => {
    const before = await currentGeneration(h);
    const response = await h.admin('/api/admin/rollouts', {
      method: 'POST',
      body: JSON.stringify({ settings: { model: 'claude-rollout-test' }, batchSize: 2 }),
    });
    expect(response.status).to.equal(202);
    const started = (await response.json()) as { id: number; instances: number; batches: number; targetGeneration: number };
    expect(started).to.include({ instances: 6, batches: 3 });
    // One rollout at a time.
    expect((await h.admin('/api/admin/rollouts', { method: 'POST', body: '{}' })).status).to.equal(409);
    // While it runs, new provisions still get the generation that was current.
    expect(await currentGeneration(h)).to.equal(before);

    const done = await finished(h, started.id);
    expect(done.state).to.equal('completed');
    expect(done.instances.map((i) => i.batch)).to.deep.equal([0, 1, 1, 2, 2, 3]);
    expect(done.instances.map((i) => i.state)).to.deep.equal(Array(6).fill('healthy'));
    // The order is in the record: no instance of a batch started before every instance of the batches before it finished.
    for (const row of done.instances) {
      for (const earlier of done.instances.filter((e) => e.batch < row.batch)) {
        expect(new Date(row.startedAt!).getTime(), `batch ${row.batch} after batch ${earlier.batch}`).to.be.at.least(new Date(earlier.finishedAt!).getTime());
      }
    }
    expect(await currentGeneration(h)).to.equal(started.targetGeneration);
    const { rows } = await h.db.query<{ settings_generation: number }>('SELECT settings_generation FROM instances');
    expect(rows.map((r) => r.settings_generation)).to.deep.equal(Array(6).fill(started.targetGeneration));
    // Each instance's data was backed up (and the backup verified) before it changed.
    const { rows: backedUp } = await h.db.query<{ instance_id: string; state: string }>(`SELECT instance_id, state FROM backups WHERE reason = 'rollout'`);
    expect(backedUp.map((b) => b.state)).to.deep.equal(Array(6).fill('verified'));
    expect(new Set(backedUp.map((b) => b.instance_id)).size).to.equal(6);

    for (const customer of customers) {
      h.model.reset();
      const answer = await chat(customer, 'hello after the rollout');
      expect(answer.status).to.equal(200);
      expect(h.model.requests.map((r) => r.body.model)).to.include('claude-rollout-test').and.not.include('claude-sonnet-4-5');
    }
    const coordinator = await h.completedJob(QUEUES.rollouts, `rollout-${started.id}`);
    const logs = await h.plane.ctx.queues.get(QUEUES.rollouts).getJobLogs(coordinator.id!);
    expect(logs.logs.join('\n')).to.include('canary').and.include('batch 3').and.include('completed');
  });

  it('halts at a canary whose version fails its health check: the canary goes back and is healthy, the others are untouched, one alert', async () => {
    const before = await currentGeneration(h);
    const { rows: deployedBefore } = await h.db.query<{ id: string; deployment_id: string }>(
      'SELECT i.id, l.deployment_id FROM instances i JOIN local_services l ON l.name = i.service_id ORDER BY i.id',
    );
    const slackBefore = h.slack.posts.length;
    const mailBefore = h.smtp.messages.filter((m) => m.to.includes('ops@clawdbot.test')).length;

    const response = await h.admin('/api/admin/rollouts', { method: 'POST', body: JSON.stringify({ version: 'broken', batchSize: 2 }) });
    expect(response.status).to.equal(202);
    const { id } = (await response.json()) as { id: number };
    const done = await finished(h, id);
    expect(done.state).to.equal('halted');
    expect(done.haltReason).to.include('not healthy');
    const [canary, ...others] = done.instances;
    expect(canary).to.include({ batch: 0, state: 'rolled_back', rollback: 'done', fromGeneration: before });
    expect(others.map((o) => o.state)).to.deep.equal(Array(5).fill('pending'));

    // The canary runs the generation it ran before, healthy; the current generation is as it was.
    const canaryCustomer = customers.find((c) => c.instanceId === canary!.instanceId)!;
    const health = await fetch(`${canaryCustomer.accessUrl}/health`);
    expect(health.status).to.equal(200);
    expect(await health.json()).to.deep.include({ version: 'builtin', settingsGeneration: before });
    expect((await chat(canaryCustomer, 'still here?')).status).to.equal(200);
    expect(await currentGeneration(h)).to.equal(before);
    // The five others were never redeployed.
    const { rows: deployedAfter } = await h.db.query<{ id: string; deployment_id: string }>(
      'SELECT i.id, l.deployment_id FROM instances i JOIN local_services l ON l.name = i.service_id ORDER BY i.id',
    );
    const changed = deployedAfter.filter((row, i) => row.deployment_id !== deployedBefore[i]!.deployment_id).map((row) => row.id);
    expect(changed).to.deep.equal([canary!.instanceId]);

    // One incident: one Slack post and one email.
    const { rows: incidents } = await h.db.query<{ id: string }>(`SELECT id FROM audit WHERE action = 'rollout.halted'`);
    expect(incidents).to.have.length(1);
    await h.completedJob(QUEUES.alerts, `alert-${incidents[0]!.id}-slack`);
    await h.completedJob(QUEUES.alerts, `alert-${incidents[0]!.id}-email`);
    const posts = h.slack.posts.slice(slackBefore);
    expect(posts).to.have.length(1);
    expect(JSON.stringify(posts[0])).to.include(`Rollout ${id} halted`);
    const mails = h.smtp.messages.filter((m) => m.to.includes('ops@clawdbot.test')).slice(mailBefore);
    expect(mails).to.have.length(1);
  });

  it('pauses (nothing new starts) and aborts (what changed goes back), each action audited', async () => {
    const before = await currentGeneration(h);
    const response = await h.admin('/api/admin/rollouts', { method: 'POST', body: JSON.stringify({ settings: { model: 'claude-paused' }, batchSize: 5 }) });
    expect(response.status).to.equal(202);
    const { id } = (await response.json()) as { id: number };
    expect((await h.admin(`/api/admin/rollouts/${id}/resume`, { method: 'POST' })).status).to.equal(409); // not paused
    expect((await h.admin(`/api/admin/rollouts/${id}/pause`, { method: 'POST' })).status).to.equal(202);
    // Paused: whatever had started finishes, and the batch after it never starts.
    let paused: RolloutView | undefined;
    await waitUntil(async () => {
      paused = await rollout(h, id);
      return paused.instances.every((i) => i.state !== 'updating');
    }, 60_000);
    expect(paused!.state).to.equal('paused');
    expect(paused!.instances.slice(1).map((i) => i.state)).to.deep.equal(Array(5).fill('pending'));

    expect((await h.admin(`/api/admin/rollouts/${id}/abort`, { method: 'POST' })).status).to.equal(202);
    const done = await finished(h, id);
    expect(done.state).to.equal('aborted');
    // The canary went back if it had been changed; nothing else was touched.
    expect(['pending', 'rolled_back']).to.include(done.instances[0]!.state);
    expect(done.instances.slice(1).map((i) => i.state)).to.deep.equal(Array(5).fill('pending'));
    expect(await currentGeneration(h)).to.equal(before);
    const { rows } = await h.db.query<{ settings_generation: number }>('SELECT settings_generation FROM instances');
    expect(rows.map((r) => r.settings_generation)).to.deep.equal(Array(6).fill(before));
    expect((await h.admin(`/api/admin/rollouts/${id}/pause`, { method: 'POST' })).status).to.equal(409);
    const { rows: trail } = await h.db.query<{ action: string }>(
      `SELECT action FROM audit WHERE action LIKE 'rollout.%' AND (detail->>'rolloutId')::int = $1 ORDER BY id`,
      [id],
    );
    expect(trail.map((r) => r.action)).to.include.members(['rollout.created', 'rollout.pause_requested', 'rollout.abort_requested', 'rollout.rolled_back']);
    const list = (await (await h.admin('/api/admin/rollouts')).json()) as { current: { id: number }; behind: number; rollouts: { id: number; state: string }[] };
    expect(list.rollouts[0]).to.include({ id, state: 'aborted' });
    expect(list.current.id).to.equal(before);
    expect(list.behind).to.equal(0);
  });
});

describe('rollouts: ANTHROPIC_API_KEY set after customers exist', function () {
  this.timeout(300_000);
  let h: Harness;
  const lines: string[] = [];
  before(async () => {
    h = await startHarness({ ANTHROPIC_API_KEY: '' });
  });
  after(async () => {
    logTo(undefined);
    await h?.close();
  });

  it('says so at the restart, and one rollout of {} brings the existing customers their model, keys unchanged', async () => {
    const customers = await provision(h, ['k1@example.com', 'k2@example.com']);
    for (const customer of customers) {
      const refused = await chat(customer, 'hello?');
      expect(refused.status).to.equal(503);
      expect(JSON.stringify(await refused.json())).to.include('not configured');
    }
    const { rows: keysBefore } = await h.db.query('SELECT id, api_key_hash FROM instances ORDER BY id');

    logTo({ write: (line: string) => lines.push(line) });
    await h.restart({ ANTHROPIC_API_KEY: h.model.apiKey });
    logTo(undefined);
    const warning = lines.filter((line) => line.includes('POST /api/admin/rollouts'));
    expect(warning, lines.join('')).to.have.length(1);
    expect(warning[0]).to.include('ANTHROPIC_API_KEY').and.include('2 instance(s)').and.not.include(h.model.apiKey);

    // A customer provisioned now gets the current settings at once.
    const [newcomer] = await provision(h, ['k3@example.com']);
    expect((await chat(newcomer!, 'hello from a new customer')).status).to.equal(200);

    const fleet = (await (await h.admin('/api/admin/rollouts')).json()) as { current: { secrets: string[] }; behind: number };
    expect(fleet.behind).to.equal(2);
    expect(fleet.current.secrets).to.include('ANTHROPIC_API_KEY');
    const response = await h.admin('/api/admin/rollouts', { method: 'POST', body: '{}' });
    expect(response.status).to.equal(202);
    const { id, instances, alreadyOnTarget } = (await response.json()) as { id: number; instances: number; alreadyOnTarget: number };
    expect({ instances, alreadyOnTarget }).to.deep.equal({ instances: 2, alreadyOnTarget: 1 });
    expect((await finished(h, id)).state).to.equal('completed');

    for (const customer of customers) {
      const answer = await chat(customer, 'hello now');
      expect(answer.status).to.equal(200);
    }
    const { rows: keysAfter } = await h.db.query('SELECT id, api_key_hash FROM instances WHERE id = ANY($1) ORDER BY id', [customers.map((c) => c.instanceId)]);
    expect(keysAfter).to.deep.equal(keysBefore);
    // Nothing secret in what the API shows of a generation, nor in Redis (the rollout's jobs, their data and logs).
    const view = await (await h.admin(`/api/admin/rollouts/${id}`)).text();
    expect(view).to.include('ANTHROPIC_API_KEY').and.not.include(h.model.apiKey);
    const redis = await dumpKeys(h.redis, `${h.config.queuePrefix}:*`);
    expect(redis.some((entry) => entry.includes(`rollout-${id}`))).to.equal(true);
    expect(redis.filter((entry) => entry.includes(h.model.apiKey))).to.deep.equal([]);
    // Nor in the database in clear: the generation's secrets are sealed.
    const { rows: clear } = await h.db.query(`SELECT id FROM fleet_generations WHERE settings::text LIKE '%' || $1 || '%'`, [h.model.apiKey]);
    expect(clear).to.deep.equal([]);
  });
});

describe('rollouts on Railway (emulated): a version is an image tag', function () {
  this.timeout(300_000);
  let h: Harness;
  // What the images run: the runtime for the configured tag and for v2; a control plane (never healthy) for broken.
  const runtime: RuntimeSpec = { command: process.execPath, args: ['--import', 'tsx', 'runtime/src/main.ts'], env: { PATH: process.env.PATH ?? '' }, cwd: process.cwd() };
  const image = (tag: string) => RUNTIME_IMAGE.replace(/:[^:/]+$/, `:${tag}`);
  before(async () => {
    h = await startHarness(
      { CLAWDBOT_IMAGE: RUNTIME_IMAGE, ROLLOUT_HEALTH_TIMEOUT: '10s' },
      {
        cloud: {
          railway: {
            deployMs: 300,
            builds: {
              repos: { [RUNTIME_REPO]: { 'runtime/Dockerfile': runtime } },
              images: { [RUNTIME_IMAGE]: runtime, [image('v2')]: runtime, [image('broken')]: { unhealthy: 'the control plane image' } },
            },
          },
        },
      },
    );
  });
  after(async () => h?.close());

  it('moves services to the tag, and back when the next one fails its health check', async () => {
    const customers = await provision(h, ['rw1@example.com', 'rw2@example.com']);
    const sources = () => h.railway!.services().filter((s) => !s.deletedAt).map((s) => s.source?.image).sort();
    expect(sources()).to.deep.equal([RUNTIME_IMAGE, RUNTIME_IMAGE]);

    const upgrade = await h.admin('/api/admin/rollouts', { method: 'POST', body: JSON.stringify({ version: 'v2', batchSize: 1 }) });
    expect(upgrade.status).to.equal(202);
    const upgraded = await finished(h, ((await upgrade.json()) as { id: number }).id);
    expect(upgraded.state, upgraded.haltReason ?? '').to.equal('completed');
    expect(sources()).to.deep.equal([image('v2'), image('v2')]);
    for (const customer of customers) {
      expect(await (await fetch(`${customer.accessUrl}/health`)).json()).to.deep.include({ version: 'v2', settingsGeneration: upgraded.targetGeneration });
    }

    const broken = await h.admin('/api/admin/rollouts', { method: 'POST', body: JSON.stringify({ version: 'broken' }) });
    expect(broken.status).to.equal(202);
    const halted = await finished(h, ((await broken.json()) as { id: number }).id);
    expect(halted.state).to.equal('halted');
    expect(halted.instances.map((i) => i.state)).to.deep.equal(['rolled_back', 'pending']);
    expect(sources()).to.deep.equal([image('v2'), image('v2')]);
    const canary = customers.find((c) => c.instanceId === halted.instances[0]!.instanceId)!;
    expect(await (await fetch(`${canary.accessUrl}/health`)).json()).to.deep.include({ version: 'v2', settingsGeneration: upgraded.targetGeneration });
    expect((await chat(canary, 'still here?')).status).to.equal(200);
  });
});
