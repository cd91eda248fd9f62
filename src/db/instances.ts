/**
 * The instances gateway: an instance with its customer and subscription, found by any of their keys; its columns;
 * and its status, which only the state machine's transition() writes.
 */
import type pg from 'pg';
import {
  ENDED_STATUSES,
  transition,
  type InstanceEvent,
  type InstanceStatus,
  type TransitionRequest,
  type TransitionResult,
} from '../instances/stateMachine.ts';
import { workspaceIdFor } from '../instances/resources.ts';
import type { ProvisionRequest } from '../provisioning.ts';
import { insertAudit } from './audit.ts';
import type { Db } from './pool.ts';
import { inTransaction } from '../../core/postgres.ts';
import { recordSubscription } from './subscriptions.ts';

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

export interface InstanceRow {
  id: string;
  subscription_id: string;
  customer_id: string;
  workspace_id: string;
  plan: string | null;
  status: InstanceStatus;
  compute_provider: string;
  database_provider: string;
  service_id: string | null;
  /** When create-service asked for the service (set before asking): with no service_id, it may exist unrecorded. */
  service_requested_at: Date | null;
  access_url: string | null;
  branch_id: string | null;
  database_name: string | null;
  database_role: string | null;
  api_key_hash: string | null;
  api_key_label: string | null;
  failed_step: string | null;
  failed_job: string | null;
  failure_reason: string | null;
  provision_started_at: Date;
  active_at: Date | null;
  cancelled_at: Date | null;
  archive_at: Date | null;
  purge_at: Date | null;
  archived_at: Date | null;
  purged_at: Date | null;
  generation: number;
  past_due_since: Date | null;
  /** Set when a cancellation of this provisioning began: no further step runs. */
  cancel_requested_at: Date | null;
}

export interface InstanceWithCustomer extends InstanceRow {
  email: string | null;
  customer_name: string | null;
  stripe_customer_id: string | null;
  stripe_subscription_id: string;
}

/** Columns a step or job records as it goes (the status and what changes with it are written by transitions). */
export type InstanceFields = Partial<
  Pick<InstanceRow, 'plan' | 'service_id' | 'service_requested_at' | 'access_url' | 'branch_id' | 'database_name' | 'database_role' | 'api_key_hash' | 'api_key_label' | 'cancel_requested_at'>
>;

export interface Instances {
  byId(id: string): Promise<InstanceWithCustomer | undefined>;
  /** The instance a Stripe subscription (or a comped one) pays for. */
  forSubscription(subscriptionRef: string): Promise<InstanceWithCustomer | undefined>;
  /** The newest instance of a customer, by Stripe customer id or by our own customer id. */
  forCustomer(customerRef: string): Promise<InstanceWithCustomer | undefined>;
  /** A Stripe customer's newest instance whose subscription ended (they may come back to it). */
  endedForStripeCustomer(stripeCustomerId: string): Promise<InstanceWithCustomer | undefined>;
  /** A Stripe customer's instances whose subscription has not ended here, on other subscriptions than `except`, newest first. */
  liveForStripeCustomer(stripeCustomerId: string, exceptSubscriptionRef: string): Promise<InstanceWithCustomer[]>;
  idOfWorkspace(workspaceId: string): Promise<string | undefined>;
  /**
   * The customer, subscription and instance rows of a request, each found or created by a unique key (so a repeat
   * changes nothing); a new instance is provisioning on the given providers, and audited.
   */
  record(req: ProvisionRequest, providers: { compute: string; database: string }): Promise<InstanceWithCustomer>;
  update(id: string, fields: InstanceFields): Promise<void>;
  /** The instance's status changes through `event`, with its audit row (see the state machine). */
  transition(id: string, event: InstanceEvent, request: TransitionRequest): Promise<TransitionResult | null>;
  /** When Stripe first reported the payment overdue: recorded now, unless it was already. */
  markPastDue(id: string): Promise<Date>;
  clearPastDue(id: string): Promise<void>;
  /**
   * The instance's API key is now this one: its hash and label are recorded with an `api_key.rotated` audit row, in
   * one statement. A repeat (the same hash again) changes nothing and answers null; otherwise the audit row's id.
   */
  /**
   * Records the instance's new key (hash and label) with its audit row, unless it is the recorded one already: then
   * null. `signedAt`, for a runtime's notice: null too when the recorded key changed after it (an older notice sent
   * again); a rotation made here (an operator's, the account page's) is recorded whenever it happens.
   */
  recordKeyRotation(id: string, key: { hash: string; label: string }, audit: { actor: string; detail: object }, signedAt?: Date): Promise<string | null>;
}

const WITH_CUSTOMER = `
  SELECT i.*, c.email, c.name AS customer_name, c.stripe_customer_id, s.stripe_subscription_id
  FROM instances i JOIN customers c ON c.id = i.customer_id JOIN subscriptions s ON s.id = i.subscription_id`;

async function instanceById(db: Queryable, id: string): Promise<InstanceWithCustomer | undefined> {
  const { rows } = await db.query<InstanceWithCustomer>(`${WITH_CUSTOMER} WHERE i.id = $1`, [id]);
  return rows[0];
}

export class PgInstances implements Instances {
  constructor(private readonly db: Db) {}

  byId(id: string): Promise<InstanceWithCustomer | undefined> {
    return instanceById(this.db, id);
  }

