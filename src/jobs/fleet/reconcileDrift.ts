/**
 * The reconciler's drift: an active instance's service compared with what configuring it for its plan sets
 * (variables, CPU and memory), and corrected through that same operation, then redeployed so the runtime runs on
 * it, as a plan change does. A run compares at most DRIFT_CHECKS_PER_RUN instances, those compared longest ago
 * first: one provider read each.
 */
import { maskSecrets } from '../../../core/logger.ts';
import { isPlanName, PLANS } from '../../../core/plans.ts';
import type { FleetInstance } from '../../db/reconciliation.ts';
import { configuredSettings, configureService } from '../../operations/service.ts';
import type { JobContext } from '../context.ts';
import { driftOf, type Drift } from './reconcileCompare.ts';

export const DRIFT_CHECKS_PER_RUN = 25;

/** A drifted service in a report: names of what differs, never values. */
export interface DriftEntry extends Drift {
  instanceId: string;
  workspaceId: string;
  serviceId: string;
  /** would-correct: a dry run's; skipped: the instance changed or was busy (the next run looks again). */
  outcome: 'corrected' | 'would-correct' | 'skipped' | 'failed';
  reason?: string;
  deploymentId?: string;
}

/** What a dry run reads (the web process runs one). */
export type DriftReadContext = Pick<JobContext, 'config' | 'compute' | 'customerDbs' | 'fleet'> & { secrets: Pick<JobContext['secrets'], 'get'> };

/** Compares each instance's service with its plan; answers the drifted ones (or those that could not be read). */
export async function findDrift(ctx: DriftReadContext, instances: FleetInstance[]): Promise<DriftEntry[]> {
  const found: DriftEntry[] = [];
  for (const instance of instances) {
    if (!instance.service_id || !isPlanName(instance.plan)) continue;
    const base = { instanceId: instance.id, workspaceId: instance.workspace_id, serviceId: instance.service_id };
    try {
      const held = await ctx.compute.readSettings(instance.service_id);
      if (!held) continue; // a missing service is an incident of its own
      const drift = driftOf(await configuredSettings(ctx, instance, PLANS[instance.plan]), held);
      if (drift) found.push({ ...base, ...drift, outcome: 'would-correct' });
    } catch (err) {
      found.push({ ...base, variables: [], limits: null, plan: null, outcome: 'failed', reason: maskSecrets((err as Error).message).slice(0, 500) });
    }
  }
  return found;
}

/**
 * Corrects each drifted service, holding its instance's lifecycle lock (a plan change holds it too, so the two never
 * cross) and only while the instance is still active on the plan and service it was compared for.
 */
export async function correctDrift(ctx: Pick<JobContext, 'config' | 'compute' | 'customerDbs' | 'secrets' | 'instances' | 'locks' | 'audit' | 'fleet'>, entries: DriftEntry[], fleet: FleetInstance[]): Promise<void> {
  const byId = new Map(fleet.map((i) => [i.id, i]));
  for (const entry of entries.filter((e) => e.outcome === 'would-correct')) {
    const plan = byId.get(entry.instanceId)?.plan;
    if (!isPlanName(plan)) continue; // findDrift compared only instances on a known plan
    try {
      const locked = await ctx.locks.withLock(entry.instanceId, async () => {
        const instance = await ctx.instances.byId(entry.instanceId);
        if (!instance || instance.status !== 'active' || instance.service_id !== entry.serviceId || instance.plan !== plan) {
          return { skipped: 'the instance changed since it was compared' };
        }
        // Put back as it was configured (its own generation): moving it to other fleet settings is a rollout's work.
        await configureService(ctx, instance, entry.serviceId, PLANS[plan], 'instance');
        const { deploymentId } = await ctx.compute.deploy(entry.serviceId);
        await ctx.audit.record({
          actor: 'worker',
          action: 'reconcile.drift_corrected',
          customerId: instance.customer_id,
          instanceId: instance.id,
          detail: { serviceId: entry.serviceId, variables: entry.variables, limits: entry.limits, plan: entry.plan, deploymentId },
        });
        return { deploymentId };
      });
      if (!locked.ran) Object.assign(entry, { outcome: 'skipped', reason: 'a lifecycle job holds the instance: the next run looks again' });
      else if ('skipped' in locked.value) Object.assign(entry, { outcome: 'skipped', reason: locked.value.skipped });
      else Object.assign(entry, { outcome: 'corrected', deploymentId: locked.value.deploymentId });
    } catch (err) {
      Object.assign(entry, { outcome: 'failed', reason: maskSecrets((err as Error).message).slice(0, 500) });
    }
  }
}
