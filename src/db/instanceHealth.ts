/** What the health monitor last saw of each active instance (instance_health), and the pages it walks the fleet in. */
import type { HealthRecord, HealthState } from '../jobs/fleet/health.ts';
import type { Db } from './pool.ts';

/** An active instance as the monitor probes it, with its health so far (null before its first probe). */
export interface MonitoredInstance {
  id: string;
  workspaceId: string;
  customerId: string;
  serviceId: string | null;
  accessUrl: string | null;
  computeProvider: string;
  health: HealthRecord | null;
}

/** Health as the admin API shows it. */
export interface HealthView {
  state: HealthState;
  checkedAt: string;
  since: string;
  lastError: string | null;
  restarts: number;
  crashLoop: boolean;
}

export interface InstanceHealth {
  /** Active instances after `afterId` (by id), `limit` at most. */
  activePage(afterId: string | null, limit: number): Promise<MonitoredInstance[]>;
  /** Writes the records of one page of probes in one statement. */
  save(records: { instanceId: string; health: HealthRecord }[]): Promise<void>;
  /** Forgets the health of instances that are no longer active (they are not probed). */
  forgetInactive(): Promise<number>;
  view(instanceId: string): Promise<HealthView | null>;
  /**
   * An operator fixed what made the instance crash-loop: its restarts are forgotten, so the monitor restarts it again
   * at its next failures. False when it is not in a crash loop.
   */
  clearCrashLoop(instanceId: string): Promise<boolean>;
  /**
   * Instances newest first with their health, filtered, a page after `after`; `next` is where the following page
   * starts (null after the last), to the microsecond.
   */
  list(filter: InstanceListFilter): Promise<{ instances: ListedInstance[]; next: InstancePosition | null }>;
  /**
   * Runs `fn` unless another monitor run holds the lock (then answers null): two workers never probe the fleet at
   * once, whatever the schedule.
   */
  exclusively<T>(fn: () => Promise<T>): Promise<T | null>;
}

export interface InstanceListFilter {
  status?: string;
  /** 'unknown': never probed (or not active). */
  health?: HealthState | 'unknown';
  after?: InstancePosition;
  limit: number;
}

/** Where an instance is in the list: its creation time as Postgres holds it (microseconds) and its id. */
export interface InstancePosition {
  createdAt: string;
  id: string;
}

export interface ListedInstance {
  instanceId: string;
  customerId: string;
  email: string | null;
  workspaceId: string;
  status: string;
  plan: string | null;
  accessUrl: string | null;
  createdAt: Date;
  health: HealthView | null;
}

interface HealthRow {
  state: HealthState;
  checked_at: Date;
  since: Date;
  last_error: string | null;
  failures: number;
  restarts: Date[];
  restart_count: number;
  incident_id: string | null;
  crash_loop: boolean;
}

/** An arbitrary constant: the advisory lock of a monitor run. */
const MONITOR_LOCK = 7_340_921_551;

export function healthView(row: HealthRow): HealthView {
  return {
    state: row.state,
    checkedAt: row.checked_at.toISOString(),
    since: row.since.toISOString(),
    lastError: row.last_error,
    restarts: row.restart_count,
    crashLoop: row.crash_loop,
  };
}

export class PgInstanceHealth implements InstanceHealth {
  constructor(private readonly db: Db) {}

  async activePage(afterId: string | null, limit: number): Promise<MonitoredInstance[]> {
    const { rows } = await this.db.query<HealthRow & { id: string; workspace_id: string; customer_id: string; service_id: string | null; access_url: string | null; compute_provider: string; probed: boolean }>(
      `SELECT i.id, i.workspace_id, i.customer_id, i.service_id, i.access_url, i.compute_provider, h.instance_id IS NOT NULL AS probed,
              h.state, h.checked_at, h.since, h.last_error, h.failures, h.restarts, h.restart_count, h.incident_id, h.crash_loop
       FROM instances i LEFT JOIN instance_health h ON h.instance_id = i.id
       WHERE i.status = 'active' AND ($1::uuid IS NULL OR i.id > $1) ORDER BY i.id LIMIT $2`,
      [afterId, limit],
    );
    return rows.map((row) => ({
      id: row.id,
      workspaceId: row.workspace_id,
      customerId: row.customer_id,
      serviceId: row.service_id,
      accessUrl: row.access_url,
      computeProvider: row.compute_provider,
      health: row.probed
        ? {
            state: row.state,
            checkedAt: row.checked_at,
            since: row.since,
            lastError: row.last_error,
            failures: row.failures,
            restarts: row.restarts,
            restartCount: row.restart_count,
            incidentId: row.incident_id === null ? null : String(row.incident_id),
            crashLoop: row.crash_loop,
          }
        : null,
    }));
  }

