/**
 * Provisioning on the cloud providers: Railway and Neon through their official clients, against emulators that
 * speak their wire protocols (Railway's documents validated against its published schema; Neon's branches backed
 * by real local databases). A signed checkout in, a healthy runtime reached through the emulated domain out.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { expect } from 'chai';
import { QUEUES } from '../../src/queues/catalogue.ts';
import { startHarness, waitUntil, type Harness, type InstanceView } from '../support/harness.ts';

/** Requests of one provision, as the emulators counted them. */
function budget(h: Harness): { railway: number; neon: number } {
  const neon = Object.values(h.neon!.counts()).reduce((a, b) => a + b, 0);
  return { railway: h.railway!.calls.length, neon };
}

/** Railway requests (deployment status polls included) and Neon calls one provision may make (docs/cloud-providers.md). */
const RAILWAY_BUDGET = 10;
const NEON_BUDGET = 9;

describe('provisioning on Railway and Neon (emulated)', function () {
  this.timeout(90_000);
  let h: Harness;

  before(async () => {
    h = await startHarness({ ARCHIVE_AFTER: '2s', PURGE_AFTER: '4s' }, { cloud: {} });
  });
  after(async () => h?.close());

  async function provision(email: string): Promise<{ view: InstanceView; key: string }> {
    const { customerId, event } = h.checkout({ email, name: 'Cloud Customer', plan: 'pro' });
    expect((await h.deliver(event)).status).to.equal(200);
    const view = await h.waitForStatus(customerId, ['active', 'failed'], 60_000);
    expect(view.failure, JSON.stringify(view.failure)).to.equal(null);
    const mail = await h.smtp.waitFor((m) => m.to.includes(email));
    return { view, key: /claw_[0-9A-Za-z]{43}/.exec(mail.text)![0] };
  }

  it('runs a healthy runtime reached through the Railway domain, on a Neon branch, within the API budget', async () => {
    h.railway!.resetCalls();
    const { view, key } = await provision('nina@example.com');
    const [service] = h.railway!.services();
    const [domain] = h.railway!.domainsOf(service!.id);
    expect(view.accessUrl).to.equal(`http://${domain!.domain}`);
    expect((await fetch(`${view.accessUrl}/health`)).status).to.equal(200);
    const status = await fetch(`${view.accessUrl}/status`, { headers: { authorization: `Bearer ${key}` } });
    expect(status.status).to.equal(200);
    expect(((await status.json()) as { plan: string }).plan).to.equal('pro');

    // What the service was given: limits from the plan, every variable, the database URL of its Neon branch.
    expect(h.railway!.limitsOf(service!.id)).to.deep.equal({ vCPUs: 1, memoryGB: 1 });
    const vars = h.railway!.variablesOf(service!.id);
    expect(vars).to.include({ PLAN: 'pro', MESSAGE_LIMIT: '20000', RATE_LIMIT: '120/m', ANTHROPIC_BASE_URL: h.model.url });
    expect(vars.DATABASE_URL).to.match(/^postgres(ql)?:\/\//);
    expect(h.neon!.branches(h.config.neon!.projectIds[0]!).filter((b) => b.branch.name.startsWith('claw_'))).to.have.length(1);

    const used = budget(h);
    console.log(`      API calls for one provision: Railway ${used.railway}, Neon ${used.neon}`);
    expect(used.railway).to.be.at.most(RAILWAY_BUDGET);
    expect(used.neon).to.be.at.most(NEON_BUDGET);
  });

  it('cancels, archives and purges on Railway and Neon alike', async () => {
    const { view } = await provision('ines@example.com');
    const { rows } = await h.db.query('SELECT service_id, branch_id FROM instances WHERE id = $1', [view.instanceId]);
    const [projectId, branchId] = (rows[0].branch_id as string).split('/');
    expect((await h.admin(`/api/admin/customers/${view.customerId}/deprovision`, { method: 'POST' })).status).to.equal(202);
    await h.waitForStatus(view.customerId, ['cancelled'], 30_000);
    const deployments = h.railway!.deploymentsOf(rows[0].service_id);
    expect(deployments.every((d) => d.status !== 'SUCCESS' || d.deploymentStopped)).to.equal(true); // stopped at once
    await h.waitForStatus(view.customerId, ['archived'], 30_000);
    // services() hides deleted services: look among them, so a service that was never made cannot pass for deleted.
    const service = h.railway!.services({ includeDeleted: true }).find((s) => s.id === rows[0].service_id);
    expect(service, 'the Railway service of the instance').to.not.equal(undefined);
    expect(service!.deletedAt, 'the Railway service is deleted').to.be.a('string');
    expect(h.neon!.branches(projectId!).some((b) => b.branch.id === branchId)).to.equal(false);
    await h.waitForStatus(view.customerId, ['purged'], 30_000);
  });

  it('completes through injected 429s and 5xx on both APIs', async () => {
    h.railway!.failNext(2, 429, { 'Retry-After': '1' });
    h.railway!.failNext(1, 503);
    h.neon!.failNext(1, 429, { 'Retry-After': '1' });
    h.neon!.failNext(1, 503);
    const { view } = await provision('omar@example.com');
    expect(view.status).to.equal('active');
    const services = h.railway!.services().filter((s) => !s.deletedAt);
    expect(services).to.have.length(2);
    for (const s of services) expect(h.railway!.domainsOf(s.id)).to.have.length(1);
    const rateLimited = h.railway!.calls.filter((c) => c.status === 429).length;
    expect(rateLimited).to.equal(2);
    const used = budget(h);
    console.log(`      with faults (all provisions of this file so far): Railway ${used.railway} calls (${rateLimited} answered 429), Neon ${used.neon} calls`);
  });

  it('waits for an operator to approve a deployment, telling operators once', async () => {
    h.railway!.nextDeploymentEnds('NEEDS_APPROVAL');
    const { customerId, event } = h.checkout({ email: 'ravi@example.com', plan: 'starter' });
    await h.deliver(event);
    const post = await h.slack.waitFor((p) => (p.text ?? '').includes('ravi@example.com'), 30_000);
    expect(post.text).to.include('approval');
    const services = h.railway!.services().filter((s) => !s.deletedAt);
    const waiting = services.flatMap((s) => h.railway!.deploymentsOf(s.id)).find((d) => d.status === 'NEEDS_APPROVAL')!;
    const approved = await fetch(h.railway!.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${h.railway!.accountToken}` },
      body: JSON.stringify({ query: 'mutation Approve($id: String!) { deploymentApprove(id: $id) }', variables: { id: waiting.id } }),
    });
    expect(((await approved.json()) as { data: unknown }).data).to.deep.equal({ deploymentApprove: true });
    const view = await h.waitForStatus(customerId, ['active', 'failed'], 60_000);
    expect(view.status).to.equal('active');
    expect(h.slack.posts.filter((p) => (p.text ?? '').includes('ravi@example.com'))).to.have.length(1);
  });

  it('fails a deployment that ends FAILED, alerts once, and leaves what it made visible for an operator', async () => {
    h.railway!.nextDeploymentEnds('FAILED');
    const { customerId, event } = h.checkout({ email: 'pia@example.com', plan: 'starter' });
    await h.deliver(event);
    const view = await h.waitForStatus(customerId, ['failed', 'active'], 60_000);
    expect(view.status).to.equal('failed');
    expect(view.failure!.step).to.equal('deploy');
    expect(view.failure!.reason).to.include('failed');
    await h.slack.waitFor((p) => (p.text ?? '').includes('pia@example.com'));
    // One incident, and both its alerts sent (their jobs completed), so every post and email of it has arrived.
    const { rows: incidents } = await h.db.query(`SELECT id FROM audit WHERE instance_id = $1 AND action = 'instance.failed'`, [view.instanceId]);
    expect(incidents).to.have.length(1);
    for (const channel of ['slack', 'email']) {
      await h.completedJob(QUEUES.alerts, `alert-${incidents[0].id}-${channel}`);
    }
    expect(h.slack.posts.filter((p) => (p.text ?? '').includes('pia@example.com'))).to.have.length(1);
    expect(h.smtp.messages.filter((m) => m.to.includes('ops@clawdbot.test') && m.text.includes('pia@example.com'))).to.have.length(1);
    const { rows } = await h.db.query('SELECT service_id, branch_id FROM instances WHERE id = $1', [view.instanceId]);
    expect(h.railway!.services().map((s) => s.id)).to.include(rows[0].service_id);
    expect(rows[0].branch_id).to.match(/\//); // project/branch, as the operator finds it in Neon
  });
});

describe('a worker killed inside the Railway deploy call', function () {
  this.timeout(150_000);
  let h: Harness;
  const workers: ChildProcess[] = [];

  before(async () => {
    // Web in this process; workers as separate processes, so one can be killed outright.
    h = await startHarness({}, { webOnly: true, cloud: {} });
  });
  after(async () => {
    for (const w of workers) {
      if (w.exitCode !== null || w.signalCode !== null) continue;
      const exited = new Promise((resolve) => w.once('exit', resolve));
      w.kill('SIGKILL');
      await exited; // its connections are gone before the databases are dropped
    }
    await h?.close();
  });

  function startWorker(): ChildProcess {
    const worker = spawn(process.execPath, ['--import', 'tsx', 'src/bin/worker.ts'], {
      env: { PATH: process.env.PATH ?? '', ...h.env, LOG_LEVEL: 'warn' },
      stdio: 'ignore',
    });
    workers.push(worker);
    return worker;
  }

  it('finishes after a restart with one service, one branch, one domain, adopting the one deployment asked for', async () => {
    // Railway parks the deploy call until the worker that made it is dead: Railway got the request, the worker
    // never learnt the deployment's id.
    const held = h.railway!.holdNext('serviceInstanceDeployV2');
    const first = startWorker();
    const { customerId, event } = h.checkout({ email: 'quinn@example.com' });
    await h.deliver(event);
    await held.arrived;
    const exited = new Promise((resolve) => first.once('exit', resolve));
    first.kill('SIGKILL');
    await exited;
    held.release();
    const [service] = h.railway!.services();
    await waitUntil(async () => h.railway!.deploymentsOf(service!.id).length === 1);
    const [asked] = h.railway!.deploymentsOf(service!.id);

    // The deploy job stalled with its worker; the new worker runs it again once its lock has expired.
    startWorker();
    const view = await h.waitForStatus(customerId, ['active', 'failed'], 120_000);
    expect(view.status, JSON.stringify(view.failure)).to.equal('active');
    expect(h.railway!.services({ includeDeleted: true }).map((s) => s.id)).to.deep.equal([service!.id]);
    expect(h.railway!.domainsOf(service!.id)).to.have.length(1);
    expect(h.railway!.deploymentsOf(service!.id).map((d) => d.id), 'no second deployment').to.deep.equal([asked!.id]);
    expect(h.railway!.counts().serviceInstanceDeployV2).to.equal(1);
    const { logs } = await h.plane.ctx.queues.get(QUEUES.compute).getJobLogs(`${view.workspaceId}-deploy`);
    expect(logs.join('\n')).to.include(`adopting deployment ${asked!.id}`);
    const branches = h.config.neon!.projectIds.flatMap((p) => h.neon!.branches(p)).filter((b) => b.branch.name.startsWith('claw_'));
    expect(branches).to.have.length(1);
    expect((await fetch(`${view.accessUrl}/health`)).status).to.equal(200);
  });
});
