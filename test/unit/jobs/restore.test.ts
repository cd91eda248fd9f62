/**
 * The restore job on in-memory fakes: the order of its steps, its waits (no worker slot held), a suspended instance
 * (swapped, its service left stopped), and a failure after the swap (swapped back, the fresh database deleted).
 * The whole restore against real databases and runtimes is in test/e2e/backups.test.ts.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { DelayedError } from 'bullmq';
import { INSTANCE_SECRETS, instanceOwner } from '../../../src/instances/secrets.ts';
import { restore } from '../../../src/jobs/backups/restore.ts';
import { backupNow } from '../../../src/operations/backup.ts';
import { PermanentError } from '../../../src/errors.ts';
import { valuesFromConfig, withOverrides } from '../../../src/fleet/settings.ts';
import type { RestoreData } from '../../../src/queues/catalogue.ts';
import { FakeJob, fakeContext, type Fakes } from '../../support/fakes.ts';
import { rejection } from '../../support/rejection.ts';

/** A runtime's /health answering 200. */
async function healthyRuntime(): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

async function setUp(f: Fakes, status: 'active' | 'suspended', accessUrl = 'http://127.0.0.1:9') {
  const instance = f.instances.add({ status, service_id: 'claw-svc', access_url: accessUrl, branch_id: 'br-old', database_name: 'old', database_role: 'old' });
  await f.customerDbs.give(instance.id, { memories: [{ id: 1, content: 'tea' }] });
  const { backupId } = await backupNow(f.ctx, instance, 'scheduled');
  const run = (await f.backups.requestRestore(instance.id, backupId))!;
  f.calls.length = 0;
  return { instance, run, job: new FakeJob<RestoreData>('restore', { instanceId: instance.id, restoreId: run.id }, 'backups') };
}

/** Runs the job until it stops waiting: its outcome or its failure. */
async function runToEnd(f: Fakes, job: FakeJob<RestoreData>): Promise<unknown> {
  for (let i = 0; i < 20; i++) {
    try {
      return await restore(f.ctx, job);
    } catch (err) {
      if (!(err instanceof DelayedError)) throw err;
      expect(job.delayedUntil).to.be.a('number');
      for (const id of f.compute.services.get('claw-svc')?.deployments ?? []) f.compute.deploymentStates.set(id, 'success');
    }
  }
  throw new Error('the restore never finished');
}

