/**
 * backup-sweep (from the job scheduler, at BACKUP_SCHEDULE): one backup job per active and suspended instance, each
 * delayed by its own fixed offset within BACKUP_SPREAD so thousands do not start at once. Job ids are per instance and
 * sweep slot, so a repeated sweep adds nothing; instances are read and added a page at a time.
 */
import type { BackupSweepData } from '../../queues/catalogue.ts';
import { spreadOffset, sweepSlot } from '../../operations/backupPolicy.ts';
import type { JobContext, JobHandle } from '../context.ts';
import type { Outcome } from '../lifecycle/lockedInstance.ts';

const PAGE = 1_000;

export async function backupSweep(ctx: JobContext, job: JobHandle<BackupSweepData>): Promise<Outcome> {
  const slot = sweepSlot(job);
  const spreadMs = ctx.config.backups.spreadMs;
  let after: string | null = null;
  let instances = 0;
  for (;;) {
    const page = await ctx.backups.instancesToBackUp(after, PAGE);
    if (!page.length) break;
    const now = Date.now();
    await ctx.jobs.addScheduledBackups(
      slot,
      page.map((instance) => ({ instance, delayMs: Math.max(0, slot + spreadOffset(instance.id, spreadMs) - now) })),
    );
    instances += page.length;
    after = page.at(-1)!.id;
    if (page.length < PAGE) break;
  }
  return { slot: new Date(slot).toISOString(), instances };
}
