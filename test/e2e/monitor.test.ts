/**
 * The health monitor end to end on the local providers (and on the Railway emulator): a runtime killed is seen down,
 * restarted, alerted once and announced recovered once; a runtime that crashes at every start is stopped as a crash
 * loop; the admin API shows what the monitor saw.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { expect } from 'chai';
import type pg from 'pg';
import type { LocalComputeProvider } from '../../src/providers/compute/local.ts';
import { QUEUES } from '../../src/queues/catalogue.ts';
import { startHarness, waitUntil, type Harness } from '../support/harness.ts';
import { provision, type Provisioned } from '../support/provision.ts';

interface Health {
  state: string;
  checkedAt: string;
  since: string;
  lastError: string | null;
  restarts: number;
  crashLoop: boolean;
}

const INTERVAL = { MONITOR_INTERVAL: '400ms', MONITOR_FAILURES: '3', MONITOR_MAX_RESTARTS: '2', MONITOR_PROBE_TIMEOUT: '1s', MONITOR_START_GRACE: '20s' };

async function healthOf(h: Harness, customerId: string): Promise<Health | null> {
  const response = await h.admin(`/api/customers/${customerId}/instance`);
  return ((await response.json()) as { health: Health | null }).health;
}

async function pidOf(db: pg.Pool, instanceId: string): Promise<number | null> {
  const { rows } = await db.query<{ pid: number | null }>('SELECT s.pid FROM local_services s JOIN instances i ON i.service_id = s.name WHERE i.id = $1', [instanceId]);
  return rows[0]!.pid;
}

/** Until `n` more monitor runs have completed: what they would have done (a restart, an alert) has been done. */
async function monitorRuns(h: Harness, n: number): Promise<void> {
  const since = Date.now();
  const fleet = h.plane.ctx.queues.get(QUEUES.fleet);
  await waitUntil(async () => {
    const done = await fleet.getJobs(['completed'], 0, n + 5, false);
    return done.filter((job) => job.name === 'monitor' && (job.processedOn ?? 0) > since).length >= n;
  }, 30_000);
  // Their alerts are jobs of their own: every one they added has run.
  const alerts = h.plane.ctx.queues.get(QUEUES.alerts);
  await waitUntil(async () => Object.values(await alerts.getJobCounts('waiting', 'active', 'delayed', 'prioritized')).every((n) => n === 0));
}

/** Slack posts and alert emails about one customer's instance whose title matches. */
function alertsAbout(h: Harness, workspaceId: string, title: RegExp) {
  return {
    slack: h.slack.posts.filter((p) => title.test(String(p.text)) && String(p.text).includes(workspaceId)),
    mail: h.smtp.messages.filter((m) => m.to.includes('ops@clawdbot.test') && title.test(m.subject) && m.subject.includes(workspaceId)),
  };
}

