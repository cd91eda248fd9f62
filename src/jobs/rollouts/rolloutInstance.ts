/**
 * rollout-instance: one instance of a rollout moved to the rollout's target generation (update) or back to the one it
 * ran before (rollback). Holding the instance's lifecycle lock, it configures the service with the generation and
 * deploys; then the health gate polls the runtime's /health, holding no slot between polls, until it answers 200
 * reporting that generation and its version, or the gate's deadline (ROLLOUT_HEALTH_TIMEOUT) passes. The outcome is
 * written to the rollout's row of the instance (healthy, failed with why, rolled back), where the coordinator reads it.
 */
import { DelayedError } from 'bullmq';
import { PermanentError, errorMessage } from '../../errors.ts';
import { isPlanName, PLANS } from '../../../core/plans.ts';
import { maskSecrets } from '../../../core/logger.ts';
import { configureService } from '../../operations/service.ts';
import { isFinalFailure } from '../../operations/incidents.ts';
import { probeHealth } from '../../operations/runtimeHealth.ts';
import type { RolloutInstanceData } from '../../queues/catalogue.ts';
import type { Generation } from '../../db/fleetGenerations.ts';
import type { JobContext, JobHandle } from '../context.ts';
import { withLockedInstance, type Outcome } from '../lifecycle/lockedInstance.ts';
import { beforeRolloutChange } from './hooks.ts';

const FIRST_POLL_MS = 250;
const MAX_POLL_MS = 2_000;

export async function rolloutInstance(ctx: JobContext, job: JobHandle<RolloutInstanceData>, token?: string): Promise<Outcome> {
  try {
    return await moveInstance(ctx, job, token);
  } catch (err) {
    if (err instanceof DelayedError || !isFinalFailure(job, err)) throw err;
    // The job's last attempt: the instance's row says why, so the coordinator counts it and goes on.
    const reason = maskSecrets(errorMessage(err)).slice(0, 500);
    await finish(ctx, job.data, false, reason);
    return { failed: reason };
  }
}

async function moveInstance(ctx: JobContext, job: JobHandle<RolloutInstanceData>, token?: string): Promise<Outcome> {
  const { rolloutId, instanceId, direction } = job.data;
  const rollout = await ctx.rollouts.byId(rolloutId);
  const row = await ctx.rollouts.instance(rolloutId, instanceId);
  if (!rollout || !row) throw new PermanentError(`rollout ${rolloutId} has no instance ${instanceId}`);
  const generationId = direction === 'update' ? rollout.target_generation : (row.from_generation ?? rollout.previous_generation);
  const generation = await ctx.fleet.byId(generationId);
  if (!generation) throw new PermanentError(`generation ${generationId} does not exist`);

  if (job.data.deadline === undefined) {
    const changed = await withLockedInstance(ctx, job, token, async (instance): Promise<Outcome> => {
      if (instance.status !== 'active' || !instance.service_id || !isPlanName(instance.plan)) {
        return { skipped: `the instance is ${instance.status}` };
      }
      if (direction === 'update') await beforeRolloutChange(ctx, instance);
      await configureService(ctx, instance, instance.service_id, PLANS[instance.plan], generation);
      const { deploymentId } = await ctx.compute.deploy(instance.service_id);
      return { deploymentId };
    });
    if ('skipped' in changed) {
      if (direction === 'update') await ctx.rollouts.setInstances(rolloutId, [instanceId], ['updating'], 'skipped', String(changed.skipped));
      else await ctx.rollouts.setRollback(rolloutId, [instanceId], 'failed', `rollback skipped: ${changed.skipped}`);
      return changed;
    }
    await job.log(`${direction === 'update' ? 'updating' : 'rolling back'} to generation ${generation.id} (version ${generation.runtimeVersion}), deployment ${changed.deploymentId}`);
    await job.updateData({ ...job.data, deadline: Date.now() + ctx.config.fleet.rolloutHealthTimeoutMs, polls: 0 });
  }
  return healthGate(ctx, job, token, generation);
}

/** Polls /health until it reports the generation (200, its version and generation), or the deadline passes. */
async function healthGate(ctx: JobContext, job: JobHandle<RolloutInstanceData>, token: string | undefined, generation: Generation): Promise<Outcome> {
  const data = job.data;
  const polls = data.polls ?? 0;
  const instance = await ctx.instances.byId(data.instanceId);
  let last = 'the instance has no access URL';
  if (instance?.access_url) {
    const answer = await probeHealth(instance.access_url);
    const { version, settingsGeneration } = answer.body;
    if (answer.ok && version === generation.runtimeVersion && settingsGeneration === generation.id) {
      await job.log(`healthy on generation ${generation.id} after ${polls + 1} checks`);
      await finish(ctx, data, true, null);
      return { healthy: generation.id, checks: polls + 1 };
    }
    last = answer.ok ? `answers 200 on version ${String(version)}, generation ${String(settingsGeneration)}` : answer.last;
  }
  if (Date.now() >= data.deadline!) {
    const reason = `not healthy on generation ${generation.id} (version ${generation.runtimeVersion}) within ${Math.round(ctx.config.fleet.rolloutHealthTimeoutMs / 1000)} s (last: ${last})`;
    await job.log(reason);
    await finish(ctx, data, false, maskSecrets(reason));
    return { failed: reason };
  }
  if (polls % 10 === 0) await job.log(`not healthy on generation ${generation.id} yet (${last})`);
  await job.updateData({ ...data, polls: polls + 1 });
  await job.moveToDelayed(Date.now() + Math.min(FIRST_POLL_MS * 2 ** polls, MAX_POLL_MS, Math.max(0, data.deadline! - Date.now())), token);
  throw new DelayedError();
}

async function finish(ctx: Pick<JobContext, 'rollouts'>, data: RolloutInstanceData, healthy: boolean, detail: string | null): Promise<void> {
  if (data.direction === 'update') {
    await ctx.rollouts.setInstances(data.rolloutId, [data.instanceId], ['updating'], healthy ? 'healthy' : 'failed', detail);
  } else {
    await ctx.rollouts.setRollback(data.rolloutId, [data.instanceId], healthy ? 'done' : 'failed', healthy ? null : `rollback failed: ${detail}`);
  }
}
