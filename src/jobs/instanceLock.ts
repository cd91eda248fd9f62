/**
 * Lifecycle work for one customer runs one job at a time, whichever worker holds it: a session advisory lock on the
 * instance, held for the job. A job that finds it taken comes back a moment later without holding a worker slot.
 */
import { DelayedError, type Job } from 'bullmq';
import type { JobContext } from './context.ts';

const RETRY_MS = 1_000;

export async function withInstanceLock<T>(
  ctx: JobContext,
  job: Job,
  token: string | undefined,
  instanceId: string,
  work: () => Promise<T>,
): Promise<T> {
  const client = await ctx.db.connect();
  const key = `lifecycle/${instanceId}`;
  try {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [key]);
    if (!rows[0]!.locked) {
      await job.moveToDelayed(Date.now() + RETRY_MS, token);
      throw new DelayedError();
    }
    try {
      return await work();
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]);
    }
  } finally {
    client.release();
  }
}
