/**
 * The backups gateway: every backup run of a customer's database (its reason, state, where it is stored, size,
 * checksum, rows, duration) and every restore run, and the paged list of instances a backup sweep visits.
 */
import type { Db } from './pool.ts';

export const BACKUP_REASONS = ['scheduled', 'on-demand', 'plan-change', 'restore', 'rollout'] as const;
export type BackupReason = (typeof BACKUP_REASONS)[number];
export type BackupState = 'running' | 'verified' | 'failed' | 'deleted';
export type RestoreState = 'running' | 'succeeded' | 'failed';

export interface BackupRun {
  id: string;
  instanceId: string;
  reason: BackupReason;
  state: BackupState;
  location: string | null;
  sizeBytes: number | null;
  sha256: string | null;
  rowCounts: Record<string, number> | null;
  error: string | null;
  startedAt: Date;
  finishedAt: Date | null;
  durationMs: number | null;
  deletedAt: Date | null;
}

export interface RestoreRun {
  id: string;
  instanceId: string;
  backupId: string;
  state: RestoreState;
  /** The backup of the live data taken before restoring. */
  preBackupId: string | null;
  /** The fresh database restored into. */
  databaseName: string | null;
  error: string | null;
  requestedAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  durationMs: number | null;
}

export interface BackupRecords {
  /** A new run, state running; answers its id. */
  start(instanceId: string, reason: BackupReason): Promise<string>;
  /** The export is stored (not verified yet). */
  stored(backupId: string, stored: { location: string; sizeBytes: number; sha256: string; rowCounts: Record<string, number> }): Promise<void>;
  verified(backupId: string): Promise<void>;
  failed(backupId: string, error: string): Promise<void>;
  /** Retention deleted it (marked before its object is deleted: a deleted row never counts as kept). */
  markDeleted(backupId: string): Promise<void>;
  byId(backupId: string): Promise<BackupRun | undefined>;
  /** The instance's backups, newest first. */
  list(instanceId: string, limit?: number): Promise<BackupRun[]>;
  /** The instance's verified backups, newest first. */
  verifiedOf(instanceId: string): Promise<BackupRun[]>;
  /** A restore run asked for; undefined when the instance has one running already. */
  requestRestore(instanceId: string, backupId: string): Promise<RestoreRun | undefined>;
  restoreById(restoreId: string): Promise<RestoreRun | undefined>;
  restoreStarted(restoreId: string, set: { databaseName?: string; preBackupId?: string }): Promise<void>;
  restoreFinished(restoreId: string, outcome: { state: 'succeeded' } | { state: 'failed'; error: string }): Promise<void>;
  /** The instance's restore runs, newest first. */
  restores(instanceId: string, limit?: number): Promise<RestoreRun[]>;
  /** One page of the instances a backup sweep visits (active and suspended), in id order after `afterId`. */
  instancesToBackUp(afterId: string | null, limit: number): Promise<{ id: string; workspace_id: string }[]>;
}

type BackupRow = {
  id: string;
  instance_id: string;
  reason: BackupReason;
  state: BackupState;
  location: string | null;
  size_bytes: string | null;
  sha256: string | null;
  row_counts: Record<string, number> | null;
  error: string | null;
  started_at: Date;
  finished_at: Date | null;
  duration_ms: number | null;
  deleted_at: Date | null;
};

type RestoreRow = {
  id: string;
  instance_id: string;
  backup_id: string;
  state: RestoreState;
  pre_backup_id: string | null;
  database_name: string | null;
  error: string | null;
  requested_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  duration_ms: number | null;
};

function backupOf(row: BackupRow): BackupRun {
  return {
    id: row.id,
    instanceId: row.instance_id,
    reason: row.reason,
    state: row.state,
    location: row.location,
    sizeBytes: row.size_bytes === null ? null : Number(row.size_bytes),
    sha256: row.sha256,
    rowCounts: row.row_counts,
    error: row.error,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    durationMs: row.duration_ms,
    deletedAt: row.deleted_at,
  };
}

function restoreOf(row: RestoreRow): RestoreRun {
  return {
    id: row.id,
    instanceId: row.instance_id,
    backupId: row.backup_id,
    state: row.state,
    preBackupId: row.pre_backup_id,
    databaseName: row.database_name,
    error: row.error,
    requestedAt: row.requested_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    durationMs: row.duration_ms,
  };
}

const FINISH = `finished_at = clock_timestamp(), duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::integer`;

export class PgBackupRecords implements BackupRecords {
  constructor(private readonly db: Db) {}