  async save(records: { instanceId: string; health: HealthRecord }[]): Promise<void> {
    if (!records.length) return;
    const column = <T>(pick: (h: HealthRecord) => T) => records.map((r) => pick(r.health));
    await this.db.query(
      `INSERT INTO instance_health (instance_id, state, checked_at, since, last_error, failures, restarts, restart_count, incident_id, crash_loop)
       SELECT id, state, checked_at, since, last_error, failures, restarts::timestamptz[], restart_count, incident_id, crash_loop
       FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::int[], $7::text[], $8::int[], $9::bigint[], $10::bool[])
         AS u (id, state, checked_at, since, last_error, failures, restarts, restart_count, incident_id, crash_loop)
       ON CONFLICT (instance_id) DO UPDATE SET state = EXCLUDED.state, checked_at = EXCLUDED.checked_at, since = EXCLUDED.since,
         last_error = EXCLUDED.last_error, failures = EXCLUDED.failures, restarts = EXCLUDED.restarts,
         restart_count = EXCLUDED.restart_count, incident_id = EXCLUDED.incident_id, crash_loop = EXCLUDED.crash_loop`,
      [
        records.map((r) => r.instanceId),
        column((h) => h.state),
        column((h) => h.checkedAt),
        column((h) => h.since),
        column((h) => h.lastError),
        column((h) => h.failures),
        // Each row's restarts as an array literal: unnest cannot take an array of arrays of different lengths.
        column((h) => `{${h.restarts.map((at) => `"${at.toISOString()}"`).join(',')}}`),
        column((h) => h.restartCount),
        column((h) => h.incidentId),
        column((h) => h.crashLoop),
      ],
    );
  }

  async forgetInactive(): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM instance_health h USING instances i WHERE i.id = h.instance_id AND i.status <> 'active'`,
    );
    return rowCount ?? 0;
  }

  async view(instanceId: string): Promise<HealthView | null> {
    const { rows } = await this.db.query<HealthRow>('SELECT * FROM instance_health WHERE instance_id = $1', [instanceId]);
    return rows[0] ? healthView(rows[0]) : null;
  }

  async clearCrashLoop(instanceId: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE instance_health SET crash_loop = false, failures = 0, restarts = '{}' WHERE instance_id = $1 AND crash_loop`,
      [instanceId],
    );
    return rowCount === 1;
  }

  async list(filter: InstanceListFilter): Promise<{ instances: ListedInstance[]; next: InstancePosition | null }> {
    const { rows } = await this.db.query<HealthRow & { id: string; customer_id: string; email: string | null; workspace_id: string; status: string; plan: string | null; access_url: string | null; created_at: Date; position: string; probed: boolean }>(
      `SELECT i.id, i.customer_id, c.email, i.workspace_id, i.status, i.plan, i.access_url, i.created_at,
              to_char(i.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS position,
              h.instance_id IS NOT NULL AS probed, h.state, h.checked_at, h.since, h.last_error, h.restart_count, h.crash_loop
       FROM instances i JOIN customers c ON c.id = i.customer_id LEFT JOIN instance_health h ON h.instance_id = i.id
       WHERE ($1::text IS NULL OR i.status = $1)
         AND ($2::text IS NULL OR ($2 = 'unknown' AND h.instance_id IS NULL) OR h.state = $2)
         AND ($3::timestamptz IS NULL OR (i.created_at, i.id) < ($3, $4::uuid))
       ORDER BY i.created_at DESC, i.id DESC LIMIT $5`,
      [filter.status ?? null, filter.health ?? null, filter.after?.createdAt ?? null, filter.after?.id ?? null, filter.limit],
    );
    const last = rows.length === filter.limit ? rows[rows.length - 1] : undefined;
    return {
      instances: rows.map((row) => ({
        instanceId: row.id,
        customerId: row.customer_id,
        email: row.email,
        workspaceId: row.workspace_id,
        status: row.status,
        plan: row.plan,
        accessUrl: row.access_url,
        createdAt: row.created_at,
        health: row.probed ? healthView(row) : null,
      })),
      next: last ? { createdAt: last.position, id: last.id } : null,
    };
  }

  async exclusively<T>(fn: () => Promise<T>): Promise<T | null> {
    const client = await this.db.connect();
    let broken: Error | undefined;
    try {
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [MONITOR_LOCK]);
      if (!rows[0]!.locked) return null;
      try {
        return await fn();
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [MONITOR_LOCK]).catch((err: Error) => (broken = err));
      }
    } finally {
      // A connection that could not unlock is closed, not pooled: closing it releases the lock.
      client.release(broken);
    }
  }
}
