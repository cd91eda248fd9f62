/**
 * The reconciler's gateway (tables from migration 009): the instances as it compares them, when it first saw each
 * orphan (kept between runs, so ORPHAN_GRACE runs from the first sighting), when it last compared each instance's
 * service settings with its plan, its newest reports, and the lock that lets one run act at a time.
 */
import type { InstanceStatus } from '../instances/stateMachine.ts';
import { inTransaction } from '../../core/postgres.ts';
import type { LockConnections } from './instanceLocks.ts';
import type { Db } from './pool.ts';

/** What the reconciler reads of each instance. */
export interface FleetInstance {
  id: string;
  customer_id: string;
  workspace_id: string;
  status: InstanceStatus;
  plan: string | null;
  generation: number;
  compute_provider: string;
  database_provider: string;
  service_id: string | null;
  branch_id: string | null;
  /** Where its runtime is reached (its configuration names it). */
  access_url: string | null;
  /** When its service settings were last compared with its plan (null: never). */
  drift_checked_at: Date | null;
}

/** An orphan as its sighting is kept: by kind, provider and the provider's id. */
export interface OrphanRef {
  kind: 'service' | 'database';
  provider: string;
  id: string;
  name: string;
}

/** When an orphan was first seen, and how long ago (by the database's clock, the same for every worker). */
export interface Sighting {
  firstSeenAt: Date;
  ageMs: number;
}

/** A report as kept: whatever the run wrote, with when it started and whether it acted. */
export interface StoredReport {
  dryRun: boolean;
  startedAt: string;
}

export interface Reconciliation {
  /** Every instance, with when its drift was last checked. */
  fleet(): Promise<FleetInstance[]>;
  /**
   * These orphans were seen now: each keeps its first sighting (now for a new one), and orphans seen before but not
   * now (gone, or owned again) are forgotten. Answers each one's sighting, by sightingKey.
   */
  sighted(orphans: OrphanRef[]): Promise<Map<string, Sighting>>;
  /** The sightings kept of these orphans, writing nothing (a dry run). */
  sightings(orphans: OrphanRef[]): Promise<Map<string, Sighting>>;
  /** The orphan was deleted. */
  forget(orphan: OrphanRef): Promise<void>;
  /** These instances' service settings were compared with their plan now. */
  driftChecked(instanceIds: string[]): Promise<void>;
  saveReport(report: StoredReport): Promise<void>;
  /** The newest report, dry or not. */
  lastReport(): Promise<StoredReport | undefined>;
  /** Runs `work` holding the reconciler's lock (one acting run at a time, whatever the workers); `{ ran: false }` when held. */
  exclusive<T>(work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }>;
}

export function sightingKey(orphan: Pick<OrphanRef, 'kind' | 'provider' | 'id'>): string {
  return `${orphan.kind}/${orphan.provider}/${orphan.id}`;
}

/** Reports kept; older ones are deleted as new ones come. */
const REPORTS_KEPT = 50;

export class PgReconciliation implements Reconciliation {
  constructor(
    private readonly db: Db,
    private readonly lockConnections: LockConnections,
  ) {}

  async fleet(): Promise<FleetInstance[]> {
    const { rows } = await this.db.query<FleetInstance>(
      `SELECT i.id, i.customer_id, i.workspace_id, i.status, i.plan, i.generation, i.compute_provider, i.database_provider,
              i.service_id, i.branch_id, i.access_url, c.checked_at AS drift_checked_at
       FROM instances i LEFT JOIN reconcile_drift_checks c ON c.instance_id = i.id`,
    );
    return rows;
  }

  async sighted(orphans: OrphanRef[]): Promise<Map<string, Sighting>> {
    const columns = toColumns([...new Map(orphans.map((o) => [sightingKey(o), o])).values()]);
    return inTransaction(this.db, async (tx) => {
      await tx.query(
        `DELETE FROM reconcile_orphans o
         WHERE NOT EXISTS (SELECT 1 FROM unnest($1::text[], $2::text[], $3::text[]) AS n(kind, provider, resource_id)
                           WHERE n.kind = o.kind AND n.provider = o.provider AND n.resource_id = o.resource_id)`,
        [columns.kinds, columns.providers, columns.ids],
      );
      const { rows } = await tx.query<SightingRow>(
        `INSERT INTO reconcile_orphans AS o (kind, provider, resource_id, name)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
         ON CONFLICT (kind, provider, resource_id) DO UPDATE SET last_seen_at = now(), name = EXCLUDED.name
         RETURNING o.kind, o.provider, o.resource_id, o.first_seen_at, (extract(epoch FROM now() - o.first_seen_at) * 1000)::float8 AS age_ms`,
        [columns.kinds, columns.providers, columns.ids, columns.names],
      );
      return bySighting(rows);
    });
  }

  async sightings(orphans: OrphanRef[]): Promise<Map<string, Sighting>> {
    const columns = toColumns(orphans);
    const { rows } = await this.db.query<SightingRow>(
      `SELECT o.kind, o.provider, o.resource_id, o.first_seen_at, (extract(epoch FROM now() - o.first_seen_at) * 1000)::float8 AS age_ms
       FROM reconcile_orphans o JOIN unnest($1::text[], $2::text[], $3::text[]) AS n(kind, provider, resource_id)
         ON n.kind = o.kind AND n.provider = o.provider AND n.resource_id = o.resource_id`,
      [columns.kinds, columns.providers, columns.ids],
    );
    return bySighting(rows);
  }

  async forget(orphan: OrphanRef): Promise<void> {
    await this.db.query('DELETE FROM reconcile_orphans WHERE kind = $1 AND provider = $2 AND resource_id = $3', [orphan.kind, orphan.provider, orphan.id]);
  }

  async driftChecked(instanceIds: string[]): Promise<void> {
    if (!instanceIds.length) return;
    await this.db.query(
      `INSERT INTO reconcile_drift_checks (instance_id, checked_at) SELECT id, now() FROM unnest($1::uuid[]) AS id
       ON CONFLICT (instance_id) DO UPDATE SET checked_at = now()`,
      [instanceIds],
    );
  }

  async saveReport(report: StoredReport): Promise<void> {
    await this.db.query(
      `WITH saved AS (INSERT INTO reconcile_reports (dry_run, started_at, report) VALUES ($1, $2, $3) RETURNING id)
       DELETE FROM reconcile_reports WHERE id <= (SELECT id FROM saved) - $4`,
      [report.dryRun, report.startedAt, JSON.stringify(report), REPORTS_KEPT],
    );
  }

  async lastReport(): Promise<StoredReport | undefined> {
    const { rows } = await this.db.query<{ report: StoredReport }>('SELECT report FROM reconcile_reports ORDER BY id DESC LIMIT 1');
    return rows[0]?.report;
  }

  exclusive<T>(work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    return this.lockConnections.withLock('reconcile', work);
  }
}

interface SightingRow {
  kind: string;
  provider: string;
  resource_id: string;
  first_seen_at: Date;
  age_ms: number;
}

function toColumns(orphans: OrphanRef[]) {
  return {
    kinds: orphans.map((o) => o.kind),
    providers: orphans.map((o) => o.provider),
    ids: orphans.map((o) => o.id),
    names: orphans.map((o) => o.name),
  };
}

function bySighting(rows: SightingRow[]): Map<string, Sighting> {
  return new Map(
    rows.map((r) => [sightingKey({ kind: r.kind as OrphanRef['kind'], provider: r.provider, id: r.resource_id }), { firstSeenAt: r.first_seen_at, ageMs: Math.max(0, r.age_ms) }]),
  );
}
