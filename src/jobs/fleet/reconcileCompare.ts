/**
 * The reconciler's comparisons, pure: what the providers listed against the instance rows (orphans, duplicates,
 * missing resources), a service's settings against its plan's (drift), and which orphans are due. The job
 * (./reconcile.ts) reads and acts; nothing here does I/O.
 */
import type { FleetInstance } from '../../db/reconciliation.ts';
import { instanceResources, workspaceOfResource } from '../../instances/resources.ts';
import type { InstanceStatus } from '../../instances/stateMachine.ts';
import type { Plan } from '../../../core/plans.ts';
import type { ListedDatabase, ListedService, ServiceSettings } from '../../providers/types.ts';

export type ResourceKind = 'service' | 'database';

/** A resource under our naming, as a provider listed it. */
export interface Resource {
  kind: ResourceKind;
  /** The provider's kind (local, railway, neon). */
  provider: string;
  /** The provider's id: what deleting it takes (a Railway service id, <project>/<branch> on Neon, else the name). */
  id: string;
  name: string;
  /** The workspace its name was derived from. */
  workspaceId: string;
  /** Parts of it that are gone (a local role whose database was dropped). */
  missing: string[];
}

/** A resource and the instance its name points at, if any. */
export interface OwnedResource extends Resource {
  instanceId: string | null;
  instanceStatus: InstanceStatus | null;
}

/** An instance that should have a resource the provider does not list. */
export interface MissingResource {
  instanceId: string;
  workspaceId: string;
  status: InstanceStatus;
  generation: number;
  kind: ResourceKind;
  /** The recorded id, or else the name, that was looked for. */
  expected: string;
  /** What is gone: the whole service or database, or a part of a local one (its database, its role). */
  gone: string[];
}

/**
 * What a live instance's resources are never taken from: provisioning, running, suspended, failed (an operator may
 * retry) or cancelled and not yet archived (the archive needs them). Only abandoned, archived and purged instances
 * have nothing of theirs left to keep, and an archived or purged one may come back (the job checks again, under the
 * instance's lock, just before deleting).
 */
const ENDED_FOR_GOOD: ReadonlySet<InstanceStatus> = new Set(['abandoned', 'archived', 'purged']);

export function holdsNothing(status: InstanceStatus): boolean {
  return ENDED_FOR_GOOD.has(status);
}

/** Instances whose service and database must exist: the provisioning finished and nothing has deleted them. */
const MUST_HAVE: ReadonlySet<InstanceStatus> = new Set(['active', 'suspended']);

/** The resources under our naming among what the providers listed; anything else is never looked at again. */
export function ourResources(
  listed: { services: ListedService[]; databases: ListedDatabase[] },
  providers: { compute: string; database: string },
): Resource[] {
  const resources: Resource[] = [];
  for (const s of listed.services) {
    const workspaceId = workspaceOfResource('service', s.name);
    if (workspaceId) resources.push({ kind: 'service', provider: providers.compute, id: s.serviceId, name: s.name, workspaceId, missing: [] });
  }
  for (const d of listed.databases) {
    const workspaceId = workspaceOfResource('database', d.name);
    if (workspaceId) resources.push({ kind: 'database', provider: providers.database, id: d.branchId, name: d.name, workspaceId, missing: [...d.missing] });
  }
  return resources;
}

/** The id an instance recorded for a kind of resource (null when it recorded none). */
function recordedId(instance: FleetInstance, kind: ResourceKind): string | null {
  return kind === 'service' ? instance.service_id : instance.branch_id;
}

/**
 * Orphans: resources whose name points at no instance, or at one that holds nothing any more (abandoned, archived,
 * purged). Duplicates: a second resource under a live instance's name that is not the one it recorded; they are
 * only reported (which of two is the customer's is for an operator to say).
 */
export function findOrphans(resources: Resource[], instances: FleetInstance[]): { orphans: OwnedResource[]; duplicates: OwnedResource[] } {
  const byWorkspace = new Map(instances.map((i) => [i.workspace_id, i]));
  const orphans: OwnedResource[] = [];
  const duplicates: OwnedResource[] = [];
  for (const resource of resources) {
    const instance = byWorkspace.get(resource.workspaceId);
    const owned = { ...resource, instanceId: instance?.id ?? null, instanceStatus: instance?.status ?? null };
    if (!instance || holdsNothing(instance.status)) {
      orphans.push(owned);
      continue;
    }
    const recorded = recordedId(instance, resource.kind);
    if (recorded !== null && recorded !== resource.id) duplicates.push(owned);
  }
  return { orphans, duplicates };
}

