/** Queries on customers, subscriptions and instances: the rows provisioning reads and writes. */
import type pg from 'pg';
import type { InstanceStatus } from '../instances/stateMachine.ts';
import type { Db } from './pool.ts';

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
}

export interface InstanceWithCustomer extends InstanceRow {
  email: string | null;
  customer_name: string | null;
  stripe_customer_id: string | null;
  stripe_subscription_id: string;
}

const WITH_CUSTOMER = `
  SELECT i.*, c.email, c.name AS customer_name, c.stripe_customer_id, s.stripe_subscription_id
  FROM instances i JOIN customers c ON c.id = i.customer_id JOIN subscriptions s ON s.id = i.subscription_id`;

export async function instanceById(db: Queryable, id: string): Promise<InstanceWithCustomer | undefined> {
  const { rows } = await db.query<InstanceWithCustomer>(`${WITH_CUSTOMER} WHERE i.id = $1`, [id]);
  return rows[0];
}

/** The instance a Stripe subscription (or a comped one) pays for. */
export async function instanceForSubscription(db: Queryable, subscriptionRef: string): Promise<InstanceWithCustomer | undefined> {
  const { rows } = await db.query<InstanceWithCustomer>(`${WITH_CUSTOMER} WHERE s.stripe_subscription_id = $1`, [subscriptionRef]);
  return rows[0];
}

/** The newest instance of a customer, by Stripe customer id or by our own customer id. */
export async function instanceForCustomer(db: Queryable, customerRef: string): Promise<InstanceWithCustomer | undefined> {
  const byOwnId = UUID.test(customerRef);
  const { rows } = await db.query<InstanceWithCustomer>(
    `${WITH_CUSTOMER} WHERE ${byOwnId ? 'c.id = $1::uuid' : 'c.stripe_customer_id = $1'} ORDER BY i.created_at DESC LIMIT 1`,
    [customerRef],
  );
  return rows[0];
}

export async function updateInstance(db: Queryable, id: string, fields: Partial<InstanceRow>): Promise<void> {
  const entries = Object.entries(fields);
  if (entries.length === 0) return;
  const sets = entries.map(([column], i) => `${column} = $${i + 2}`).join(', ');
  await db.query(`UPDATE instances SET ${sets}, updated_at = now() WHERE id = $1`, [id, ...entries.map(([, v]) => v)]);
}

export async function audit(
  db: Queryable,
  entry: { actor: string; action: string; customerId?: string | null; instanceId?: string | null; detail?: object },
): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    'INSERT INTO audit (actor, action, customer_id, instance_id, detail) VALUES ($1, $2, $3, $4, $5) RETURNING id',
    [entry.actor, entry.action, entry.customerId ?? null, entry.instanceId ?? null, JSON.stringify(entry.detail ?? {})],
  );
  return rows[0]!.id;
}

export type { Db };
