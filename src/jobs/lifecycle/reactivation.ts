import { DelayedError } from 'bullmq';
import { PermanentError } from '../../errors.ts';
import { canHappen, isEnded } from '../../instances/stateMachine.ts';
import type { ReactivateData } from '../../queues/catalogue.ts';
import type { JobContext, JobHandle } from '../context.ts';
import { withLockedInstance, type Outcome } from './lockedInstance.ts';

/** How long a reactivation waits for the cancellation it comes after, and how often it looks. */
const WAIT_FOR_CANCELLATION_MS = 10 * 60_000;
const CANCELLATION_POLL_MS = 1_000;

/**
 * A customer comes back (a new subscription, or an operator). The pending archive and purge are called off and the
 * provisioning flow runs again as a new generation: before the archive it finds the service and database still
 * there and issues a new key; between archive and purge it makes them afresh and restores the archive into them;
 * after the purge it starts from nothing. Memories and conversations survive every path that still has them.
 *
 * A customer who comes back before their old subscription's cancellation has run (`afterCancellation`) waits for it,
 * so they end with their one instance, reactivated, and never with a second one beside it.
 */
export async function reactivate(ctx: JobContext, job: JobHandle<ReactivateData>, token?: string): Promise<Outcome> {
  return withLockedInstance(ctx, job, token, async (instance): Promise<Outcome> => {
    if (!isEnded(instance.status)) {
      if (!job.data.afterCancellation || !canHappen(instance.status, 'cancelled')) return { skipped: `instance is ${instance.status}` };
      if (Date.now() - job.timestamp > WAIT_FOR_CANCELLATION_MS) {
        throw new PermanentError(`the instance is still ${instance.status}: its cancellation did not run within ${WAIT_FOR_CANCELLATION_MS / 60_000} minutes`);
      }
      await job.log(`waiting for the cancellation of the ${instance.status} instance`);
      await job.moveToDelayed(Date.now() + CANCELLATION_POLL_MS, token);
      throw new DelayedError();
    }
    if (instance.cancelled_at) await ctx.jobs.removeArchiveAndPurge(instance, Math.floor(instance.cancelled_at.getTime() / 1000));
    const generation = instance.generation + 1;
    await ctx.instances.transition(instance.id, 'reactivated', {
      actor: 'worker',
      set: {
        generation,
        subscription_id: job.data.subscriptionId,
        plan: job.data.plan,
        api_key_hash: null,
        api_key_label: null,
        failed_step: null,
        failure_reason: null,
        failed_job: null,
        failure_alerted_at: null,
        cancelled_at: null,
        cancel_requested_at: null,
        archive_at: null,
        purge_at: null,
        archived_at: null,
        purged_at: null,
        provision_started_at: new Date(),
        active_at: null,
      },
      detail: { from: instance.status, plan: job.data.plan, generation },
    });
    await ctx.jobs.addProvisionFlow({ instanceId: instance.id, workspaceId: instance.workspace_id, generation });
    return { from: instance.status, generation };
  });
}