/**
 * Active and suspended instances on these providers whose service or database is not listed (looked for by the id
 * they recorded, else by name), or listed with a part gone (a local database dropped, its role left). `before` is
 * read before the listing began (what it had then had to be listed), `after` once it ended: an instance that moved on
 * meanwhile (cancelled, archived, its service replaced) is left out.
 */
export function findMissing(
  resources: Resource[],
  instances: { before: FleetInstance[]; after: FleetInstance[] },
  providers: { compute: string; database: string },
): MissingResource[] {
  const now = new Map(instances.after.map((i) => [i.id, i]));
  const listed = new Map(resources.flatMap((r) => [[`${r.kind} id ${r.id}`, r] as const, [`${r.kind} name ${r.name}`, r] as const]));
  const missing: MissingResource[] = [];
  for (const instance of instances.before) {
    if (!MUST_HAVE.has(instance.status)) continue;
    const later = now.get(instance.id);
    if (later?.status !== instance.status) continue;
    const names = instanceResources(instance.workspace_id);
    const wanted: [ResourceKind, string | null, string][] = [];
    if (instance.compute_provider === providers.compute) wanted.push(['service', instance.service_id, names.serviceName]);
    if (instance.database_provider === providers.database) wanted.push(['database', instance.branch_id, names.databaseName]);
    for (const [kind, id, name] of wanted) {
      if (recordedId(later, kind) !== id) continue;
      const found = listed.get(id ? `${kind} id ${id}` : `${kind} name ${name}`);
      if (found && found.missing.length === 0) continue;
      missing.push({
        instanceId: instance.id,
        workspaceId: instance.workspace_id,
        status: instance.status,
        generation: instance.generation,
        kind,
        expected: id ?? name,
        gone: found ? [...found.missing] : [kind],
      });
    }
  }
  return missing;
}

/** How far a service's settings are from what its plan sets: variable names only, never their values. */
export interface Drift {
  /** Variables missing or with another value than configure sets. */
  variables: string[];
  limits: { held: Pick<Plan, 'cpu' | 'memoryMb'>; wanted: Pick<Plan, 'cpu' | 'memoryMb'> } | null;
  /** The plan the service runs (its PLAN variable), when it is not the instance's. */
  plan: { held: string | null; wanted: string } | null;
}

/**
 * The drift between what configure would set now and what the service holds, or null when there is none. Variables
 * the service holds besides ours are not looked at (the provider's own, such as PORT); limits the provider does not
 * tell are not compared.
 */
export function driftOf(wanted: { variables: Record<string, string>; limits: Pick<Plan, 'cpu' | 'memoryMb'> }, held: ServiceSettings): Drift | null {
  const variables = Object.keys(wanted.variables)
    .filter((name) => held.variables[name] !== wanted.variables[name])
    .sort();
  const limitsDiffer =
    held.limits !== null && (Math.abs(held.limits.cpu - wanted.limits.cpu) > 1e-6 || Math.abs(held.limits.memoryMb - wanted.limits.memoryMb) >= 1);
  const wantedPlan = wanted.variables.PLAN;
  const heldPlan = held.variables.PLAN ?? null;
  if (!variables.length && !limitsDiffer) return null;
  return {
    variables,
    limits: limitsDiffer ? { held: held.limits!, wanted: { cpu: wanted.limits.cpu, memoryMb: wanted.limits.memoryMb } } : null,
    plan: wantedPlan !== undefined && heldPlan !== wantedPlan ? { held: heldPlan, wanted: wantedPlan } : null,
  };
}

/** The active instances on this compute provider to compare with their plan this run: those compared longest ago. */
export function driftBatch(instances: FleetInstance[], computeProvider: string, size: number): FleetInstance[] {
  return instances
    .filter((i) => i.status === 'active' && i.compute_provider === computeProvider)
    .sort((a, b) => (a.drift_checked_at?.getTime() ?? -1) - (b.drift_checked_at?.getTime() ?? -1) || a.id.localeCompare(b.id))
    .slice(0, size);
}

/** When an orphan first seen at `firstSeenAt` may go. */
export function dueAt(firstSeenAt: Date, graceMs: number): Date {
  return new Date(firstSeenAt.getTime() + graceMs);
}

/** Below this many orphans a run never holds back (a small fleet's leftovers are normal). */
export const HOLD_BACK_ABOVE = 10;

/**
 * Why a run deletes nothing, or null: when most of what is listed under our naming looks orphaned, the control
 * plane is more likely wrong (an empty or wrong DATABASE_URL, a restored backup) than the fleet.
 */
export function holdBack(orphans: number, listed: number): string | null {
  if (orphans <= HOLD_BACK_ABOVE || orphans * 2 <= listed) return null;
  return `${orphans} of the ${listed} resources listed under our naming have no live instance: more than half, so nothing is deleted until an operator looks (is DATABASE_URL the right control-plane database?)`;
}
