/**
 * The provisioning steps and the step runner on in-memory fakes (no Redis, Postgres or emulator): the ledger, waits,
 * failures and incidents, and what each step does when it runs again.
 */
import { expect } from 'chai';
import { DelayedError } from 'bullmq';
import { PermanentError, RateLimitedError } from '../../../src/errors.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../../src/instances/secrets.ts';
import { buildWorkspace } from '../../../src/jobs/buildWorkspace.ts';
import { createBranch, type CreateBranchData } from '../../../src/jobs/createBranch.ts';
import { createService } from '../../../src/jobs/createService.ts';
import { deploy, type DeployData } from '../../../src/jobs/deploy.ts';
import { finalize } from '../../../src/jobs/finalize.ts';
import { sendWelcomeEmail } from '../../../src/jobs/sendWelcomeEmail.ts';
import { LEDGER_START_AFTER_MS, runStep, type StepHandler } from '../../../src/jobs/step.ts';
import type { ProvisionData } from '../../../src/queues/catalogue.ts';
import { archiveStream, FakeJob, fakeContext, type Fakes } from '../../support/fakes.ts';
import { rejection } from '../../support/rejection.ts';


function stepJob<D extends ProvisionData>(f: Fakes, step: string, instanceId: string, extra: Partial<D> = {}): FakeJob<D> {
  const instance = f.instances.get(instanceId);
  return new FakeJob<D>(step, { instanceId, workspaceId: instance.workspace_id, ...extra } as D, 'provision');
}

/** Runs a step the way the worker does. */
function run<D extends ProvisionData>(f: Fakes, handler: StepHandler<D>, job: FakeJob<D>): Promise<unknown> {
  return runStep(f.ctx, job, 'token', handler);
}