describe('restore job (fakes)', () => {
  it('keeps the instance on the fleet settings generation it runs, even when another one is current', async () => {
    const runtime = await healthyRuntime();
    try {
      const f = fakeContext();
      const { instance, job } = await setUp(f, 'active', runtime.url);
      const base = valuesFromConfig(f.ctx.config);
      const own = await f.fleet.ensure(withOverrides(base, { settings: { model: 'claude-old' } }), 'config');
      await f.fleet.recordOnInstance(instance.id, own);
      const current = await f.fleet.ensure(withOverrides(base, { settings: { model: 'claude-new' } }), 'rollout');
      await f.fleet.setCurrent(current.id);
      await runToEnd(f, job);
      expect(await f.fleet.ofInstance(instance.id)).to.equal(own.id);
      expect(f.compute.services.get('claw-svc')!.variables.ANTHROPIC_MODEL).to.equal('claude-old');
    } finally {
      runtime.server.close();
    }
  });

  it('verifies, backs up the live data, loads a fresh database, stops, swaps, deploys, waits for health, then deletes the old one', async () => {
    const runtime = await healthyRuntime();
    try {
      const f = fakeContext();
      f.database.pendingPolls = 1; // the provider takes a moment: the job waits without holding a slot
      const { instance, run, job } = await setUp(f, 'active', runtime.url);
      const outcome = await runToEnd(f, job);
      expect(outcome).to.include({ restored: run.backupId });
      const order = [
        'backups.start restore',
        'backups.verified',
        `database.ensureDatabase ${job.data.restored!.roleName}`,
        `customerDbs.loadRestore postgres://${job.data.restored!.roleName}@db/${job.data.restored!.roleName}`,
        'compute.stop claw-svc',
        'customerDbs.register',
        'compute.configure claw-svc',
        'compute.deploy claw-svc',
        'database.deleteDatabase old',
      ];
      const positions = order.map((call) => f.calls.indexOf(call));
      expect(positions.every((p) => p >= 0), `${JSON.stringify(order)} in ${JSON.stringify(f.calls)}`).to.equal(true);
      expect([...positions].sort((a, b) => a - b)).to.deep.equal(positions);
      expect(job.data.restored!.roleName).to.match(new RegExp(`_r${run.id.replace(/-/g, '').slice(0, 8)}$`));
      expect(f.instances.get(instance.id)).to.include({ branch_id: job.data.restored!.branchId, database_role: job.data.restored!.roleName });
      expect((await f.backups.restoreById(run.id))!.state).to.equal('succeeded');
      expect(await f.secrets.get(instanceOwner(instance.id), INSTANCE_SECRETS.previousDatabaseUrl)).to.equal(null);
      expect(f.audit.actions(instance.id)).to.include('instance.restored');
      // Run again (a stalled job's re-run): nothing more happens.
      f.calls.length = 0;
      expect(await restore(f.ctx, job)).to.deep.equal({ skipped: 'restore run is succeeded' });
      expect(f.calls).to.deep.equal([]);
    } finally {
      runtime.server.close();
    }
  });

  it('a suspended instance is swapped and configured, and its service stays stopped', async () => {
    const f = fakeContext();
    const { instance, run, job } = await setUp(f, 'suspended');
    expect(await runToEnd(f, job)).to.include({ restored: run.backupId });
    expect(f.calls.filter((c) => c.startsWith('compute.deploy'))).to.deep.equal([]);
    expect(f.calls).to.include('compute.configure claw-svc').and.include('database.deleteDatabase old');
    expect(f.instances.get(instance.id).branch_id).to.equal(job.data.restored!.branchId);
    expect((await f.backups.restoreById(run.id))!.state).to.equal('succeeded');
  });

  it('a deployment that fails on the restored database swaps back, redeploys on the old one and deletes the fresh one', async () => {
    const f = fakeContext();
    const { instance, run, job } = await setUp(f, 'active');
    expect(await rejection(restore(f.ctx, job))).to.be.instanceOf(DelayedError); // deployed, waiting
    for (const id of f.compute.services.get('claw-svc')!.deployments) f.compute.deploymentStates.set(id, 'failed');
    const failing = await rejection(restore(f.ctx, job));
    expect(failing).to.be.instanceOf(PermanentError);
    expect(failing.message).to.match(/swapped back/).and.match(/fresh database .* deleted/);
    expect(f.instances.get(instance.id)).to.include({ branch_id: 'br-old', database_name: 'old', database_role: 'old' });
    expect(await f.customerDbs.connectionUrl(instance.id)).to.equal(`postgres://claw@db/${instance.id}`);
    expect(f.database.deleted.map((d) => d.branchId)).to.deep.equal([job.data.restored!.branchId]);
    expect(f.calls.filter((c) => c === 'compute.deploy claw-svc')).to.have.length(2);
    const after = (await f.backups.restoreById(run.id))!;
    expect(after.state).to.equal('failed');
    expect(after.error).to.match(/deployment on the restored database failed/);
    expect(f.audit.actions(instance.id)).to.include('instance.restore_failed');
  });

  it('a backup whose stored bytes changed is refused before anything is touched', async () => {
    const f = fakeContext();
    const { instance, run, job } = await setUp(f, 'active');
    const name = (await f.backups.byId(run.backupId))!.location!;
    f.archives.files.set(name, Buffer.concat([f.archives.files.get(name)!, Buffer.from('x')]));
    const failing = await rejection(restore(f.ctx, job));
    expect(failing.message).to.match(/does not match what was written/).and.match(/the live database was never changed/);
    expect(f.calls.filter((c) => /^(compute|database)\./.test(c))).to.deep.equal([]);
    expect(f.instances.get(instance.id).branch_id).to.equal('br-old');
    expect((await f.backups.restoreById(run.id))!.state).to.equal('failed');
  });
});
