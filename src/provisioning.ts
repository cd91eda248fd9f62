/**
 * Starting a customer's provisioning: the customer, subscription and instance rows (each found or created by a
 * unique key, so a repeat changes nothing) and the flow. Used by Stripe intake and by the admin API alike.
 */
import type { Config } from './config.ts';
import { audit, instanceById, type InstanceWithCustomer, type Queryable } from './db/instances.ts';
import { inTransaction, type Db } from './db/pool.ts';
import type { Plan } from './plans.ts';
import { workspaceIdFor } from './instances/resources.ts';
import { mayStartProvisioning } from './instances/stateMachine.ts';
import type { JobQueue } from './queues/jobQueue.ts';

export interface ProvisionRequest {
  stripeCustomerId: string | null;
  /** Stripe's subscription id, or comp_<uuid> for a customer an operator provisions. */
  subscriptionRef: string;
  email: string | null;
  name: string | null;
  priceId: string | null;
  plan: Plan | undefined;
  subscriptionStatus: string;
  comped: boolean;
  actor: string;
}

/** The customer and subscription rows of a request, each found or created by its unique key. */
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

export async function recordInstance(db: Db, config: Config, req: ProvisionRequest): Promise<InstanceWithCustomer> {
  const workspaceId = workspaceIdFor(req.subscriptionRef);
  const instanceId = await inTransaction(db, async (tx) => {
    const { customerId, subscriptionId } = await recordSubscription(tx, req);
    const inserted = await tx.query<{ id: string }>(
      `INSERT INTO instances (subscription_id, customer_id, workspace_id, plan, status, compute_provider, database_provider)
       VALUES ($1, $2, $3, $4, 'provisioning', $5, $6)
       ON CONFLICT (subscription_id) DO NOTHING RETURNING id`,
      [subscriptionId, customerId, workspaceId, req.plan?.name ?? null, config.computeProvider, config.databaseProvider],
    );
    if (inserted.rows[0]) {
      await audit(tx, {
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
  return (await instanceById(db, instanceId))!;
}

/**
 * Adds the instance's flow, unless it is already running or was given up: a repeat that comes after the flow's
 * jobs were cleaned away (a Stripe resend days later, a reused Idempotency-Key) must not provision again.
 */
export async function startProvisioning(jobs: JobQueue, instance: InstanceWithCustomer): Promise<boolean> {
  if (!mayStartProvisioning(instance.status)) return false;
  await jobs.addProvisionFlow({ instanceId: instance.id, workspaceId: instance.workspace_id, generation: instance.generation });
  return true;
}
