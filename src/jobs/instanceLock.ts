/**
 * Lifecycle work for one customer runs one job at a time, whichever worker holds it: a session advisory lock on the
 * instance, held for the job. A job that finds it taken comes back a moment later without holding a worker slot.
 */
import { DelayedError, type Job } from 'bullmq';
import pg from 'pg';
import type { JobContext } from './context.ts';

const RETRY_MS = 1_000;

export async function withInstanceLock<T>(
  ctx: JobContext,
  job: Job,
  token: string | undefined,
  instanceId: string,
  work: () => Promise<T>,
): Promise<T> {
  // A connection of its own, outside the pool the work uses (held locks never starve it), and closed at the end:
  // closing releases the lock whatever else went wrong.
  const client = new pg.Client({ connectionString: ctx.config.databaseUrl });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [`lifecycle/${instanceId}`]);
    if (!rows[0]!.locked) {
      await job.moveToDelayed(Date.now() + RETRY_MS, token);
      throw new DelayedError();
    }
    return await work();
  } finally {
    await client.end().catch(() => undefined);
  }
}
