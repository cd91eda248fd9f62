/**
 * abandon: an operator gives up on a failed provisioning. The flow's remaining jobs are removed, then what the
 * steps made is undone newest-first (service, workspace, database), and the instance is marked abandoned.
 * Each compensation is idempotent, so the job can be retried until it completes.
 */
import { DelayedError, type Job } from 'bullmq';
import { audit, instanceById, updateInstance, type InstanceWithCustomer } from '../db/instances.ts';
import { PermanentError } from '../errors.ts';
import { instanceResources } from '../provisioning.ts';
import { STEP_QUEUE, STEPS } from '../queues/names.ts';
import { stepJobId, type ProvisionData } from '../queues/provisionFlow.ts';
import { INSTANCE_SECRETS, instanceOwner, type JobContext } from './context.ts';

/** How long abandon waits for steps that are still running before it gives up. */
const WAIT_FOR_RUNNING_MS = 10 * 60_000;

export async function abandon(ctx: JobContext, job: Job<ProvisionData>, token?: string): Promise<{ undone: string }> {
  const instance = await instanceById(ctx.db, job.data.instanceId);
  if (!instance) throw new PermanentError(`instance ${job.data.instanceId} does not exist`);
  if (instance.status !== 'failed' && instance.status !== 'abandoned') {
    throw new PermanentError(`instance is ${instance.status}; only a failed provisioning can be abandoned`);
  }

  await removeFlow(ctx, instance, job, token);

  // Names are derived, not only read from the instance: a step may have created a resource and died before
  // recording it. Every compensation is idempotent, so undoing what was never made is harmless.
  const names = instanceResources(instance.workspace_id);
  const serviceId = instance.service_id ?? names.serviceName;
  const database = {
    branchId: instance.branch_id ?? names.databaseName,
    databaseName: instance.database_name ?? names.databaseName,
    roleName: instance.database_role ?? names.databaseName,
  };
  const owner = instanceOwner(instance.id);
  // Newest first, in the flow's order: the running service, then the workspace, then the database under both.
  await ctx.compute.deleteService(serviceId);
  await ctx.secrets.delete(owner, INSTANCE_SECRETS.pendingApiKey); // the workspace files go with the database
  await ctx.database.deleteDatabase(database);
  await ctx.secrets.delete(owner, INSTANCE_SECRETS.databaseUrl);
  const undone = [`service ${serviceId}`, 'workspace', `database ${database.databaseName}`];
  await job.log(`undone: ${undone.join(', ')}`);

  if (instance.status !== 'abandoned') {
    await updateInstance(ctx.db, instance.id, { status: 'abandoned' });
    await audit(ctx.db, { actor: 'operator', action: 'instance.abandoned', customerId: instance.customer_id, instanceId: instance.id, detail: { undone } });
  }
  return { undone: undone.join(', ') };
}

/**
 * Removes the instance's provisioning flow, so no step of it runs again. While a step is running the calling job
 * comes back in two seconds (holding no slot), for at most ten minutes.
 */
export async function removeFlow(ctx: JobContext, instance: InstanceWithCustomer, job: Job, token?: string): Promise<void> {
  const root = await ctx.queues.get(STEP_QUEUE.finalize).getJob(stepJobId(instance.workspace_id, STEPS.finalize, instance.generation));
  if (!root) return;
  const flow = await ctx.queues.flow.getFlow({ id: root.id!, queueName: root.queueName, prefix: ctx.config.queuePrefix });
  const running = await activeSteps(flow);
  if (running.length) {
    if (Date.now() - job.timestamp > WAIT_FOR_RUNNING_MS) throw new PermanentError(`steps still running: ${running.join(', ')}`);
    await job.log(`waiting for ${running.join(', ')} to finish`);
    await job.moveToDelayed(Date.now() + 2_000, token); // waits without holding a worker slot
    throw new DelayedError();
  }
  if (!(await root.isCompleted())) await root.remove({ removeChildren: true });
}

async function activeSteps(node: { job: Job; children?: unknown[] }): Promise<string[]> {
  const children = (node.children ?? []) as { job: Job; children?: unknown[] }[];
  const nested = (await Promise.all(children.map(activeSteps))).flat();
  return (await node.job.getState()) === 'active' ? [node.job.name, ...nested] : nested;
}
