/** The reconciler's comparisons (pure): orphans, duplicates, missing resources, drift, and when it holds back. */
import { expect } from 'chai';
import type { FleetInstance } from '../../src/db/reconciliation.ts';
import { instanceResources, workspaceOfResource } from '../../src/instances/resources.ts';
import type { InstanceStatus } from '../../src/instances/stateMachine.ts';
import { driftBatch, driftOf, findMissing, findOrphans, holdBack, HOLD_BACK_ABOVE, ourResources, type Resource } from '../../src/jobs/fleet/reconcileCompare.ts';

const PROVIDERS = { compute: 'railway', database: 'neon' };
let n = 0;
const hex = () => (++n).toString(16).padStart(16, 'a');

function instance(status: InstanceStatus, fields: Partial<FleetInstance> = {}): FleetInstance {
  const workspace = `ws-${hex()}`;
  return {
    id: `inst-${workspace}`,
    customer_id: 'cust',
    workspace_id: workspace,
    status,
    plan: 'pro',
    generation: 1,
    compute_provider: 'railway',
    database_provider: 'neon',
    service_id: `svc-${workspace}`,
    branch_id: `proj/br-${workspace}`,
    access_url: null,
    drift_checked_at: null,
    ...fields,
  };
}

/** What the providers list for an instance: its service and branch, under the ids it recorded. */
function resourcesOf(i: FleetInstance): Resource[] {
  const names = instanceResources(i.workspace_id);
  return [
    { kind: 'service', provider: 'railway', id: i.service_id!, name: names.serviceName, workspaceId: i.workspace_id, missing: [] },
    { kind: 'database', provider: 'neon', id: i.branch_id!, name: names.databaseName, workspaceId: i.workspace_id, missing: [] },
  ];
}

