/** Stopping a provisioning under way (cancel, abandon): its flow goes, so no step of it runs again. */
import { DelayedError } from 'bullmq';
import { PermanentError } from '../errors.ts';
import type { InstanceKey } from '../queues/jobQueue.ts';
import type { JobContext, JobHandle } from '../jobs/context.ts';

/** How long a job waits for the flow's running steps before it gives up. */
const WAIT_FOR_RUNNING_MS = 10 * 60_000;

/**
 * Removes the instance's provisioning flow. While a step of it is running, the calling job comes back in two
 * seconds (holding no worker slot), for at most ten minutes.
 */
export async function stopProvisionFlow(
  ctx: Pick<JobContext, 'jobs'>,
  instance: InstanceKey & { generation: number },
  job: Pick<JobHandle, 'timestamp' | 'log' | 'moveToDelayed'>,
  token: string | undefined,
): Promise<void> {
  const { running } = await ctx.jobs.removeProvisionFlow(instance);
  if (!running.length) return;
  if (Date.now() - job.timestamp > WAIT_FOR_RUNNING_MS) throw new PermanentError(`steps still running: ${running.join(', ')}`);
  await job.log(`waiting for ${running.join(', ')} to finish`);
  await job.moveToDelayed(Date.now() + 2_000, token);
  throw new DelayedError();
}