  async start(instanceId: string, reason: BackupReason): Promise<string> {
    const { rows } = await this.db.query<{ id: string }>(
      'INSERT INTO backups (instance_id, reason, started_at) VALUES ($1, $2, clock_timestamp()) RETURNING id',
      [instanceId, reason],
    );
    return rows[0]!.id;
  }

  async stored(backupId: string, stored: { location: string; sizeBytes: number; sha256: string; rowCounts: Record<string, number> }): Promise<void> {
    await this.db.query('UPDATE backups SET location = $2, size_bytes = $3, sha256 = $4, row_counts = $5 WHERE id = $1', [
      backupId,
      stored.location,
      stored.sizeBytes,
      stored.sha256,
      JSON.stringify(stored.rowCounts),
    ]);
  }

  async verified(backupId: string): Promise<void> {
    await this.db.query(`UPDATE backups SET state = 'verified', ${FINISH} WHERE id = $1 AND state = 'running'`, [backupId]);
  }

  async failed(backupId: string, error: string): Promise<void> {
    await this.db.query(`UPDATE backups SET state = 'failed', error = $2, ${FINISH} WHERE id = $1 AND state = 'running'`, [backupId, error]);
  }

  async markDeleted(backupId: string): Promise<void> {
    await this.db.query(`UPDATE backups SET state = 'deleted', deleted_at = now() WHERE id = $1 AND state <> 'deleted'`, [backupId]);
  }

  async byId(backupId: string): Promise<BackupRun | undefined> {
    const { rows } = await this.db.query<BackupRow>('SELECT * FROM backups WHERE id = $1', [backupId]);
    return rows[0] && backupOf(rows[0]);
  }

  async list(instanceId: string, limit = 200): Promise<BackupRun[]> {
    const { rows } = await this.db.query<BackupRow>('SELECT * FROM backups WHERE instance_id = $1 ORDER BY started_at DESC, id LIMIT $2', [
      instanceId,
      limit,
    ]);
    return rows.map(backupOf);
  }

  async verifiedOf(instanceId: string): Promise<BackupRun[]> {
    const { rows } = await this.db.query<BackupRow>(
      `SELECT * FROM backups WHERE instance_id = $1 AND state = 'verified' ORDER BY started_at DESC, id`,
      [instanceId],
    );
    return rows.map(backupOf);
  }

  async requestRestore(instanceId: string, backupId: string): Promise<RestoreRun | undefined> {
    const { rows } = await this.db.query<RestoreRow>(
      `INSERT INTO restores (instance_id, backup_id) VALUES ($1, $2)
       ON CONFLICT (instance_id) WHERE state = 'running' DO NOTHING RETURNING *`,
      [instanceId, backupId],
    );
    return rows[0] && restoreOf(rows[0]);
  }

  async restoreById(restoreId: string): Promise<RestoreRun | undefined> {
    const { rows } = await this.db.query<RestoreRow>('SELECT * FROM restores WHERE id = $1', [restoreId]);
    return rows[0] && restoreOf(rows[0]);
  }

  async restoreStarted(restoreId: string, set: { databaseName?: string; preBackupId?: string }): Promise<void> {
    await this.db.query(
      `UPDATE restores SET started_at = coalesce(started_at, clock_timestamp()), database_name = coalesce($2, database_name),
         pre_backup_id = coalesce($3, pre_backup_id) WHERE id = $1`,
      [restoreId, set.databaseName ?? null, set.preBackupId ?? null],
    );
  }

  async restoreFinished(restoreId: string, outcome: { state: 'succeeded' } | { state: 'failed'; error: string }): Promise<void> {
    await this.db.query(
      `UPDATE restores SET state = $2, error = $3, finished_at = clock_timestamp(),
         duration_ms = (extract(epoch FROM clock_timestamp() - coalesce(started_at, requested_at)) * 1000)::integer
       WHERE id = $1 AND state = 'running'`,
      [restoreId, outcome.state, outcome.state === 'failed' ? outcome.error : null],
    );
  }

  async restores(instanceId: string, limit = 200): Promise<RestoreRun[]> {
    const { rows } = await this.db.query<RestoreRow>('SELECT * FROM restores WHERE instance_id = $1 ORDER BY requested_at DESC, id LIMIT $2', [
      instanceId,
      limit,
    ]);
    return rows.map(restoreOf);
  }

  async instancesToBackUp(afterId: string | null, limit: number): Promise<{ id: string; workspace_id: string }[]> {
    const { rows } = await this.db.query<{ id: string; workspace_id: string }>(
      `SELECT id, workspace_id FROM instances WHERE status IN ('active', 'suspended') AND ($1::uuid IS NULL OR id > $1::uuid)
       ORDER BY id LIMIT $2`,
      [afterId, limit],
    );
    return rows;
  }
}