describe('health monitor (local runtimes)', function () {
  this.timeout(90_000);
  let h: Harness;
  let ann: Provisioned;
  let bob: Provisioned;

  before(async () => {
    h = await startHarness(INTERVAL);
    [ann, bob] = await Promise.all([provision(h, 'ann@example.com', 'Ann Lee'), provision(h, 'bob@example.com', 'Bob Stone')]);
    await waitUntil(async () => (await healthOf(h, ann.customerId))?.state === 'healthy' && (await healthOf(h, bob.customerId))?.state === 'healthy');
  });
  after(async () => h?.close());

  it('shows each active instance healthy in the admin API, and lists instances by status and health, paged', async () => {
    const health = (await healthOf(h, ann.customerId))!;
    expect(health).to.include({ state: 'healthy', lastError: null, restarts: 0, crashLoop: false });
    expect(Date.now() - Date.parse(health.checkedAt)).to.be.lessThan(5_000);

    const page = async (query: string) => {
      const response = await h.admin(`/api/admin/instances${query}`);
      expect(response.status, query).to.equal(200);
      return (await response.json()) as { instances: { instanceId: string; status: string; health: Health | null }[]; nextCursor: string | null };
    };
    // Created within one millisecond: the cursor must hold Postgres's microseconds to page past the first.
    await h.db.query(`UPDATE instances SET created_at = CASE WHEN id = $1 THEN '2026-12-03T12:00:00.1238Z'::timestamptz ELSE '2026-12-03T12:00:00.1234Z'::timestamptz END WHERE id IN ($1, $2)`, [ann.instanceId, bob.instanceId]);
    const first = await page('?status=active&health=healthy&limit=1');
    expect(first.instances).to.have.length(1);
    expect(first.nextCursor).to.be.a('string');
    const second = await page(`?status=active&health=healthy&limit=1&cursor=${first.nextCursor}`);
    expect(second.instances).to.have.length(1);
    expect([first.instances[0]!.instanceId, second.instances[0]!.instanceId]).to.deep.equal([ann.instanceId, bob.instanceId]);
    expect((await page(`?status=active&limit=1&cursor=${second.nextCursor}`)).instances).to.deep.equal([]);
    expect((await page('?health=down')).instances).to.deep.equal([]);
    expect((await page('?status=failed')).instances).to.deep.equal([]);

    for (const bad of ['?status=sleeping', '?health=ok', '?limit=0', '?limit=1000', '?cursor=nonsense', '?status=active&status=failed']) {
      const response = await h.admin(`/api/admin/instances${bad}`);
      expect(response.status, bad).to.equal(400);
      expect(((await response.json()) as { error: string }).error, bad).to.equal('invalid_request');
    }
    expect((await fetch(`${h.url}/api/admin/instances`)).status, 'without the token').to.equal(401);
  });

  it('restarts a runtime killed with SIGKILL: down within 3 intervals, one incident, one recovery, the key works again', async () => {
    const pid = (await pidOf(h.db, ann.instanceId))!;
    process.kill(pid, 'SIGKILL');
    await waitUntil(async () => (await healthOf(h, ann.customerId))?.state === 'down', 3 * 400 + 2_000);
    await waitUntil(async () => (await healthOf(h, ann.customerId))?.state === 'healthy', 15_000);

    const health = (await healthOf(h, ann.customerId))!;
    expect(health.restarts).to.equal(1);
    expect(health.lastError, 'the newest failure: the new process was not listening yet').to.be.a('string');
    const newPid = await pidOf(h.db, ann.instanceId);
    expect(newPid).to.be.a('number').and.not.equal(pid);
    const status = await fetch(`${ann.view.accessUrl}/status`, { headers: { authorization: `Bearer ${ann.apiKey}` } });
    expect(status.status).to.equal(200);

    const ws = ann.view.workspaceId;
    await waitUntil(async () => alertsAbout(h, ws, /healthy again/).mail.length === 1);
    await monitorRuns(h, 3); // three more runs: nothing more to say
    const down = alertsAbout(h, ws, /was down and was restarted/);
    const recovered = alertsAbout(h, ws, /healthy again/);
    expect([down.slack.length, down.mail.length, recovered.slack.length, recovered.mail.length]).to.deep.equal([1, 1, 1, 1]);
    expect(String(down.slack[0]!.text)).to.match(/3 failed health checks in a row/).and.match(/killed by SIGKILL/);
    expect(String(down.slack[0]!.text)).to.match(/Tried: started a new runtime process/);
    expect(String(down.slack[0]!.text)).to.include('/admin/queues/queue/fleet/');
    const { rows } = await h.db.query(`SELECT action FROM audit WHERE instance_id = $1 AND action LIKE 'instance.%' ORDER BY id`, [ann.instanceId]);
    expect(rows.map((r) => r.action)).to.deep.equal(['instance.created', 'instance.active', 'instance.down', 'instance.recovered']);
  });

  it('stops restarting a runtime that crashes at every start: one crash-loop incident with its last log lines', async () => {
    // Its configuration loses DATABASE_URL: every start now fails at once.
    const { rows } = await h.db.query<{ service_id: string }>('SELECT service_id FROM instances WHERE id = $1', [bob.instanceId]);
    const compute = h.plane.ctx.compute as LocalComputeProvider;
    const variables = JSON.parse((await h.plane.ctx.secrets.get(`local-service/${rows[0]!.service_id}`, 'variables'))!) as Record<string, string>;
    await compute.setVariables(rows[0]!.service_id, { WORKSPACE_ID: bob.view.workspaceId });
    process.kill((await pidOf(h.db, bob.instanceId))!, 'SIGKILL');
    await waitUntil(async () => (await healthOf(h, bob.customerId))?.crashLoop === true, 30_000);
    const ws = bob.view.workspaceId;
    await waitUntil(async () => alertsAbout(h, ws, /crash loop/).mail.length === 1);
    const restarts = (await healthOf(h, bob.customerId))!.restarts;
    expect(restarts, 'MONITOR_MAX_RESTARTS restarts before it stopped').to.equal(2);

    await monitorRuns(h, 5);
    const health = (await healthOf(h, bob.customerId))!;
    expect(health).to.include({ state: 'down', restarts: 2, crashLoop: true });
    expect(await pidOf(h.db, bob.instanceId), 'not started again').to.equal(null);
    const loop = alertsAbout(h, ws, /crash loop/);
    expect([loop.slack.length, loop.mail.length]).to.deep.equal([1, 1]);
    expect(loop.mail[0]!.text, loop.mail[0]!.text).to.match(/last log lines/).and.match(/DATABASE_URL/);
    expect(alertsAbout(h, ws, /was down and was restarted/).slack, 'one incident for the whole episode').to.have.length(1);

    // The operator fixes its configuration and clears the crash loop: the monitor restarts it, and it recovers.
    const clear = () => h.admin(`/api/admin/instances/${bob.instanceId}/clear-crash-loop`, { method: 'POST' });
    await compute.setVariables(rows[0]!.service_id, variables!);
    expect((await clear()).status).to.equal(200);
    expect((await clear()).status, 'cleared already').to.equal(409);
    await waitUntil(async () => (await healthOf(h, bob.customerId))?.state === 'healthy', 20_000);
    await waitUntil(async () => alertsAbout(h, ws, /healthy again/).mail.length === 1);
    expect((await healthOf(h, bob.customerId))!).to.include({ restarts: 3, crashLoop: false });
  });
});

