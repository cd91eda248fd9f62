/** The archives gateway: where a cancelled customer's export is stored, what it holds, and whether it was verified. */
import type { Db } from './pool.ts';

export interface ArchiveRecord {
  location: string;
  sizeBytes: number;
  sha256: string;
  /** Rows exported, by table. */
  rowCounts: Record<string, number>;
}

export interface ArchiveRecords {
  /** The instance's archive that has not been deleted. */
  current(instanceId: string): Promise<ArchiveRecord | undefined>;
  /** Records a new export (replacing a deleted one): not verified, not deleted. */
  save(instanceId: string, record: ArchiveRecord): Promise<void>;
  markVerified(instanceId: string): Promise<void>;
  markDeleted(instanceId: string): Promise<void>;
}

export class PgArchiveRecords implements ArchiveRecords {
  constructor(private readonly db: Db) {}

  async current(instanceId: string): Promise<ArchiveRecord | undefined> {
    const { rows } = await this.db.query<{ location: string; size_bytes: string; sha256: string; row_counts: Record<string, number> }>(
      'SELECT location, size_bytes, sha256, row_counts FROM archives WHERE instance_id = $1 AND deleted_at IS NULL',
      [instanceId],
    );
    const row = rows[0];
    return row && { location: row.location, sizeBytes: Number(row.size_bytes), sha256: row.sha256, rowCounts: row.row_counts };
  }

  async save(instanceId: string, record: ArchiveRecord): Promise<void> {
    await this.db.query(
      `INSERT INTO archives (instance_id, location, size_bytes, sha256, row_counts) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (instance_id) DO UPDATE SET location = $2, size_bytes = $3, sha256 = $4, row_counts = $5, created_at = now(),
         verified_at = NULL, deleted_at = NULL`,
      [instanceId, record.location, record.sizeBytes, record.sha256, JSON.stringify(record.rowCounts)],
    );
  }

  async markVerified(instanceId: string): Promise<void> {
    await this.db.query('UPDATE archives SET verified_at = now() WHERE instance_id = $1', [instanceId]);
  }

  async markDeleted(instanceId: string): Promise<void> {
    await this.db.query('UPDATE archives SET deleted_at = now() WHERE instance_id = $1', [instanceId]);
  }
}
