/** The audit log gateway: who did what to which customer, and the incidents operators are alerted about. */
import type { Queryable } from './instances.ts';
import type { Db } from './pool.ts';

export interface AuditEntry {
  actor: string;
  action: string;
  customerId?: string | null;
  instanceId?: string | null;
  detail?: object;
}

/** An incident as recorded when it happened (what the alerts describe). */
export interface Incident {
  action: string;
  instanceId: string | null;
  detail: Record<string, string | null>;
}

export interface AuditLog {
  record(entry: AuditEntry): Promise<string>;
  /**
   * Records an incident about one job of an instance (actor worker), unless one of this action was recorded for that
   * job already: then null. Null too when the instance does not exist.
   */
  recordJobIncident(instanceId: string, action: string, detail: { step: string; jobId: string; reason: string }): Promise<string | null>;
  /**
   * Records an incident (actor worker) unless one with this key was recorded already (then null), whichever job
   * reports it: a pool filling up is one incident however many sign-ups see it.
   */
  recordIncidentOnce(
    action: string,
    key: string,
    detail: { step: string; jobId: string; title: string; reason: string },
    instanceId: string | null,
  ): Promise<string | null>;
  incident(auditId: string): Promise<Incident | undefined>;
}

export async function insertAudit(db: Queryable, entry: AuditEntry): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    'INSERT INTO audit (actor, action, customer_id, instance_id, detail) VALUES ($1, $2, $3, $4, $5) RETURNING id',
    [entry.actor, entry.action, entry.customerId ?? null, entry.instanceId ?? null, JSON.stringify(entry.detail ?? {})],
  );
  return rows[0]!.id;
}

export class PgAuditLog implements AuditLog {
  constructor(private readonly db: Db) {}

  record(entry: AuditEntry): Promise<string> {
    return insertAudit(this.db, entry);
  }

  async recordJobIncident(instanceId: string, action: string, detail: { step: string; jobId: string; reason: string }): Promise<string | null> {
    const { rows } = await this.db.query<{ id: string }>(
      `INSERT INTO audit (actor, action, customer_id, instance_id, detail)
       SELECT 'worker', $4, customer_id, id, $2 FROM instances
       WHERE id = $1 AND NOT EXISTS (
         SELECT 1 FROM audit WHERE instance_id = $1 AND action = $4 AND detail->>'jobId' = $3)
       RETURNING id`,
      [instanceId, JSON.stringify(detail), detail.jobId, action],
    );
    return rows[0]?.id ?? null;
  }

  async recordIncidentOnce(
    action: string,
    key: string,
    detail: { step: string; jobId: string; title: string; reason: string },
    instanceId: string | null,
  ): Promise<string | null> {
    const { rows } = await this.db.query<{ id: string }>(
      `INSERT INTO audit (actor, action, customer_id, instance_id, detail)
       SELECT 'worker', $1, (SELECT customer_id FROM instances WHERE id = $2), $2, $3
       ON CONFLICT ((detail ->> 'incidentKey')) WHERE detail ? 'incidentKey' DO NOTHING
       RETURNING id`,
      [action, instanceId, JSON.stringify({ ...detail, incidentKey: key })],
    );
    return rows[0]?.id ?? null;
  }

  async incident(auditId: string): Promise<Incident | undefined> {
    const { rows } = await this.db.query<{ action: string; instance_id: string | null; detail: Record<string, string | null> }>(
      'SELECT action, instance_id, detail FROM audit WHERE id = $1',
      [auditId],
    );
    const row = rows[0];
    return row && { action: row.action, instanceId: row.instance_id, detail: row.detail };
  }
}
