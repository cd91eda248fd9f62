/**
 * The instance state machine: every status an instance can be in, every allowed transition with the event that
 * causes it, and the guards the rest of the control plane asks. Every status change goes through `transition()`,
 * which checks the change against this table and writes the status and its audit row in one transaction; an illegal
 * change is an IllegalTransitionError, never a silent overwrite; each change is logged (./eventLog.ts).
 * docs/lifecycle.md draws the diagram.
 */
import { PermanentError } from '../errors.ts';
import type { Db } from '../db/pool.ts';
import { logInstanceEvent } from './eventLog.ts';

export const INSTANCE_STATUSES = ['provisioning', 'active', 'failed', 'abandoned', 'suspended', 'cancelled', 'archived', 'purged'] as const;
export type InstanceStatus = (typeof INSTANCE_STATUSES)[number];

interface Transition {
  readonly from: readonly InstanceStatus[];
  readonly to: InstanceStatus;
  /** The audit action recorded with the change. */
  readonly action: string;
}

/** Each event, the statuses it may happen in, the status it leads to, and the audit action it records. */
export const TRANSITIONS = {
  /** The provisioning flow's last step ran. */
  provisioned: { from: ['provisioning'], to: 'active', action: 'instance.active' },
  /** A provisioning step (or the intake before it) failed for good. */
  failed: { from: ['provisioning'], to: 'failed', action: 'instance.failed' },
  /** An operator re-ran the step that failed. */
  retried: { from: ['failed'], to: 'provisioning', action: 'instance.retried' },
  /** An operator gave up on a failed provisioning; what it made is undone. */
  abandoned: { from: ['failed'], to: 'abandoned', action: 'instance.abandoned' },
  /** The subscription ended (or an operator deprovisioned): service stopped, key revoked. */
  cancelled: { from: ['provisioning', 'active', 'failed', 'suspended'], to: 'cancelled', action: 'instance.cancelled' },
  /** ARCHIVE_AFTER passed: data exported and verified, database and service deleted. */
  archived: { from: ['cancelled'], to: 'archived', action: 'instance.archived' },
  /** PURGE_AFTER passed: archive and personal data deleted. */
  purged: { from: ['archived'], to: 'purged', action: 'instance.purged' },
  /** The payment stayed overdue past the grace: service stopped, data kept. */
  suspended: { from: ['active'], to: 'suspended', action: 'instance.suspended' },
  /** Paid again. */
  resumed: { from: ['suspended'], to: 'active', action: 'instance.resumed' },
  /** The customer came back: the flow runs again as a new generation. */
  reactivated: { from: ['cancelled', 'archived', 'purged'], to: 'provisioning', action: 'instance.reactivated' },
} as const satisfies Record<string, Transition>;

export type InstanceEvent = keyof typeof TRANSITIONS;

export class IllegalTransitionError extends PermanentError {
  constructor(
    readonly instanceId: string,
    readonly from: InstanceStatus,
    readonly event: InstanceEvent,
  ) {
    const allowed = TRANSITIONS[event].from.join(', ');
    super(`instance ${instanceId} is ${from}: "${event}" is allowed only from ${allowed}`);
    this.name = 'IllegalTransitionError';
  }
}

/** Whether `event` may happen to an instance in `status`. */
export function canHappen(status: InstanceStatus, event: InstanceEvent): boolean {
  return (TRANSITIONS[event].from as readonly InstanceStatus[]).includes(status);
}

/**
 * The status `event` leads to from `status`; null when the instance is already there (a repeat, which changes
 * nothing); an IllegalTransitionError otherwise.
 */
export function nextStatus(instanceId: string, status: InstanceStatus, event: InstanceEvent): InstanceStatus | null {
  const { to } = TRANSITIONS[event];
  if (canHappen(status, event)) return to;
  if (status === to) return null;
  throw new IllegalTransitionError(instanceId, status, event);
}

// Guards: questions about a status, answered from the table above.

/** The subscription ended; the customer can come back (reactivation). */
export function isEnded(status: InstanceStatus): boolean {
  return canHappen(status, 'reactivated');
}

/** Provisioning steps may run (a stray re-run of an ended or abandoned provisioning must not rebuild anything). */
export function stepsMayRun(status: InstanceStatus): boolean {
  return status !== 'abandoned' && !isEnded(status);
}