describe('step runner (fakes)', () => {
  it('records a run that ends at once in one ledger write, and returns its result', async () => {
    const f = fakeContext();
    const instance = f.instances.add({ status: 'provisioning' });
    const result = await run(f, async (_ctx, { done }) => done({ serviceId: 'svc-1' }), stepJob(f, 'create-service', instance.id));
    expect(result).to.deep.equal({ serviceId: 'svc-1' });
    expect(f.steps.of(instance.id, 'create-service')).to.include({ state: 'completed', attempts: 1 });
    expect(f.calls).to.deep.equal(['steps.completed create-service']);
  });

  it('records a run still going after a moment as running (operators see it), then completed', async function () {
    this.timeout(5_000);
    const f = fakeContext();
    const instance = f.instances.add({ status: 'provisioning' });
    let during: string | undefined;
    await run(
      f,
      async (_ctx, { done }) => {
        await new Promise((r) => setTimeout(r, LEDGER_START_AFTER_MS + 200));
        during = f.steps.of(instance.id, 'deploy')?.state;
        return done();
      },
      stepJob(f, 'deploy', instance.id),
    );
    expect(during).to.equal('running');
    expect(f.calls).to.deep.equal(['steps.started deploy', 'steps.completed deploy']);
  });

  it('runs nothing for an ended or abandoned instance (a stray retry in Bull Board)', async () => {
    for (const status of ['cancelled', 'archived', 'purged', 'abandoned'] as const) {
      const f = fakeContext();
      const instance = f.instances.add({ status });
      let ran = false;
      const result = await run(f, async (_ctx, { done }) => ((ran = true), done()), stepJob(f, 'deploy', instance.id));
      expect(result, status).to.deep.equal({ skipped: `the instance is ${status}` });
      expect(ran, status).to.equal(false);
      expect(f.calls, status).to.deep.equal([]);
    }
  });

  it('runs no step once a cancellation of the provisioning has begun (the cancel waits for the running one)', async () => {
    const f = fakeContext();
    const instance = f.instances.add({ status: 'provisioning', cancel_requested_at: new Date() });
    let ran = false;
    const result = await run(f, async (_ctx, { done }) => ((ran = true), done()), stepJob(f, 'send-welcome-email', instance.id));
    expect(result).to.deep.equal({ skipped: 'the subscription is being cancelled' });
    expect(ran).to.equal(false);
    expect(f.calls).to.deep.equal([]);
  });

  it('holds the instance’s lock while it runs, and comes back later without running while another job holds it', async () => {
    const f = fakeContext();
    const instance = f.instances.add({ status: 'provisioning' });
    f.locks.held.add(instance.id); // a cancellation works on the instance
    let ran = false;
    const job = stepJob(f, 'deploy', instance.id);
    const err = await rejection(run(f, async (_ctx, { done }) => ((ran = true), done()), job));
    expect(err).to.be.instanceOf(DelayedError);
    expect(job.delayedUntil).to.be.a('number');
    expect([ran, f.calls]).to.deep.equal([false, []]);

    f.locks.held.delete(instance.id);
    // Held shared: a sibling step runs meanwhile, a lifecycle job (exclusive) does not.
    let sibling: unknown;
    let lifecycle: unknown;
    await run(
      f,
      async (_ctx, { done }) => {
        sibling = await run(f, async (_c, tools) => tools.done({ sibling: true }), stepJob(f, 'build-workspace', instance.id));
        lifecycle = await f.locks.withLock(instance.id, async () => 'cancelled');
        return done();
      },
      stepJob(f, 'create-service', instance.id),
    );
    expect(sibling).to.deep.equal({ sibling: true });
    expect(lifecycle).to.deep.equal({ ran: false });
    expect([f.locks.held.size, f.locks.shared.size]).to.deep.equal([0, 0]);
  });

  it('turns a wait into a delayed re-run that keeps its data and holds no worker', async () => {
    const f = fakeContext();
    const instance = f.instances.add({ status: 'provisioning' });
    const job = stepJob<ProvisionData & { polls?: number }>(f, 'health-check', instance.id);
    const err = await rejection(run(f, async (_ctx, { job, waitFor }) => waitFor(500, { ...job.data, polls: 1 }), job));
    expect(err).to.be.instanceOf(DelayedError);
    expect(job.delayedUntil).to.be.a('number');
    expect(job.data.polls).to.equal(1);
    expect(f.steps.of(instance.id, 'health-check')!.state).to.equal('waiting');
  });

  it('records a failure that will be retried on the step only; the instance stays provisioning', async () => {
    const f = fakeContext();
    const instance = f.instances.add({ status: 'provisioning' });
    const err = await rejection(run(f, async () => Promise.reject(new Error('provider hiccup')), stepJob(f, 'deploy', instance.id)));
    expect((err as Error).message).to.equal('provider hiccup');
    expect(f.steps.of(instance.id, 'deploy')).to.include({ state: 'running', error: 'provider hiccup' });
    expect(f.instances.get(instance.id).status).to.equal('provisioning');
    expect(f.jobs.of('addAlerts')).to.have.length(0);
  });

  it('fails the instance once with one incident, however many steps fail for good', async () => {
    const f = fakeContext();
    const instance = f.instances.add({ status: 'provisioning' });
    const fail = () => Promise.reject(new PermanentError('no healthy answer'));
    const first = stepJob(f, 'create-service', instance.id, { deployRequestedAt: 1 } as Partial<ProvisionData>);
    await rejection(run(f, fail, first));
    await rejection(run(f, fail, stepJob(f, 'build-workspace', instance.id)));

    expect(f.instances.get(instance.id)).to.include({ status: 'failed', failed_step: 'create-service', failed_job: `provision/${first.id}` });
    expect(f.audit.actions(instance.id)).to.deep.equal(['instance.failed']);
    expect(f.jobs.of('addAlerts')).to.deep.equal([['1', { queue: 'provision', jobId: first.id }]]);
    // The ledger shows both failures, and a re-run by an operator starts the step afresh.
    expect(f.steps.of(instance.id, 'build-workspace')!.state).to.equal('failed');
    expect(first.data).to.deep.equal({ instanceId: instance.id, workspaceId: instance.workspace_id, generation: undefined });
  });

  it('clears the failure when the failed step runs again, and a sibling that failed meanwhile becomes the next incident', async () => {
    const f = fakeContext();
    const instance = f.instances.add({ status: 'provisioning' });
    await rejection(run(f, () => Promise.reject(new PermanentError('quota')), stepJob(f, 'create-service', instance.id)));
    await rejection(run(f, () => Promise.reject(new PermanentError('seed failed')), stepJob(f, 'build-workspace', instance.id)));

    const retried = await run(f, async (_ctx, { done }) => done(), stepJob(f, 'create-service', instance.id));
    expect(retried).to.deep.equal({});
    expect(f.instances.get(instance.id)).to.include({ status: 'failed', failed_step: 'build-workspace', failure_reason: 'seed failed' });
    expect(f.audit.actions(instance.id)).to.deep.equal(['instance.failed', 'instance.retried', 'instance.failed']);
    expect(f.jobs.of('addAlerts')).to.have.length(2);
  });

  it('leaves a running instance running when a step re-run by an operator fails', async () => {
    const f = fakeContext();
    const instance = f.instances.add({ status: 'active' });
    await rejection(run(f, () => Promise.reject(new PermanentError('boom')), stepJob(f, 'build-workspace', instance.id)));
    expect(f.instances.get(instance.id).status).to.equal('active');
    expect(f.audit.entries).to.deep.equal([]);
    expect(f.jobs.of('addAlerts')).to.deep.equal([]);
  });

  it('pauses the whole queue on a 429 and does not count it as a failure', async () => {
    const f = fakeContext();
    const instance = f.instances.add({ status: 'provisioning' });
    const err = await rejection(run(f, () => Promise.reject(new RateLimitedError('Railway: 429', 3_000)), stepJob(f, 'deploy', instance.id)));
    expect((err as Error).name).to.equal('RateLimitError');
    expect(f.jobs.of('pause')).to.deep.equal([['provision', 3_000]]);
    expect(f.instances.get(instance.id).status).to.equal('provisioning');
    expect(f.steps.of(instance.id, 'deploy')!.error).to.equal(null);
  });
});

