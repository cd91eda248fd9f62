/** What /status shows of the webhook deliveries: counts by state and the newest one. */
import type pg from 'pg';

export interface WebhookStats {
  /** Every delivery accepted, whatever its state. */
  received: number;
  processed: number;
  failed: number;
  /** Not processed yet. */
  pending: number;
  /** The newest delivery; `at` is when it was processed (or failed), else when it arrived. */
  last: null | { source: string; deliveryId: string; status: string; result: string | null; error: string | null; at: string };
}

export async function webhookStats(db: Pick<pg.Pool, 'query'>): Promise<WebhookStats> {
  const counts = await db.query<{ received: number; processed: number; failed: number; pending: number }>(
    `SELECT count(*)::int AS received,
            count(*) FILTER (WHERE status = 'processed')::int AS processed,
            count(*) FILTER (WHERE status = 'failed')::int AS failed,
            count(*) FILTER (WHERE status = 'received')::int AS pending
     FROM webhook_deliveries`,
  );
  const last = await db.query<{ source: string; delivery_id: string; status: string; result: string | null; error: string | null; at: Date }>(
    `SELECT source, delivery_id, status, result, error, coalesce(processed_at, received_at) AS at
     FROM webhook_deliveries ORDER BY id DESC LIMIT 1`,
  );
  const row = last.rows[0];
  return {
    ...counts.rows[0]!,
    last: row
      ? {
          source: row.source,
          deliveryId: row.delivery_id,
          status: row.status,
          result: row.result,
          error: row.error,
          at: row.at.toISOString(),
        }
      : null,
  };
}
