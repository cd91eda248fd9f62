/**
 * What the lifecycle jobs share: each works on one instance, and lifecycle work for one customer runs one job at a
 * time, whichever worker holds it (the instance's lock, see InstanceLocks). A job that finds the lock taken comes
 * back a moment later without holding a worker slot.
 */
import { DelayedError } from 'bullmq';
import type { InstanceWithCustomer } from '../../db/instances.ts';
import { PermanentError } from '../../errors.ts';
import { addLogContext } from '../../../core/logger.ts';
import type { JobContext, JobHandle } from '../context.ts';

/** What a lifecycle job returns (shown in Bull Board: ids, states and counts, never secrets). */
export type Outcome = Record<string, string | number>;

const RETRY_MS = 1_000;

export async function loadInstance(ctx: Pick<JobContext, 'instances'>, id: string): Promise<InstanceWithCustomer> {
  const instance = await ctx.instances.byId(id);
  if (!instance) throw new PermanentError(`instance ${id} does not exist`);
  addLogContext({ workspace: instance.workspace_id, customer: instance.customer_id });
  return instance;
}

/** Runs `work` on the job's instance (read once the lock is held), holding the instance's lock. */
export async function withLockedInstance(
  ctx: Pick<JobContext, 'locks' | 'instances'>,
  job: Pick<JobHandle<{ instanceId: string }>, 'data' | 'log' | 'moveToDelayed'>,
  token: string | undefined,
  work: (instance: InstanceWithCustomer) => Promise<Outcome>,
): Promise<Outcome> {
  const result = await ctx.locks.withLock(job.data.instanceId, async () => work(await loadInstance(ctx, job.data.instanceId)));
  if (result.ran) return result.value;
  await job.log('waiting for the instance: another job (a provisioning step or lifecycle job) works on it');
  await job.moveToDelayed(Date.now() + RETRY_MS, token);
  throw new DelayedError();
}