/** Processes whose environment says they serve `port` with the runtime's entry point: the runtimes on that port. */
function runtimesOnPort(port: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (!cmdline.includes('runtime/src/main')) continue;
      if (readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(`PORT=${port}`)) pids.push(Number(entry));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return pids;
}

describe('local runtimes outlive their worker', function () {
  this.timeout(90_000);
  let h: Harness;
  const workers: ChildProcess[] = [];

  before(async () => {
    h = await startHarness({ MONITOR_INTERVAL: '3s' }, { webOnly: true });
    for (let i = 0; i < 2; i++) {
      workers.push(spawn(process.execPath, ['--import', 'tsx', 'src/bin/worker.ts'], { env: { PATH: process.env.PATH ?? '', ...h.env }, stdio: 'ignore' }));
    }
    const queues = h.plane.ctx.queues.all();
    await waitUntil(async () => (await Promise.all(queues.map((q) => q.getWorkersCount()))).every((n) => n === 2), 30_000);
  });
  after(async () => {
    for (const worker of workers) if (worker.exitCode === null) worker.kill('SIGTERM');
    await Promise.all(workers.map((w) => (w.exitCode === null ? once(w, 'exit') : undefined)));
    await h?.close();
  });

  it('SIGTERM the worker that runs a runtime: the other one runs it within an interval, never two processes for it', async () => {
    const ann = await provision(h, 'ann@example.com', 'Ann Lee');
    const service = async () =>
      (await h.db.query<{ owner: string | null; pid: number | null; port: number }>(
        'SELECT s.owner, s.pid, s.port FROM local_services s JOIN instances i ON i.service_id = s.name WHERE i.id = $1',
        [ann.instanceId],
      )).rows[0]!;
    const before = await service();
    const ownerPid = Number(before.owner!.split('/')[1]);
    const owner = workers.find((w) => w.pid === ownerPid)!;
    const other = workers.find((w) => w !== owner)!;
    expect(owner, 'the runtime is supervised by one of the two workers').to.not.equal(undefined);
    expect(runtimesOnPort(before.port)).to.deep.equal([before.pid]);

    owner.kill('SIGTERM');
    await once(owner, 'exit');
    const handedOver = Date.now();
    await waitUntil(async () => (await service()).owner?.split('/')[1] === String(other.pid), 3_000);
    expect(Date.now() - handedOver, 'within an interval').to.be.lessThan(3_000);

    const after = await service();
    expect(runtimesOnPort(after.port), 'one process serves the port, the one recorded').to.deep.equal([after.pid]);
    const status = await fetch(`${ann.view.accessUrl}/status`, { headers: { authorization: `Bearer ${ann.apiKey}` } });
    expect(status.status).to.equal(200);
  });
});

describe('health monitor (Railway emulator)', function () {
  this.timeout(90_000);
  let h: Harness;

  before(async () => {
    h = await startHarness(INTERVAL, { cloud: {} });
  });
  after(async () => h?.close());

  it('a deployment that becomes CRASHED after success: one restart request, one incident, one recovery', async () => {
    const ann = await provision(h, 'ann@example.com', 'Ann Lee');
    await waitUntil(async () => (await healthOf(h, ann.customerId))?.state === 'healthy');
    const { rows } = await h.db.query<{ service_id: string }>('SELECT service_id FROM instances WHERE id = $1', [ann.instanceId]);
    h.railway!.resetCalls();
    await h.railway!.crash(rows[0]!.service_id);
    await waitUntil(async () => (await healthOf(h, ann.customerId))?.state !== 'healthy');
    await waitUntil(async () => (await healthOf(h, ann.customerId))?.state === 'healthy', 20_000);
    const ws = ann.view.workspaceId;
    await waitUntil(async () => alertsAbout(h, ws, /healthy again/).mail.length === 1);
    await monitorRuns(h, 3);

    expect(h.railway!.operationCounts()['DeploymentRestart'], 'restart requests').to.equal(1);
    const down = alertsAbout(h, ws, /was down and was restarted/);
    expect([down.slack.length, down.mail.length]).to.deep.equal([1, 1]);
    expect(down.mail[0]!.text).to.match(/CRASHED/).and.match(/restarted deployment/);
    const recovered = alertsAbout(h, ws, /healthy again/);
    expect([recovered.slack.length, recovered.mail.length]).to.deep.equal([1, 1]);
    expect((await healthOf(h, ann.customerId))!.restarts).to.equal(1);
    const status = await fetch(`${ann.view.accessUrl}/status`, { headers: { authorization: `Bearer ${ann.apiKey}` } });
    expect(status.status).to.equal(200);
  });
});
