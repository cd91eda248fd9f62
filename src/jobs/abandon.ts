/**
 * abandon: an operator gives up on a failed provisioning. The flow's remaining jobs are removed, then what the
 * steps made is undone newest-first (service, workspace, database), and the instance is marked abandoned.
 * Each compensation is idempotent, so the job can be retried until it completes. It holds the instance's lock, so no
 * step of the flow (say, an operator's re-run) works on the instance meanwhile.
 */
import { nextStatus } from '../instances/stateMachine.ts';
import { stopProvisionFlow } from '../operations/provisionFlow.ts';
import { teardownInstance } from '../operations/teardown.ts';
import type { ProvisionData } from '../queues/catalogue.ts';
import type { JobContext, JobHandle } from './context.ts';
import { withLockedInstance, type Outcome } from './lifecycle/lockedInstance.ts';

export async function abandon(ctx: JobContext, job: JobHandle<ProvisionData>, token?: string): Promise<Outcome> {
  return withLockedInstance(ctx, job, token, async (instance) => {
    nextStatus(instance.id, instance.status, 'abandoned'); // only a failed provisioning (or a repeat): else IllegalTransitionError

    await stopProvisionFlow(ctx, instance, job, token);
    const { serviceId, databaseName } = await teardownInstance(ctx, instance);
    const undone = [serviceId ? `service ${serviceId}` : 'no service (none was asked for)', 'workspace', `database ${databaseName}`];
    await job.log(`undone: ${undone.join(', ')}`);

    await ctx.instances.transition(instance.id, 'abandoned', { actor: 'operator', detail: { undone } });
    return { undone: undone.join(', ') };
  });
}
