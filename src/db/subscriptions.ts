/** The subscriptions gateway: customers and their subscriptions (Stripe's, or comped by an operator). */
import type { ProvisionRequest } from '../provisioning.ts';
import type { Queryable } from './instances.ts';
import type { Db } from './pool.ts';

export interface Subscriptions {
  /** The customer and subscription rows of a request, each found or created by its unique key. */
  record(req: ProvisionRequest): Promise<{ customerId: string; subscriptionId: string }>;
  /** The status Stripe reports now. */
  setStatus(stripeSubscriptionId: string, status: string): Promise<void>;
  setPlan(subscriptionId: string, plan: string): Promise<void>;
  /** The customer's email (and name, when known) as Stripe has them now: an operator fixed a missing address. */
  setContact(customerId: string, email: string, name: string | null): Promise<void>;
  /**
   * Deletes the personal data kept of a customer (email and name; the ids stay) unless another instance of theirs,
   * not purged, still needs it (a returning customer's new instance): whether it was deleted.
   */
  forgetCustomer(customerId: string, purgedInstanceId: string): Promise<boolean>;
}

export async function recordSubscription(tx: Queryable, req: ProvisionRequest): Promise<{ customerId: string; subscriptionId: string }> {
  const known = await tx.query<{ customer_id: string }>('SELECT customer_id FROM subscriptions WHERE stripe_subscription_id = $1', [
    req.subscriptionRef,
  ]);
  const customer = known.rows[0]
    ? { rows: [{ id: known.rows[0].customer_id }] }
    : req.stripeCustomerId
    ? await tx.query<{ id: string }>(
        `INSERT INTO customers (stripe_customer_id, email, name) VALUES ($1, $2, $3)
         ON CONFLICT (stripe_customer_id) DO UPDATE SET email = COALESCE(EXCLUDED.email, customers.email),
           name = COALESCE(EXCLUDED.name, customers.name), updated_at = now()
         RETURNING id`,
        [req.stripeCustomerId, req.email, req.name],
      )
    : await tx.query<{ id: string }>('INSERT INTO customers (email, name) VALUES ($1, $2) RETURNING id', [req.email, req.name]);
  const customerId = customer.rows[0]!.id;
  const subscription = await tx.query<{ id: string }>(
    `INSERT INTO subscriptions (customer_id, stripe_subscription_id, price_id, plan, status, comped)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (stripe_subscription_id) DO UPDATE SET updated_at = now()
     RETURNING id`,
    [customerId, req.subscriptionRef, req.priceId, req.plan?.name ?? null, req.subscriptionStatus, req.comped],
  );
  return { customerId, subscriptionId: subscription.rows[0]!.id };
}

export class PgSubscriptions implements Subscriptions {
  constructor(private readonly db: Db) {}

  record(req: ProvisionRequest): Promise<{ customerId: string; subscriptionId: string }> {
    return recordSubscription(this.db, req);
  }

  async setStatus(stripeSubscriptionId: string, status: string): Promise<void> {
    await this.db.query('UPDATE subscriptions SET status = $2, updated_at = now() WHERE stripe_subscription_id = $1', [stripeSubscriptionId, status]);
  }

  async setPlan(subscriptionId: string, plan: string): Promise<void> {
    await this.db.query('UPDATE subscriptions SET plan = $2, updated_at = now() WHERE id = $1', [subscriptionId, plan]);
  }

  async setContact(customerId: string, email: string, name: string | null): Promise<void> {
    await this.db.query('UPDATE customers SET email = $2, name = COALESCE($3, name), updated_at = now() WHERE id = $1', [customerId, email, name]);
  }

  async forgetCustomer(customerId: string, purgedInstanceId: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE customers SET email = NULL, name = NULL, updated_at = now()
        WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM instances WHERE customer_id = $1 AND id <> $2 AND status <> 'purged')`,
      [customerId, purgedInstanceId],
    );
    return rowCount === 1;
  }
}
