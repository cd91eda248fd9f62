/**
 * Taking a backup of a customer's database, by the backup job (scheduled or on demand), before a plan change, a
 * restore and a rollout: export in the archive format into the archive store, read it back (same bytes, same rows),
 * mark it verified, and only then apply retention (the plan's number of verified backups kept, the newest). A backup
 * that fails is recorded failed, its partial object deleted, and deletes nothing else.
 */
import { ARCHIVED_TABLES, readArchive } from '../../core/archiveFormat.ts';
import { maskSecrets } from '../../core/logger.ts';
import { planByName, PLANS } from '../../core/plans.ts';
import type { BackupReason } from '../db/backups.ts';
import { errorMessage } from '../errors.ts';
import type { JobContext } from '../jobs/context.ts';
import { backupsBeyondKept } from './backupPolicy.ts';

type BackupContext = Pick<JobContext, 'backups' | 'customerDbs' | 'archives'>;

export interface BackupOutcome {
  backupId: string;
  location: string;
  sizeBytes: number;
  sha256: string;
  rowCounts: Record<string, number>;
  /** Backups retention deleted after this one was verified. */
  deleted: string[];
}

/** A stored archive that does not read back as it was written (altered, truncated, other rows). */
export class ArchiveCheckError extends Error {}

/** The archive store object of a backup. */
export function backupLocation(workspaceId: string, backupId: string): string {
  return `backups/${workspaceId}/${backupId}.jsonl.gz`;
}

/** How many verified backups an instance on this plan keeps (an unknown plan keeps the most any plan does). */
export function backupsKeptFor(plan: string | null): number {
  return planByName(plan ?? '')?.backupsKept ?? Math.max(...Object.values(PLANS).map((p) => p.backupsKept));
}

/**
 * Reads a stored archive back whole: the stored bytes' size and SHA-256 as recorded, and the row counts of every
 * table as recorded; throws ArchiveCheckError saying what differs.
 */
export async function verifyStoredArchive(
  ctx: Pick<JobContext, 'archives'>,
  record: { location: string; sizeBytes: number; sha256: string; rowCounts: Record<string, number> },
): Promise<void> {
  const check = await ctx.archives.checksum(record.location);
  if (check.sha256 !== record.sha256 || check.sizeBytes !== record.sizeBytes) {
    throw new ArchiveCheckError(
      `archive ${record.location} does not match what was written (checksum ${check.sha256.slice(0, 12)}… of ${check.sizeBytes} bytes, recorded ${record.sha256.slice(0, 12)}… of ${record.sizeBytes})`,
    );
  }
  let counts: Record<string, number>;
  try {
    counts = await readArchive(ctx.archives.read(record.location));
  } catch (err) {
    throw new ArchiveCheckError(`archive ${record.location} does not read back: ${errorMessage(err)}`);
  }
  const differing = ARCHIVED_TABLES.filter((table) => (counts[table] ?? 0) !== (record.rowCounts[table] ?? 0));
  if (differing.length) throw new ArchiveCheckError(`archive ${record.location} rows differ from the export in ${differing.join(', ')}`);
}

/**
 * Backs up the instance's database now (the caller holds the instance's lock): answers the verified backup and what
 * retention deleted; throws (the failure recorded) when the backup could not be taken or verified.
 */
export async function backupNow(
  ctx: BackupContext,
  instance: { id: string; workspace_id: string; plan: string | null },
  reason: BackupReason,
): Promise<BackupOutcome> {
  const backupId = await ctx.backups.start(instance.id, reason);
  const name = backupLocation(instance.workspace_id, backupId);
  let record: { location: string; sizeBytes: number; sha256: string; rowCounts: Record<string, number> };
  try {
    record = await ctx.customerDbs.exportArchive(instance.id, instance.workspace_id, (stream) => ctx.archives.write(name, stream));
    await ctx.backups.stored(backupId, record);
    await verifyStoredArchive(ctx, record);
    await ctx.backups.verified(backupId);
  } catch (err) {
    await ctx.backups.failed(backupId, maskSecrets(errorMessage(err)).slice(0, 2000));
    // What did not verify is no backup: it is not kept (nothing else is touched).
    await ctx.archives.delete(name).catch(() => undefined);
    throw err;
  }
  const deleted = await applyRetention(ctx, instance);
  return { backupId, ...record, deleted };
}

/**
 * Deletes the instance's verified backups beyond its plan's number, oldest first, never one a running restore of it
 * uses. Each is marked deleted before its object goes: a crash in between leaves an object too many, never a backup
 * counted as kept that is gone.
 */
export async function applyRetention(ctx: BackupContext, instance: { id: string; plan: string | null }): Promise<string[]> {
  const [verified, restores] = await Promise.all([ctx.backups.verifiedOf(instance.id), ctx.backups.restores(instance.id, 20)]);
  const inUse = new Set(restores.filter((r) => r.state === 'running').map((r) => r.backupId));
  const deleted: string[] = [];
  for (const backup of backupsBeyondKept(verified, backupsKeptFor(instance.plan))) {
    if (inUse.has(backup.id)) continue;
    await ctx.backups.markDeleted(backup.id);
    if (backup.location) await ctx.archives.delete(backup.location);
    deleted.push(backup.id);
  }
  return deleted;
}

/**
 * Deletes every backup of an instance (its purge): objects and all. Every row's object is deleted whatever the row
 * says (deleting what is gone is no error): a crash between marking a backup deleted and deleting its object, or
 * during a backup that never recorded where it went, leaves nothing of the customer in the store.
 */
export async function deleteAllBackups(ctx: BackupContext, instance: { id: string; workspace_id: string }): Promise<number> {
  let deleted = 0;
  for (const backup of await ctx.backups.list(instance.id, 100_000)) {
    if (backup.state !== 'deleted') {
      await ctx.backups.markDeleted(backup.id);
      deleted++;
    }
    await ctx.archives.delete(backup.location ?? backupLocation(instance.workspace_id, backup.id));
  }
  return deleted;
}
