/**
 * The reconciler's orphans: each is deleted once ORPHAN_GRACE has passed since a run first saw it, after a last look
 * at its instance (under the instance's lifecycle lock, so a reactivation and a deletion never overlap), with an
 * audit row. A run deletes at most DELETIONS_PER_RUN, and none when holdBack() says the control plane looks wrong.
 */
import { maskSecrets } from '../../../core/logger.ts';
import { sightingKey, type Sighting } from '../../db/reconciliation.ts';
import type { DatabaseRef } from '../../providers/types.ts';
import type { JobContext } from '../context.ts';
import { dueAt, holdsNothing, type OwnedResource } from './reconcileCompare.ts';

/** At most this many deletions a run (the rest wait for the next one), so a mistake spreads slowly. */
export const DELETIONS_PER_RUN = 20;

/** An orphan in a report: what it is, whose name it bears, since when it is seen and what the run did with it. */
export interface OrphanEntry {
  kind: OwnedResource['kind'];
  provider: string;
  id: string;
  name: string;
  workspaceId: string;
  instanceId: string | null;
  instanceStatus: string | null;
  /** When a run first saw it (null: no acting run has yet). */
  firstSeenAt: string | null;
  /** When it may be deleted. */
  dueAt: string;
  /** due: a dry run would delete it; waiting: its grace runs; kept: looked at again and not deleted. */
  outcome: 'deleted' | 'due' | 'waiting' | 'kept' | 'failed';
  reason?: string;
}

type OrphanContext = Pick<JobContext, 'compute' | 'database' | 'instances' | 'locks' | 'audit' | 'reconciliation'>;

/** What each orphan's sighting makes of it: due or waiting (nothing is done here). */
export function orphanEntries(orphans: OwnedResource[], sightings: Map<string, Sighting>, graceMs: number, now = new Date()): OrphanEntry[] {
  return orphans
    .map((o) => {
      const seen = sightings.get(sightingKey(o));
      const due = seen ? seen.ageMs >= graceMs : graceMs <= 0;
      return {
        kind: o.kind,
        provider: o.provider,
        id: o.id,
        name: o.name,
        workspaceId: o.workspaceId,
        instanceId: o.instanceId,
        instanceStatus: o.instanceStatus,
        firstSeenAt: seen?.firstSeenAt.toISOString() ?? null,
        dueAt: dueAt(seen ? new Date(now.getTime() - seen.ageMs) : now, graceMs).toISOString(),
        outcome: due ? ('due' as const) : ('waiting' as const),
      };
    })
    .sort((a, b) => a.dueAt.localeCompare(b.dueAt) || a.id.localeCompare(b.id));
}

/**
 * Deletes the due orphans, oldest first, at most DELETIONS_PER_RUN, each with its audit row; each outcome is written
 * on its entry. One that fails is reported and tried again next run.
 */
export async function deleteDueOrphans(ctx: OrphanContext, entries: OrphanEntry[], databases: Map<string, DatabaseRef>): Promise<void> {
  let deletions = 0;
  for (const entry of entries.filter((e) => e.outcome === 'due')) {
    if (deletions >= DELETIONS_PER_RUN) {
      Object.assign(entry, { outcome: 'waiting', reason: `this run's ${DELETIONS_PER_RUN} deletions are used: the next run goes on` });
      continue;
    }
    deletions++;
    try {
      const kept = await deleteOrphan(ctx, entry, databases);
      Object.assign(entry, kept ? { outcome: 'kept', reason: kept } : { outcome: 'deleted' });
    } catch (err) {
      Object.assign(entry, { outcome: 'failed', reason: maskSecrets((err as Error).message).slice(0, 500) });
    }
  }
}

/** Deletes one orphan after a last look at its instance; answers why it was kept instead, if it was. */
async function deleteOrphan(ctx: OrphanContext, entry: OrphanEntry, databases: Map<string, DatabaseRef>): Promise<string | undefined> {
  if (entry.instanceId === null) {
    // A provisioning records its instance before it makes anything: an instance that appeared since owns this.
    if (await ctx.instances.idOfWorkspace(entry.workspaceId)) return 'an instance of this workspace was made since it was listed';
    await remove(ctx, entry, databases, null);
    return undefined;
  }
  const instanceId = entry.instanceId;
  const locked = await ctx.locks.withLock(instanceId, async () => {
    const instance = await ctx.instances.byId(instanceId);
    if (instance && !holdsNothing(instance.status)) return `its instance is ${instance.status} again`;
    await remove(ctx, entry, databases, instance?.customer_id ?? null);
    return undefined;
  });
  return locked.ran ? locked.value : 'a lifecycle job holds its instance: the next run looks again';
}

async function remove(ctx: OrphanContext, entry: OrphanEntry, databases: Map<string, DatabaseRef>, customerId: string | null): Promise<void> {
  if (entry.kind === 'service') {
    await ctx.compute.deleteService(entry.id);
  } else {
    const ref = databases.get(entry.id);
    if (!ref) throw new Error(`database ${entry.id} was not in the listing`);
    await ctx.database.deleteDatabase(ref);
  }
  await ctx.audit.record({
    actor: 'worker',
    action: 'reconcile.orphan_deleted',
    customerId,
    instanceId: entry.instanceId,
    detail: {
      kind: entry.kind,
      provider: entry.provider,
      id: entry.id,
      name: entry.name,
      workspaceId: entry.workspaceId,
      instanceStatus: entry.instanceStatus,
      firstSeenAt: entry.firstSeenAt,
    },
  });
  await ctx.reconciliation.forget({ kind: entry.kind, provider: entry.provider, id: entry.id, name: entry.name });
}
