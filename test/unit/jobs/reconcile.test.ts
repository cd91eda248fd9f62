/**
 * The reconcile job on in-memory fakes: what a dry run reports and leaves alone, when orphans go, that a live
 * instance's resources are never touched, one incident per missing resource, drift corrected through the plan's
 * configuration, and the lock and hold-back that keep a run from doing harm.
 */
import { expect } from 'chai';
import { instanceResources } from '../../../src/instances/resources.ts';
import type { InstanceStatus } from '../../../src/instances/stateMachine.ts';
import { inspectFleet, reconcile, type ReconcileReport } from '../../../src/jobs/fleet/reconcile.ts';
import { configureService } from '../../../src/operations/service.ts';
import { PLANS } from '../../../core/plans.ts';
import { setLogLevel } from '../../../core/logger.ts';
import type { FleetData } from '../../../src/queues/catalogue.ts';
import { FakeJob, fakeContext, type Fakes } from '../../support/fakes.ts';

let n = 0;
const workspace = () => `ws-${(++n).toString(16).padStart(16, 'c')}`;
const job = (data: FleetData = {}) => new FakeJob<FleetData>('reconcile', data, 'fleet');

/** An instance in `status` with its service (configured for its plan) and database, as a provisioning leaves them. */
async function instanceWith(f: Fakes, status: InstanceStatus) {
  const ws = workspace();
  const names = instanceResources(ws);
  const { serviceId } = await f.compute.createService(names.serviceName);
  const ready = await f.database.ensureDatabase(names.databaseName);
  const instance = f.instances.add({
    workspace_id: ws,
    status,
    plan: 'pro',
    compute_provider: 'fake',
    database_provider: 'fake',
    service_id: serviceId,
    branch_id: 'ready' in ready ? ready.ready.branchId : null,
  });
  await f.customerDbs.give(instance.id);
  await configureService(f.ctx, instance, serviceId, PLANS.pro);
  return instance;
}

/** A service and a database under our naming that no instance owns. */
async function strays(f: Fakes) {
  const names = instanceResources(workspace());
  await f.compute.createService(names.serviceName);
  await f.database.ensureDatabase(names.databaseName);
  return names;
}

async function run(f: Fakes, data: FleetData = {}) {
  const result = await reconcile(f.ctx, job(data));
  return { result, report: f.reconciliation.reports.at(-1) as ReconcileReport };
}