  async forSubscription(subscriptionRef: string): Promise<InstanceWithCustomer | undefined> {
    const { rows } = await this.db.query<InstanceWithCustomer>(`${WITH_CUSTOMER} WHERE s.stripe_subscription_id = $1`, [subscriptionRef]);
    return rows[0];
  }

  async forCustomer(customerRef: string): Promise<InstanceWithCustomer | undefined> {
    const byOwnId = UUID.test(customerRef);
    const { rows } = await this.db.query<InstanceWithCustomer>(
      `${WITH_CUSTOMER} WHERE ${byOwnId ? 'c.id = $1::uuid' : 'c.stripe_customer_id = $1'} ORDER BY i.created_at DESC LIMIT 1`,
      [customerRef],
    );
    return rows[0];
  }

  async endedForStripeCustomer(stripeCustomerId: string): Promise<InstanceWithCustomer | undefined> {
    const { rows } = await this.db.query<InstanceWithCustomer>(
      `${WITH_CUSTOMER} WHERE c.stripe_customer_id = $1 AND i.status = ANY ($2::text[]) ORDER BY i.created_at DESC LIMIT 1`,
      [stripeCustomerId, [...ENDED_STATUSES]],
    );
    return rows[0];
  }

  async liveForStripeCustomer(stripeCustomerId: string, exceptSubscriptionRef: string): Promise<InstanceWithCustomer[]> {
    const { rows } = await this.db.query<InstanceWithCustomer>(
      `${WITH_CUSTOMER} WHERE c.stripe_customer_id = $1 AND s.stripe_subscription_id <> $2 AND i.status <> ALL ($3::text[])
       ORDER BY i.created_at DESC`,
      [stripeCustomerId, exceptSubscriptionRef, [...ENDED_STATUSES, 'abandoned']],
    );
    return rows;
  }

  async idOfWorkspace(workspaceId: string): Promise<string | undefined> {
    const { rows } = await this.db.query<{ id: string }>('SELECT id FROM instances WHERE workspace_id = $1', [workspaceId]);
    return rows[0]?.id;
  }

  async record(req: ProvisionRequest, providers: { compute: string; database: string }): Promise<InstanceWithCustomer> {
    const workspaceId = workspaceIdFor(req.subscriptionRef);
    const instanceId = await inTransaction(this.db, async (tx) => {
      const { customerId, subscriptionId } = await recordSubscription(tx, req);
      const inserted = await tx.query<{ id: string }>(
        `INSERT INTO instances (subscription_id, customer_id, workspace_id, plan, status, compute_provider, database_provider)
         VALUES ($1, $2, $3, $4, 'provisioning', $5, $6)
         ON CONFLICT (subscription_id) DO NOTHING RETURNING id`,
        [subscriptionId, customerId, workspaceId, req.plan?.name ?? null, providers.compute, providers.database],
      );
      if (inserted.rows[0]) {
        await insertAudit(tx, {
          actor: req.actor,
          action: 'instance.created',
          customerId,
          instanceId: inserted.rows[0].id,
          detail: { workspaceId, plan: req.plan?.name ?? null, priceId: req.priceId, comped: req.comped },
        });
        return inserted.rows[0].id;
      }
      const existing = await tx.query<{ id: string }>('SELECT id FROM instances WHERE subscription_id = $1', [subscriptionId]);
      return existing.rows[0]!.id;
    });
    return (await instanceById(this.db, instanceId))!;
  }

  async update(id: string, fields: InstanceFields): Promise<void> {
    const entries = Object.entries(fields);
    if (entries.length === 0) return;
    const sets = entries.map(([column], i) => `${column} = $${i + 2}`).join(', ');
    await this.db.query(`UPDATE instances SET ${sets}, updated_at = now() WHERE id = $1`, [id, ...entries.map(([, v]) => v)]);
  }

  transition(id: string, event: InstanceEvent, request: TransitionRequest): Promise<TransitionResult | null> {
    return transition(this.db, id, event, request);
  }

  async markPastDue(id: string): Promise<Date> {
    const { rows } = await this.db.query<{ past_due_since: Date }>(
      'UPDATE instances SET past_due_since = COALESCE(past_due_since, now()) WHERE id = $1 RETURNING past_due_since',
      [id],
    );
    return rows[0]!.past_due_since;
  }

  async clearPastDue(id: string): Promise<void> {
    await this.db.query('UPDATE instances SET past_due_since = NULL WHERE id = $1', [id]);
  }

  async recordKeyRotation(id: string, key: { hash: string; label: string }, audit: { actor: string; detail: object }, signedAt?: Date): Promise<string | null> {
    const { rows } = await this.db.query<{ id: string }>(
      `WITH changed AS (
         UPDATE instances SET api_key_hash = $2, api_key_label = $3, updated_at = now(),
           key_changed_at = date_trunc('second', coalesce($6::timestamptz, now()))
         WHERE id = $1 AND api_key_hash IS DISTINCT FROM $2
           AND ($6::timestamptz IS NULL OR key_changed_at IS NULL OR key_changed_at <= date_trunc('second', $6::timestamptz))
         RETURNING id, customer_id
       )
       INSERT INTO audit (actor, action, customer_id, instance_id, detail)
       SELECT $4, 'api_key.rotated', customer_id, id, $5 FROM changed RETURNING id`,
      [id, key.hash, key.label, audit.actor, JSON.stringify({ ...audit.detail, label: key.label }), signedAt ?? null],
    );
    return rows[0]?.id ?? null;
  }
}

