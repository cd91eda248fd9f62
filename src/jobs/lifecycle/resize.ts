import { PermanentError } from '../../errors.ts';
import { logInstanceEvent } from '../../instances/eventLog.ts';
import { isRunning } from '../../instances/stateMachine.ts';
import { configureService } from '../../operations/service.ts';
import { backupNow } from '../../operations/backup.ts';
import { PLANS } from '../../../core/plans.ts';
import type { ResizeData } from '../../queues/catalogue.ts';
import { renderWorkspace } from '../../workspace/render.ts';
import type { JobContext, JobHandle } from '../context.ts';
import { withLockedInstance, type Outcome } from './lockedInstance.ts';

/**
 * A plan change, in place: the service gets the new plan's variables (message limit, features) and CPU and memory,
 * and restarts on them; the new plan's skill files are added to the workspace (nothing the customer changed is
 * overwritten) and STATE.json records the plan. The database, its memories and the key stay as they are; a verified
 * backup of it is taken first.
 */
export async function resize(ctx: JobContext, job: JobHandle<ResizeData>, token?: string): Promise<Outcome> {
  return withLockedInstance(ctx, job, token, async (instance): Promise<Outcome> => {
    const plan = PLANS[job.data.plan];
    if (!isRunning(instance.status)) return { skipped: `instance is ${instance.status}` };
    if (instance.plan === plan.name) return { unchanged: plan.name };
    if (!instance.service_id || !instance.email) throw new PermanentError('instance has no service or customer email');
    // A verified backup first: the plan change does not go ahead without one (its failure is retried).
    const { backupId } = await backupNow(ctx, instance, 'plan-change');
    const files = renderWorkspace({
      workspaceId: instance.workspace_id,
      customer: { name: instance.customer_name, email: instance.email },
      plan,
      createdAt: instance.provision_started_at,
    });
    await ctx.customerDbs.updateWorkspace(instance.id, {
      add: files.filter((f) => f.path.startsWith('skills/')),
      replace: files.filter((f) => f.path === 'STATE.json'),
    });
    await configureService(ctx, instance, instance.service_id, plan, 'instance');
    const { deploymentId } = await ctx.compute.deploy(instance.service_id);
    await ctx.subscriptions.setPlan(instance.subscription_id, plan.name);
    await ctx.instances.update(instance.id, { plan: plan.name });
    await ctx.audit.record({
      actor: 'worker',
      action: 'instance.resized',
      customerId: instance.customer_id,
      instanceId: instance.id,
      detail: { from: instance.plan, to: plan.name, deploymentId, backupId },
    });
    const ids = { instance: instance.id, workspace: instance.workspace_id, customer: instance.customer_id };
    logInstanceEvent('resized', ids, { from: instance.plan, to: plan.name, deploymentId });
    return { from: instance.plan ?? '', to: plan.name, deploymentId };
  });
}