/** A new provisioning flow may be started for it (intake and admin; a repeat after completion starts nothing). */
export function mayStartProvisioning(status: InstanceStatus): boolean {
  return status !== 'active' && status !== 'abandoned';
}

/** Serving its customer (what a suspension stops): a plan change applies to it in place. */
export function isRunning(status: InstanceStatus): boolean {
  return canHappen(status, 'suspended');
}

/** Its provisioning flow may still be queued or running (it may yet finish, or be retried): a cancellation stops it. */
export function provisioningUnderway(status: InstanceStatus): boolean {
  return canHappen(status, 'provisioned') || canHappen(status, 'retried');
}

export const ENDED_STATUSES: readonly InstanceStatus[] = INSTANCE_STATUSES.filter(isEnded);

/** Columns written together with a status; the status itself is only ever written by transition(). */
export type TransitionFields = Record<string, string | number | boolean | Date | null>;

export interface TransitionRequest {
  /** Who caused it: 'worker', 'operator', 'stripe:<event id>'. */
  actor: string;
  /** Other columns of the instance set in the same UPDATE (timestamps, failure fields, generation, ...). */
  set?: TransitionFields;
  /** Recorded in the audit row. */
  detail?: object;
  /**
   * Further conditions on the instance as it is (column = value, null for IS NULL): when one does not hold, nothing
   * is written and transition() returns null, as for a repeat.
   */
  when?: TransitionFields;
}

export interface TransitionResult {
  from: InstanceStatus;
  to: InstanceStatus;
  customerId: string;
  auditId: string;
}

const COLUMN = /^[a-z_]+$/;

/**
 * Moves an instance through `event` in one statement: locks its row, checks the transition and `when`, writes the
 * status, `set` and the audit row, then logs the event. Returns null when nothing was to be done (already there,
 * or `when` does not hold); throws IllegalTransitionError for a change the table does not allow.
 */
export async function transition(db: Db, instanceId: string, event: InstanceEvent, request: TransitionRequest): Promise<TransitionResult | null> {
  const set = Object.entries(request.set ?? {});
  const when = Object.entries(request.when ?? {});
  for (const [column] of [...set, ...when]) {
    if (!COLUMN.test(column) || column === 'status') throw new Error(`transition: invalid column ${column}`);
  }
  const { from, to, action } = TRANSITIONS[event];
  const params: unknown[] = [instanceId, to, from, request.actor, action, JSON.stringify(request.detail ?? {})];
  const param = (value: unknown) => `$${params.push(value)}`;
  const assignments = [...set.map(([column, value]) => `${column} = ${param(value)}`), 'status = $2', 'updated_at = now()'];
  const conditions = when.map(([column, value]) =>
    value === null ? `i.${column} IS NULL` : value instanceof Date ? `date_trunc('milliseconds', i.${column}) = ${param(value)}` : `i.${column} = ${param(value)}`,
  );
  // The old status comes from the locked row (`old`); the UPDATE re-checks `when` on the row as it is now.
  const { rows } = await db.query<{ status: InstanceStatus; customer_id: string; workspace_id: string; audit_id: string | null }>(
    `WITH old AS (SELECT id, status, customer_id, workspace_id FROM instances WHERE id = $1 FOR UPDATE),
     changed AS (UPDATE instances i SET ${assignments.join(', ')} FROM old
                 WHERE i.id = old.id AND old.status = ANY($3::text[]) ${conditions.map((c) => `AND ${c}`).join(' ')}
                 RETURNING i.customer_id),
     audit AS (INSERT INTO audit (actor, action, customer_id, instance_id, detail) SELECT $4, $5, customer_id, $1, $6 FROM changed RETURNING id)
     SELECT old.status, old.customer_id, old.workspace_id, (SELECT id FROM audit) AS audit_id FROM old`,
    params,
  );
  const row = rows[0];
  if (!row) throw new PermanentError(`instance ${instanceId} does not exist`);
  if (row.audit_id) {
    const ids = { instance: instanceId, workspace: row.workspace_id, customer: row.customer_id };
    logInstanceEvent(event, ids, { from: row.status, to, actor: request.actor });
    return { from: row.status, to, customerId: row.customer_id, auditId: row.audit_id };
  }
  nextStatus(instanceId, row.status, event); // throws for a change the table does not allow
  return null;
}
