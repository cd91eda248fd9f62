/**
 * Lifecycle work for one customer runs one job at a time (see InstanceLocks). A job that finds the instance's lock
 * taken comes back a moment later without holding a worker slot.
 */
import { DelayedError } from 'bullmq';
import type { JobContext, JobHandle } from './context.ts';

const RETRY_MS = 1_000;

export async function withInstanceLock<T>(
  ctx: Pick<JobContext, 'locks'>,
  job: JobHandle,
  token: string | undefined,
  instanceId: string,
  work: () => Promise<T>,
): Promise<T> {
  const result = await ctx.locks.withLock(instanceId, work);
  if (result.ran) return result.value;
  await job.moveToDelayed(Date.now() + RETRY_MS, token);
  throw new DelayedError();
}
