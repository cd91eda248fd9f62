/**
 * abandon: an operator gives up on a failed provisioning. The flow's remaining jobs are removed, then what the
 * completed steps made is undone newest-first (service, workspace, database), and the instance is marked abandoned.
 * Each compensation is idempotent, so the job can be retried until it completes.
 */
import type { Job } from 'bullmq';
import { audit, instanceById, updateInstance } from '../db/instances.ts';
import { PermanentError, TransientError } from '../errors.ts';
import { STEP_QUEUE, STEPS } from '../queues/names.ts';
import { stepJobId, type ProvisionData } from '../queues/provisionFlow.ts';
import { INSTANCE_SECRETS, instanceOwner, type JobContext } from './context.ts';

export async function abandon(ctx: JobContext, job: Job<ProvisionData>): Promise<{ undone: string }> {
  const instance = await instanceById(ctx.db, job.data.instanceId);
  if (!instance) throw new PermanentError(`instance ${job.data.instanceId} does not exist`);
  if (instance.status !== 'failed' && instance.status !== 'abandoned') {
    throw new PermanentError(`instance is ${instance.status}; only a failed provisioning can be abandoned`);
  }

  const root = await ctx.queues.get(STEP_QUEUE.finalize).getJob(stepJobId(instance.workspace_id, STEPS.finalize));
  if (root) {
    const flow = await ctx.queues.flow.getFlow({ id: root.id!, queueName: root.queueName, prefix: ctx.config.queuePrefix });
    const running = await activeSteps(flow);
    if (running.length) throw new TransientError(`steps still running: ${running.join(', ')}`, 2_000);
    await root.remove({ removeChildren: true });
  }

  const { rows } = await ctx.db.query<{ name: string }>('SELECT name FROM steps WHERE instance_id = $1', [instance.id]);
  const started = new Set(rows.map((r) => r.name));
  const owner = instanceOwner(instance.id);
  const undone: string[] = [];
  // Newest first, in the flow's order: the running service, then the workspace, then the database under both.
  if (started.has(STEPS.createService) && instance.service_id) {
    await ctx.compute.deleteService(instance.service_id);
    undone.push(`service ${instance.service_id}`);
  }
  if (started.has(STEPS.buildWorkspace)) {
    await ctx.secrets.delete(owner, INSTANCE_SECRETS.pendingApiKey); // the files go with the database
    undone.push('workspace');
  }
  if (started.has(STEPS.createBranch) && instance.database_name && instance.database_role) {
    await ctx.database.deleteDatabase({
      branchId: instance.branch_id ?? instance.database_name,
      databaseName: instance.database_name,
      roleName: instance.database_role,
    });
    await ctx.secrets.delete(owner, INSTANCE_SECRETS.databaseUrl);
    undone.push(`database ${instance.database_name}`);
  }
  await job.log(`undone: ${undone.join(', ') || 'nothing was made'}`);

  if (instance.status !== 'abandoned') {
    await updateInstance(ctx.db, instance.id, { status: 'abandoned' });
    await audit(ctx.db, { actor: 'operator', action: 'instance.abandoned', customerId: instance.customer_id, instanceId: instance.id, detail: { undone } });
  }
  return { undone: undone.join(', ') };
}

async function activeSteps(node: { job: Job; children?: unknown[] }): Promise<string[]> {
  const children = (node.children ?? []) as { job: Job; children?: unknown[] }[];
  const nested = (await Promise.all(children.map(activeSteps))).flat();
  return (await node.job.getState()) === 'active' ? [node.job.name, ...nested] : nested;
}
