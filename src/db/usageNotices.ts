/** The usage notices gateway: a runtime's report that a month's messages reached 80 % or 100 % of the plan. */
import type { Db } from './pool.ts';

export interface UsageNotice {
  month: string;
  threshold: 80 | 100;
  used: number;
  limit: number;
}

export interface UsageNotices {
  /** Records a notice once per instance, month and threshold; false for a repeat. */
  record(instanceId: string, notice: UsageNotice): Promise<boolean>;
  find(instanceId: string, month: string, threshold: number): Promise<UsageNotice | undefined>;
}

export class PgUsageNotices implements UsageNotices {
  constructor(private readonly db: Db) {}

  async record(instanceId: string, notice: UsageNotice): Promise<boolean> {
    const inserted = await this.db.query(
      `INSERT INTO usage_notices (instance_id, month, threshold, used, message_limit) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT DO NOTHING`,
      [instanceId, notice.month, notice.threshold, notice.used, notice.limit],
    );
    return inserted.rowCount !== 0;
  }

  async find(instanceId: string, month: string, threshold: number): Promise<UsageNotice | undefined> {
    const { rows } = await this.db.query<{ used: number; message_limit: number; threshold: 80 | 100 }>(
      'SELECT used, message_limit, threshold FROM usage_notices WHERE instance_id = $1 AND month = $2 AND threshold = $3',
      [instanceId, month, threshold],
    );
    const row = rows[0];
    return row && { month, threshold: row.threshold, used: row.used, limit: row.message_limit };
  }
}
