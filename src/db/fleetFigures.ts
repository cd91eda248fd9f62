/**
 * The fleet-wide figures GET /metrics reads at scrape time, one query each, aggregated in Postgres (the scrape costs
 * the same few queries whatever the number of customers): instances by status and health, how long steps and whole
 * provisionings took (bucketed for histograms), and the failed instances by step and reason.
 */
import type { Db } from './pool.ts';

/** Durations counted in one histogram bucket: `bucket` is how many bounds lie below them (bounds.length: above all). */
export interface BucketCount {
  label: string;
  bucket: number;
  count: number;
  /** Their durations added up, in seconds. */
  sum: number;
}

export interface FleetFigures {
  instancesByStatus(): Promise<Map<string, number>>;
  /** Active instances by the health monitor's last state; 'unknown' when it has not looked at one yet. */
  activeByHealth(): Promise<Map<string, number>>;
  /** Completed provisioning steps, from their first start to their end (waits included), by step. */
  stepDurations(bounds: readonly number[]): Promise<BucketCount[]>;
  /** Instances that became active, from the provisioning's start to active (label ''). */
  timeToReady(bounds: readonly number[]): Promise<BucketCount[]>;
  /** Failed instances by the step that failed and its reason. */
  failures(): Promise<{ step: string; reason: string | null; count: number }[]>;
}

// A duration d falls in the first bucket whose bound is >= d: width_bucket counts the bounds <= d, less the one
// equal to it, if any. `durations` is a constant query yielding (label, d) in seconds.
const bucketed = (durations: string) => `
  SELECT label, width_bucket(d, $1::float8[]) - (d = ANY($1::float8[]))::int AS bucket, count(*)::int AS count, sum(d) AS sum
  FROM (${durations}) AS durations
  GROUP BY label, bucket`;

const STEP_DURATIONS = bucketed(`
  SELECT name AS label, extract(epoch FROM finished_at - started_at)::float8 AS d
  FROM steps WHERE state = 'completed' AND started_at IS NOT NULL AND finished_at IS NOT NULL`);

const TIME_TO_READY = bucketed(`
  SELECT '' AS label, extract(epoch FROM active_at - provision_started_at)::float8 AS d
  FROM instances WHERE active_at IS NOT NULL`);

export class PgFleetFigures implements FleetFigures {
  constructor(private readonly db: Db) {}

  async instancesByStatus(): Promise<Map<string, number>> {
    const { rows } = await this.db.query<{ status: string; count: number }>('SELECT status, count(*)::int AS count FROM instances GROUP BY status');
    return new Map(rows.map((r) => [r.status, r.count]));
  }

  async activeByHealth(): Promise<Map<string, number>> {
    const { rows } = await this.db.query<{ state: string; count: number }>(
      `SELECT coalesce(h.state, 'unknown') AS state, count(*)::int AS count
       FROM instances i LEFT JOIN instance_health h ON h.instance_id = i.id
       WHERE i.status = 'active' GROUP BY 1`,
    );
    return new Map(rows.map((r) => [r.state, r.count]));
  }

  stepDurations(bounds: readonly number[]): Promise<BucketCount[]> {
    return this.buckets(STEP_DURATIONS, bounds);
  }

  timeToReady(bounds: readonly number[]): Promise<BucketCount[]> {
    return this.buckets(TIME_TO_READY, bounds);
  }

  async failures(): Promise<{ step: string; reason: string | null; count: number }[]> {
    const { rows } = await this.db.query<{ step: string; reason: string | null; count: number }>(
      `SELECT coalesce(failed_step, 'unknown') AS step, failure_reason AS reason, count(*)::int AS count
       FROM instances WHERE status = 'failed' GROUP BY 1, 2`,
    );
    return rows;
  }

  private async buckets(sql: string, bounds: readonly number[]): Promise<BucketCount[]> {
    const { rows } = await this.db.query<BucketCount>(sql, [bounds]);
    return rows.map((r) => ({ ...r, sum: Number(r.sum) }));
  }
}