describe('reconciler comparisons', () => {
  it('reads a workspace back only from names of our exact making, per kind', () => {
    const names = instanceResources('ws-0123456789abcdef');
    expect(workspaceOfResource('service', names.serviceName)).to.equal('ws-0123456789abcdef');
    expect(workspaceOfResource('database', names.databaseName)).to.equal('ws-0123456789abcdef');
    expect(workspaceOfResource('database', names.serviceName)).to.equal(undefined);
    expect(workspaceOfResource('service', names.databaseName)).to.equal(undefined);
    for (const name of ['claw-other-1', 'claw-0123456789ABCDEF', 'claw-0123456789abcdef0', 'web', 'main', 'xclaw-0123456789abcdef']) {
      expect(workspaceOfResource('service', name), name).to.equal(undefined);
    }
  });

  it('keeps only what the providers list under our naming', () => {
    const resources = ourResources(
      {
        services: [
          { serviceId: 's1', name: 'claw-0123456789abcdef' },
          { serviceId: 's2', name: 'worker' },
          { serviceId: 's3', name: 'claw-other-7' },
        ],
        databases: [
          { branchId: 'p/b1', databaseName: 'clawdbot', roleName: 'claw_0123456789abcdef', name: 'claw_0123456789abcdef', missing: [] },
          { branchId: 'p/main', databaseName: 'clawdbot', roleName: 'main', name: 'main', missing: [] },
        ],
      },
      PROVIDERS,
    );
    expect(resources.map((r) => `${r.kind} ${r.provider} ${r.id} ${r.workspaceId}`)).to.deep.equal([
      'service railway s1 ws-0123456789abcdef',
      'database neon p/b1 ws-0123456789abcdef',
    ]);
  });

  it('calls orphans exactly what no instance owns or an abandoned, archived or purged one left, and never a live one’s', () => {
    const live = (['provisioning', 'active', 'suspended', 'failed', 'cancelled'] as const).map((s) => instance(s));
    const ended = (['abandoned', 'archived', 'purged'] as const).map((s) => instance(s));
    const stranger: Resource = { kind: 'service', provider: 'railway', id: 'svc-x', name: `claw-${'f'.repeat(16)}`, workspaceId: `ws-${'f'.repeat(16)}`, missing: [] };
    const resources = [...live, ...ended].flatMap(resourcesOf).concat(stranger);

    const { orphans, duplicates } = findOrphans(resources, [...live, ...ended]);
    expect(orphans.map((o) => `${o.kind} ${o.id} ${o.instanceStatus}`).sort()).to.deep.equal(
      [...ended.flatMap((i) => [`service ${i.service_id} ${i.status}`, `database ${i.branch_id} ${i.status}`]), 'service svc-x null'].sort(),
    );
    expect(orphans.find((o) => o.id === 'svc-x')!.instanceId).to.equal(null);
    expect(duplicates).to.deep.equal([]);
  });

  it('keeps a live instance’s resources it has not recorded yet, and reports a second one under its name as a duplicate', () => {
    const provisioning = instance('provisioning', { service_id: null, branch_id: null });
    const active = instance('active');
    const second: Resource = { ...resourcesOf(active)[0]!, id: 'svc-second' };
    const { orphans, duplicates } = findOrphans([...resourcesOf({ ...provisioning, service_id: 'svc-new', branch_id: 'proj/br-new' }), ...resourcesOf(active), second], [provisioning, active]);
    expect(orphans).to.deep.equal([]);
    expect(duplicates.map((d) => `${d.id} ${d.instanceId}`)).to.deep.equal([`svc-second ${active.id}`]);
  });

  it('finds an active or suspended instance’s missing service or database, by recorded id, and a local database dropped under its role', () => {
    const whole = instance('active');
    const noService = instance('active');
    const noBranch = instance('suspended');
    const dropped = instance('active', { compute_provider: 'railway', database_provider: 'local', branch_id: null });
    const cancelled = instance('cancelled');
    const provisioning = instance('provisioning');
    const droppedResources = resourcesOf({ ...dropped, branch_id: 'x' }).map((r) =>
      r.kind === 'database' ? { ...r, provider: 'local', id: r.name, missing: ['database'] } : r,
    );
    const resources = [...resourcesOf(whole), resourcesOf(noService)[1]!, resourcesOf(noBranch)[0]!, ...droppedResources];
    const fleet = [whole, noService, noBranch, dropped, cancelled, provisioning];

    const missing = findMissing(resources, { before: fleet, after: fleet }, PROVIDERS);
    expect(missing.map((m) => `${m.instanceId} ${m.kind} ${m.expected} ${m.gone.join(',')}`)).to.deep.equal([
      `${noService.id} service ${noService.service_id} service`,
      `${noBranch.id} database ${noBranch.branch_id} database`,
    ]);

    // The same on the local database provider: the dropped database is found gone though its role is listed.
    const local = findMissing(resources, { before: fleet, after: fleet }, { compute: 'railway', database: 'local' });
    expect(local.filter((m) => m.kind === 'database').map((m) => `${m.instanceId} ${m.expected} ${m.gone.join(',')}`)).to.deep.equal([
      `${dropped.id} ${instanceResources(dropped.workspace_id).databaseName} database`,
    ]);
  });

  it('leaves out an instance that moved on while the providers were listed', () => {
    const archivedSince = instance('active');
    const replacedSince = instance('active');
    const after = [{ ...archivedSince, status: 'cancelled' as const }, { ...replacedSince, service_id: 'svc-new' }];
    expect(findMissing([], { before: [archivedSince, replacedSince], after }, PROVIDERS).map((m) => `${m.instanceId} ${m.kind}`)).to.deep.equal([
      `${replacedSince.id} database`,
    ]);
  });

  it('names drifted variables (never values), differing limits and the plan a service runs', () => {
    const wanted = { variables: { PLAN: 'pro', MESSAGE_LIMIT: '20000', DATABASE_URL: 'postgres://secret' }, limits: { cpu: 1, memoryMb: 1024 } };
    expect(driftOf(wanted, { variables: { ...wanted.variables, PORT: '8080' }, limits: { cpu: 1, memoryMb: 1024 } })).to.equal(null);
    expect(driftOf(wanted, { variables: wanted.variables, limits: null }), 'limits the provider does not tell').to.equal(null);

    const drift = driftOf(wanted, { variables: { PLAN: 'starter', MESSAGE_LIMIT: '20000' }, limits: { cpu: 0.5, memoryMb: 512 } })!;
    expect(drift).to.deep.equal({
      variables: ['DATABASE_URL', 'PLAN'],
      limits: { held: { cpu: 0.5, memoryMb: 512 }, wanted: { cpu: 1, memoryMb: 1024 } },
      plan: { held: 'starter', wanted: 'pro' },
    });
    expect(JSON.stringify(drift)).to.not.include('secret');
    expect(driftOf(wanted, { variables: { ...wanted.variables, DATABASE_URL: 'postgres://old' }, limits: wanted.limits })).to.deep.equal({
      variables: ['DATABASE_URL'],
      limits: null,
      plan: null,
    });
  });

  it('compares the active instances compared longest ago first, a bounded number a run', () => {
    const never = instance('active');
    const old = instance('active', { drift_checked_at: new Date(1_000) });
    const recent = instance('active', { drift_checked_at: new Date(9_000) });
    const elsewhere = instance('active', { compute_provider: 'local' });
    const suspended = instance('suspended');
    expect(driftBatch([recent, suspended, old, elsewhere, never], 'railway', 2).map((i) => i.id)).to.deep.equal([never.id, old.id]);
  });

  it('holds back when more than half of what is listed looks orphaned, beyond a few', () => {
    expect(holdBack(HOLD_BACK_ABOVE, HOLD_BACK_ABOVE)).to.equal(null);
    expect(holdBack(HOLD_BACK_ABOVE + 1, 2 * (HOLD_BACK_ABOVE + 1))).to.equal(null);
    expect(holdBack(HOLD_BACK_ABOVE + 1, 2 * (HOLD_BACK_ABOVE + 1) - 1)).to.match(/more than half/);
  });
});
