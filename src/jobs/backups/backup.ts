/**
 * backup: one backup of an active or suspended instance's database (scheduled by the sweep, or on demand), holding
 * the instance's lock. A failure is recorded on the backup run and retried; the last one is an incident (one alert).
 */
import type { BackupData } from '../../queues/catalogue.ts';
import { backupNow } from '../../operations/backup.ts';
import type { JobContext, JobHandle } from '../context.ts';
import { withLockedInstance, type Outcome } from '../lifecycle/lockedInstance.ts';

/** The statuses whose database is backed up. */
export const BACKED_UP_STATUSES: readonly string[] = ['active', 'suspended'];

export async function backup(ctx: JobContext, job: JobHandle<BackupData>, token?: string): Promise<Outcome> {
  return withLockedInstance(ctx, job, token, async (instance): Promise<Outcome> => {
    if (!BACKED_UP_STATUSES.includes(instance.status)) return { skipped: `instance is ${instance.status}` };
    const outcome = await backupNow(ctx, instance, job.data.reason);
    await job.log(`backup ${outcome.backupId}: ${outcome.sizeBytes} bytes, rows ${JSON.stringify(outcome.rowCounts)}; retention deleted ${outcome.deleted.length}`);
    return { backupId: outcome.backupId, sizeBytes: outcome.sizeBytes, sha256: outcome.sha256, deleted: outcome.deleted.length };
  });
}