describe('reconcile (fakes)', () => {
  let f: Fakes;
  // Runs that act log a line each; the tests check what they did instead.
  before(() => setLogLevel('warn'));
  after(() => setLogLevel('info'));
  beforeEach(() => {
    f = fakeContext({ ORPHAN_GRACE: '1m' });
  });

  it('dry run: lists exactly the orphans and changes nothing', async () => {
    const live = await Promise.all((['active', 'provisioning', 'cancelled'] as const).map((s) => instanceWith(f, s)));
    const abandoned = await instanceWith(f, 'abandoned');
    const stray = await strays(f);
    f.calls.length = 0;

    const report = await inspectFleet(f.ctx);
    expect(report.dryRun).to.equal(true);
    expect(report.orphans.map((o) => `${o.kind} ${o.name} ${o.instanceStatus} ${o.outcome}`).sort()).to.deep.equal(
      [
        `service ${stray.serviceName} null waiting`,
        `database ${stray.databaseName} null waiting`,
        `service ${abandoned.service_id} abandoned waiting`,
        `database ${instanceResources(abandoned.workspace_id).databaseName} abandoned waiting`,
      ].sort(),
    );
    expect(report.missing).to.deep.equal([]);
    expect(report.drift).to.deep.equal({ checked: 1, found: [] });
    expect(f.calls.filter((c) => !/list/.test(c))).to.deep.equal([]);
    expect(f.reconciliation.seen.size, 'no sighting recorded').to.equal(0);
    expect(f.reconciliation.checked.size, 'no drift check recorded').to.equal(0);
    expect(live.every((i) => f.compute.services.has(i.service_id!))).to.equal(true);
  });

  it('deletes orphans only once the grace has passed since a run first saw them, each with an audit row', async () => {
    const live = await Promise.all((['active', 'suspended', 'failed'] as const).map((s) => instanceWith(f, s)));
    const archived = await instanceWith(f, 'archived');
    const stray = await strays(f);
    f.calls.length = 0;

    const first = await run(f);
    expect(first.result).to.include({ orphans: 4, deleted: 0, waiting: 4 });
    expect(f.calls.filter((c) => /^(compute|database)\.delete/.test(c))).to.deep.equal([]);

    f.reconciliation.age(59_000);
    expect((await run(f)).result).to.include({ deleted: 0 });

    f.reconciliation.age(2_000);
    const due = await run(f);
    expect(due.result).to.include({ orphans: 4, deleted: 4 });
    expect(f.calls.filter((c) => /^(compute|database)\.delete/.test(c)).sort()).to.deep.equal(
      [
        `compute.deleteService ${stray.serviceName}`,
        `database.deleteDatabase ${stray.databaseName}`,
        `compute.deleteService ${archived.service_id}`,
        `database.deleteDatabase ${instanceResources(archived.workspace_id).databaseName}`,
      ].sort(),
    );
    const deletions = f.audit.entries.filter((e) => e.action === 'reconcile.orphan_deleted');
    expect(deletions.map((e) => `${e.instanceId} ${(e.detail as { name: string }).name}`).sort()).to.deep.equal(
      [
        `null ${stray.serviceName}`,
        `null ${stray.databaseName}`,
        `${archived.id} ${archived.service_id}`,
        `${archived.id} ${instanceResources(archived.workspace_id).databaseName}`,
      ].sort(),
    );
    // Nothing of a live instance was touched, and the next run finds nothing more.
    for (const i of live) {
      expect(f.compute.services.has(i.service_id!)).to.equal(true);
      expect(f.database.databases.has(i.branch_id!)).to.equal(true);
    }
    expect((await run(f)).result).to.include({ orphans: 0, deleted: 0 });
  });

  it('keeps an orphan whose instance is busy or came back, and looks again next run', async () => {
    const archived = await instanceWith(f, 'archived');
    await run(f);
    f.reconciliation.age(120_000);

    f.locks.held.add(archived.id); // a reactivation holds the instance
    const busy = await run(f);
    expect(busy.report.orphans.map((o) => o.outcome)).to.deep.equal(['kept', 'kept']);
    expect(busy.report.orphans[0]!.reason).to.match(/lifecycle job holds/);
    f.locks.held.delete(archived.id);

    f.instances.get(archived.id).status = 'provisioning'; // reactivated: its resources are its own again
    const back = await run(f);
    expect(back.report.orphans).to.deep.equal([]);
    expect(f.compute.services.has(archived.service_id!)).to.equal(true);
    expect(f.reconciliation.seen.size, 'its sightings are forgotten').to.equal(0);
  });

  it('raises one incident for an active instance missing its database, and recreates nothing', async () => {
    const instance = await instanceWith(f, 'active');
    f.database.databases.delete(instance.branch_id!);
    f.calls.length = 0;

    const first = await run(f);
    expect(first.report.missing.map((m) => `${m.kind} ${m.expected} ${m.outcome}`)).to.deep.equal([`database ${instance.branch_id} raised`]);
    const second = await run(f);
    expect(second.report.missing.map((m) => m.outcome)).to.deep.equal(['raised-before']);

    expect(f.audit.actions(instance.id).filter((a) => a === 'reconcile.missing')).to.have.length(1);
    expect(f.jobs.of('addAlerts')).to.have.length(1);
    expect(f.calls.filter((c) => /ensureDatabase|createService|deploy|configure/.test(c))).to.deep.equal([]);
  });

  it('corrects a drifted service through its plan’s configuration and a deploy, with an audit row; a dry run only reports it', async () => {
    const instance = await instanceWith(f, 'active');
    const service = f.compute.services.get(instance.service_id!)!;
    service.variables.PLAN = 'team';
    service.limits = { cpu: 2, memoryMb: 2048 };
    f.calls.length = 0;

    const dry = await inspectFleet(f.ctx);
    expect(dry.drift.found.map((d) => `${d.variables.join(',')} ${d.limits?.held.cpu} ${d.plan?.held} ${d.outcome}`)).to.deep.equal(['PLAN 2 team would-correct']);
    expect(f.calls.filter((c) => /configure|deploy/.test(c))).to.deep.equal([]);

    const real = await run(f);
    expect(real.report.drift.found.map((d) => d.outcome)).to.deep.equal(['corrected']);
    expect(f.calls.filter((c) => /configure|deploy/.test(c))).to.deep.equal([`compute.configure ${instance.service_id}`, `compute.deploy ${instance.service_id}`]);
    expect(service.variables.PLAN).to.equal('pro');
    expect(service.limits).to.deep.equal({ cpu: 1, memoryMb: 1024, pidsLimit: 256 });
    const [corrected] = f.audit.entries.filter((e) => e.action === 'reconcile.drift_corrected');
    expect(corrected!.detail).to.deep.include({ variables: ['PLAN'], plan: { held: 'team', wanted: 'pro' } });
    expect(JSON.stringify(real.report)).to.not.include('postgres://');
    expect((await run(f)).report.drift.found).to.deep.equal([]);
  });

  it('does nothing while another run holds the lock', async () => {
    await strays(f);
    f.reconciliation.locked = true;
    expect((await reconcile(f.ctx, job())).skipped).to.match(/another reconcile run/);
    expect(f.reconciliation.reports).to.deep.equal([]);
  });

  it('holds back, with one incident, when most of what is listed looks orphaned', async () => {
    await instanceWith(f, 'active');
    for (let i = 0; i < 6; i++) await strays(f); // 12 orphans of 14 resources
    await run(f);
    f.reconciliation.age(120_000);
    const held = await run(f);
    expect(held.report.heldBack).to.match(/more than half/);
    expect(held.report.orphans.every((o) => o.outcome === 'kept')).to.equal(true);
    const dry = await inspectFleet(f.ctx);
    expect(dry.heldBack, 'a dry run says so too').to.match(/more than half/);
    expect(dry.orphans.every((o) => o.outcome === 'kept')).to.equal(true);
    expect(f.calls.filter((c) => /^(compute|database)\.delete/.test(c))).to.deep.equal([]);
    await run(f);
    expect(f.audit.actions().filter((a) => a === 'reconcile.held_back')).to.have.length(1);
  });
});