describe('provisioning steps (fakes)', () => {
  describe('create-service', () => {
    const computeCalls = (f: Fakes) => f.calls.filter((c) => c.startsWith('compute.') || c.startsWith('instances.update'));

    it('records that it asks, then creates the service with no lookup, recording its id and then its address', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning' });
      const name = `claw-${instance.workspace_id.slice(3)}`;
      expect(await run(f, createService, stepJob(f, 'create-service', instance.id))).to.deep.equal({ serviceId: name, accessUrl: `http://${name}.test` });
      expect(computeCalls(f)).to.deep.equal([
        'instances.update service_requested_at',
        `compute.createService ${name}`,
        'instances.update service_id',
        `compute.accessUrl ${name} (fresh)`,
        'instances.update access_url',
      ]);
      f.calls.length = 0;
      await run(f, createService, stepJob(f, 'create-service', instance.id)); // a re-run: all is recorded
      expect(computeCalls(f)).to.deep.equal([]);
    });

    it('looks the service up by name only when an earlier run asked for it and recorded no id', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning', service_requested_at: new Date() });
      const name = `claw-${instance.workspace_id.slice(3)}`;
      f.compute.services.set(name, { variables: {}, deployments: [], running: false }); // made, its answer lost
      await run(f, createService, stepJob(f, 'create-service', instance.id));
      expect(computeCalls(f)).to.deep.equal([
        `compute.createService ${name} (may exist)`,
        'instances.update service_id',
        `compute.accessUrl ${name}`, // it may have its domain already: looked up before one is made
        'instances.update access_url',
      ]);
      expect(f.instances.get(instance.id)).to.include({ service_id: name });
    });

    it('finds its address again when the service was recorded but the address was not', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning', service_id: 'svc-recorded', service_requested_at: new Date() });
      await run(f, createService, stepJob(f, 'create-service', instance.id));
      expect(computeCalls(f)).to.deep.equal(['compute.accessUrl svc-recorded', 'instances.update access_url']);
    });

    it('forgets the request when the provider refused it or rate-limited it (nothing was made), not when the answer was lost', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning' });
      const real = f.compute.createService.bind(f.compute);
      f.compute.createService = () => Promise.reject(new RateLimitedError('Railway rate limit reached (serviceCreate)', 1_000));
      await rejection(run(f, createService, stepJob(f, 'create-service', instance.id)));
      expect(f.instances.get(instance.id).service_requested_at).to.equal(null);

      f.compute.createService = () => Promise.reject(new Error('socket hang up'));
      await rejection(run(f, createService, stepJob(f, 'create-service', instance.id)));
      expect(f.instances.get(instance.id).service_requested_at).to.be.instanceOf(Date);

      f.compute.createService = real;
      f.calls.length = 0;
      await run(f, createService, stepJob(f, 'create-service', instance.id));
      expect(f.calls).to.include(`compute.createService claw-${instance.workspace_id.slice(3)} (may exist)`);
    });
  });

  describe('create-branch', () => {
    it('waits without a worker while the provider makes the database, then registers it without opening it', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning' });
      f.database.pendingPolls = 1;
      const job = stepJob<CreateBranchData>(f, 'create-branch', instance.id);
      expect(await rejection(run(f, createBranch, job))).to.be.instanceOf(DelayedError);
      expect(job.data.database).to.deep.equal({ operation: 'op-1' });
      expect(await f.customerDbs.exists(instance.id)).to.equal(false);

      const result = await run(f, createBranch, job);
      expect(result).to.deep.include({ databaseName: `claw_${instance.workspace_id.replace(/^ws-/, '')}` });
      expect(f.instances.get(instance.id).branch_id).to.match(/^br-claw_/);
      const at = (call: string) => f.calls.findIndex((c) => c.startsWith(call));
      expect(at('customerDbs.register')).to.be.below(at('instances.update'));
      // The schema waits for build-workspace, which opens the database once for the schema and the seed.
      expect(f.calls.filter((c) => c.startsWith('customerDbs.'))).to.deep.equal(['customerDbs.register']);
    });

    it('raises the alert a provider hands back (a Neon project at 80 %) as one incident, however often it comes', async () => {
      const f = fakeContext();
      const alert = { key: 'neon-capacity/pool-a/1', title: 'Neon project pool-a reached 80 % of its branch limit', reason: 'holds 4 of 5 branches' };
      f.database.alerts = [alert];
      f.database.pendingPolls = 1;
      const instance = f.instances.add({ status: 'provisioning' });
      const job = stepJob<CreateBranchData>(f, 'create-branch', instance.id);
      // The run that placed the customer, then the same alert again (a re-run that lost its progress), then ready.
      expect(await rejection(run(f, createBranch, job))).to.be.instanceOf(DelayedError);
      await run(f, createBranch, job);
      const other = f.instances.add({ status: 'provisioning' });
      await run(f, createBranch, stepJob<CreateBranchData>(f, 'create-branch', other.id)); // another sign-up sees it too
      expect(f.audit.entries.map((e) => [e.action, e.instanceId])).to.deep.equal([['provider.alert', instance.id]]);
      expect(f.audit.entries[0]!.detail).to.deep.include({ step: 'create-branch', title: alert.title, reason: alert.reason, incidentKey: alert.key });
      expect(f.jobs.of('addAlerts')).to.deep.equal([[f.audit.entries[0]!.id, { queue: 'provision', jobId: job.id }]]);
      expect(f.instances.get(instance.id).status).to.equal('provisioning');
    });

    it('gives up when the database is not ready in time', async () => {
      const f = fakeContext({ DATABASE_READY_TIMEOUT: '1s' });
      const instance = f.instances.add({ status: 'provisioning' });
      f.database.pendingPolls = 1;
      const job = stepJob<CreateBranchData>(f, 'create-branch', instance.id, { waitingSince: Date.now() - 60_000 });
      const err = await rejection(run(f, createBranch, job));
      expect(err).to.be.instanceOf(PermanentError);
      expect((err as Error).message).to.include('was not ready within');
    });
  });

  describe('build-workspace', () => {
    it('issues one key, reuses it on a re-run until the welcome email is sent, and never overwrites the customer’s files', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning' });
      const db = await f.customerDbs.give(instance.id);
      await run(f, buildWorkspace, stepJob(f, 'build-workspace', instance.id));
      const hash = f.instances.get(instance.id).api_key_hash;
      expect(hash).to.be.a('string');
      expect(db.keys.map((k) => k.hash)).to.deep.equal([hash]);
      expect(db.files.get('USER.md')).to.include('ada@example.com');
      expect(db.schema).to.equal(true);

      db.files.set('USER.md', 'edited by the customer');
      await run(f, buildWorkspace, stepJob(f, 'build-workspace', instance.id));
      expect(f.instances.get(instance.id).api_key_hash).to.equal(hash);
      expect(db.keys).to.have.length(1);
      expect(db.files.get('USER.md')).to.equal('edited by the customer');

      // Once the welcome email carried the key (its sealed copy is gone), a re-run issues no other key.
      await f.secrets.delete(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey);
      await run(f, buildWorkspace, stepJob(f, 'build-workspace', instance.id));
      expect(f.instances.get(instance.id).api_key_hash).to.equal(hash);
      expect(await f.secrets.get(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey)).to.equal(null);
    });

    it('restores a reactivated customer’s archive before seeding, so their files win over fresh ones', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning', generation: 2 });
      const db = await f.customerDbs.give(instance.id);
      await f.archives.write('ws/1.jsonl.gz', archiveStream(instance.workspace_id, { workspace_files: [{ path: 'USER.md', content: 'mine' }] }));
      await f.archiveRecords.save(instance.id, { location: 'ws/1.jsonl.gz', sizeBytes: 1, sha256: 'x', rowCounts: {} });

      await run(f, buildWorkspace, stepJob(f, 'build-workspace', instance.id));
      expect(db.files.get('USER.md')).to.equal('mine');
      expect(db.files.has('SOUL.md')).to.equal(true);
      const at = (call: string) => f.calls.indexOf(call);
      expect(at('customerDbs.restoreArchive')).to.be.below(at('customerDbs.seedWorkspace'));
      // The archive stays until the instance is active again (finalize), so a failed reactivation keeps it.
      expect(await f.archiveRecords.current(instance.id)).to.not.equal(undefined);
    });

    it('refuses to run before create-branch made the database', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning' });
      const err = await rejection(run(f, buildWorkspace, stepJob(f, 'build-workspace', instance.id)));
      expect((err as Error).message).to.include('create-branch has not completed');
      expect(f.instances.get(instance.id).api_key_hash).to.equal(null);
    });
  });

  describe('send-welcome-email', () => {
    it('sends the key once, even when run again, and keeps it sealed for the welcome page to show once', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning', access_url: 'http://svc.test', api_key_hash: 'h' });
      await f.secrets.put(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey, 'claw_live_secret');
      await run(f, sendWelcomeEmail, stepJob(f, 'send-welcome-email', instance.id));
      const again = await run(f, sendWelcomeEmail, stepJob(f, 'send-welcome-email', instance.id));
      expect(again).to.include({ alreadySent: true });
      expect(f.mailer.sent).to.have.length(1);
      expect(f.mailer.sent[0]!.text).to.include('claw_live_secret').and.include('http://svc.test').and.include('/account');
      expect(f.mailer.sent[0]!.html).to.include('claw_live_secret').and.include('http://svc.test');
      expect(await f.secrets.get(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey)).to.equal('claw_live_secret');
    });

    it('deletes the sealed key when the welcome page had already shown it', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning', access_url: 'http://svc.test', api_key_hash: 'h' });
      await f.secrets.put(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey, 'claw_live_secret');
      await f.keyHandovers.claimReveal(instance.id);
      await run(f, sendWelcomeEmail, stepJob(f, 'send-welcome-email', instance.id));
      expect(await f.secrets.get(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey)).to.equal(null);
    });

    it('with KEY_IN_EMAIL=false sends a link to the welcome page instead of the key', async () => {
      const f = fakeContext({ KEY_IN_EMAIL: 'false' });
      const instance = f.instances.add({ status: 'provisioning', access_url: 'http://svc.test', api_key_hash: 'h' });
      await f.secrets.put(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey, 'claw_live_secret');
      await run(f, sendWelcomeEmail, stepJob(f, 'send-welcome-email', instance.id));
      const [mail] = f.mailer.sent;
      expect(mail!.text).to.not.include('claw_live_secret');
      expect(mail!.text).to.include(`/welcome?token=${instance.id}.`);
      expect(mail!.html).to.not.include('claw_live_secret');
    });

    it('emails and reveals a reactivation’s new key although the first key was emailed and revealed', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning', access_url: 'http://svc.test' });
      await f.customerDbs.give(instance.id);
      await f.keyHandovers.emailed(instance.id);
      await f.keyHandovers.claimReveal(instance.id); // the first generation's key
      await run(f, buildWorkspace, stepJob(f, 'build-workspace', instance.id));
      const key = await f.secrets.get(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey);
      await run(f, sendWelcomeEmail, stepJob(f, 'send-welcome-email', instance.id));
      expect(f.mailer.sent).to.have.length(1);
      expect(f.mailer.sent[0]!.text).to.include(key!);
      expect(await f.keyHandovers.state(instance.id)).to.deep.equal({ emailed: true, revealed: false });
      expect(await f.secrets.get(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey)).to.equal(key);
    });

    it('fails when no key was ever issued', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning', access_url: 'http://svc.test' });
      const err = await rejection(run(f, sendWelcomeEmail, stepJob(f, 'send-welcome-email', instance.id)));
      expect((err as Error).message).to.include('build-workspace has not completed');
      expect(f.mailer.sent).to.deep.equal([]);
    });
  });

  describe('deploy', () => {
    it("hands the runtime its own sealing key for connection tokens, its public URL and the platform's OAuth settings", async () => {
      const f = fakeContext({ GOOGLE_CLIENT_ID: 'google-app', GOOGLE_CLIENT_SECRET: 'google-secret', GITHUB_API_URL: 'http://github.test/api/v3' });
      const instance = f.instances.add({ status: 'provisioning', service_id: 'claw-svc', access_url: 'http://svc.test' });
      await f.customerDbs.give(instance.id);
      await rejection(run(f, deploy, stepJob<DeployData>(f, 'deploy', instance.id)));
      const variables = f.compute.services.get('claw-svc')!.variables;
      expect(variables).to.include({ PUBLIC_URL: 'http://svc.test', GOOGLE_CLIENT_ID: 'google-app', GOOGLE_CLIENT_SECRET: 'google-secret', GITHUB_API_URL: 'http://github.test/api/v3' });
      expect(variables).not.to.have.property('GITHUB_CLIENT_ID');
      const key = await f.secrets.get(instanceOwner(instance.id), INSTANCE_SECRETS.connectionsKey);
      expect(Buffer.from(key!, 'base64')).to.have.length(32);
      expect(variables.CONNECTIONS_KEY).to.equal(key);
    });

    it('configures and deploys once; a re-run after a lost answer adopts that deployment instead of deploying again', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning', service_id: 'claw-svc' });
      await f.customerDbs.give(instance.id);
      // The provider makes the deployment, but its answer is lost (a timeout, or the worker dies).
      const realDeploy = f.compute.deploy.bind(f.compute);
      f.compute.deploy = async (serviceId) => {
        await realDeploy(serviceId);
        throw new Error('socket hang up');
      };
      const job = stepJob<DeployData>(f, 'deploy', instance.id);
      expect((await rejection(run(f, deploy, job)) as Error).message).to.equal('socket hang up');
      expect(f.compute.services.get('claw-svc')!.variables).to.include({ PLAN: 'starter', RATE_LIMIT: '60/m', WORKSPACE_ID: instance.workspace_id });
      const [made] = f.compute.services.get('claw-svc')!.deployments;

      f.compute.deploy = realDeploy;
      expect(await rejection(run(f, deploy, job))).to.be.instanceOf(DelayedError);
      expect(job.data.deploymentId).to.equal(made);
      expect(f.compute.services.get('claw-svc')!.deployments).to.deep.equal([made]);
      expect(job.logs.some((l) => l.includes(`adopting deployment ${made}`))).to.equal(true);

      f.compute.deploymentStates.set(made!, 'success');
      expect(await run(f, deploy, job)).to.deep.include({ serviceId: 'claw-svc', deploymentId: made });
      // How long it took is recorded, so later deployments are polled near when they are likely done.
      expect(f.timings.samples.get(`deployment:${f.compute.kind}`)).to.have.length(1);
    });

    it('tells operators once that a deployment waits for their approval, however often it is polled', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning', service_id: 'claw-svc' });
      const job = stepJob<DeployData>(f, 'deploy', instance.id, { serviceId: 'claw-svc', deploymentId: 'dep-x', deployStartedAt: Date.now(), polls: 0 });
      f.compute.deploymentStates.set('dep-x', 'needs_approval');
      for (let i = 0; i < 3; i++) expect(await rejection(run(f, deploy, job))).to.be.instanceOf(DelayedError);
      expect(f.audit.actions(instance.id)).to.deep.equal(['deployment.needs_approval']);
      expect(f.jobs.of('addAlerts')).to.have.length(1);
      expect(f.instances.get(instance.id).status).to.equal('provisioning');
    });
  });

  describe('finalize', () => {
    it('makes the instance active once (a re-run writes nothing) and deletes the archive a reactivation restored', async () => {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'provisioning', access_url: 'http://svc.test', generation: 2 });
      await f.archives.write('ws/1.jsonl.gz', archiveStream(instance.workspace_id, {}));
      await f.archiveRecords.save(instance.id, { location: 'ws/1.jsonl.gz', sizeBytes: 1, sha256: 'x', rowCounts: {} });

      const result = await run(f, finalize, stepJob(f, 'finalize', instance.id));
      expect(result).to.include({ accessUrl: 'http://svc.test' });
      expect(f.instances.get(instance.id).status).to.equal('active');
      const activeAt = f.instances.get(instance.id).active_at;
      expect(f.archives.files.size).to.equal(0);
      expect(await f.archiveRecords.current(instance.id)).to.equal(undefined);

      await run(f, finalize, stepJob(f, 'finalize', instance.id));
      expect(f.instances.get(instance.id).active_at).to.equal(activeAt);
      expect(f.audit.actions(instance.id)).to.deep.equal(['instance.active']);
    });
  });
});
