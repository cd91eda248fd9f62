/**
 * Who a welcome page visit is for. The Checkout Session id (Stripe's success_url) or the signed welcome link is the
 * only secret, so every way of not qualifying ends the same: null, the plain 404.
 */
import type { Instances, InstanceWithCustomer } from '../../db/instances.ts';
import { PermanentError } from '../../errors.ts';
import { readWelcomeToken } from '../../instances/welcomeLink.ts';
import type { StripeGateway } from '../../providers/stripe.ts';

const SESSION_ID = /^cs_(?:test|live)_[A-Za-z0-9]{10,255}$/;
const PAID = new Set(['paid', 'no_payment_required']);
/** Stripe redirects at once, maybe before its webhook is handled: a fresh paid session waits this long for it. */
const WEBHOOK_GRACE_S = 15 * 60;

export type Visit =
  | { instance: InstanceWithCustomer; query: string }
  /** A paid checkout whose checkout.session.completed is not handled yet: the instance comes with it. */
  | { instance: null; subscriptionId: string; customerId: string; query: string };

export interface VisitDeps {
  secretsKey: Buffer;
  instances: Pick<Instances, 'byId' | 'forSubscription'>;
  stripe: Pick<StripeGateway, 'checkoutSession'>;
}

/** The visit a query names, or null. A Stripe outage throws (a TransientError): the caller says to try again. */
export async function findVisit(deps: VisitDeps, query: Record<string, unknown>): Promise<Visit | null> {
  const { session_id: sessionId, token } = query;
  if (typeof token === 'string' && sessionId === undefined) {
    const instanceId = readWelcomeToken(deps.secretsKey, token);
    const instance = instanceId ? await deps.instances.byId(instanceId) : undefined;
    return instance ? { instance, query: `token=${encodeURIComponent(token)}` } : null;
  }
  if (typeof sessionId !== 'string' || token !== undefined || !SESSION_ID.test(sessionId)) return null;
  let session;
  try {
    session = await deps.stripe.checkoutSession(sessionId);
  } catch (err) {
    if (err instanceof PermanentError) return null; // no such session (or one Stripe refuses to show us)
    throw err;
  }
  const { subscriptionId, customerId } = session;
  if (session.mode !== 'subscription' || session.status !== 'complete' || !PAID.has(session.paymentStatus) || !subscriptionId || !customerId) return null;
  const visitQuery = `session_id=${encodeURIComponent(sessionId)}`;
  const instance = await deps.instances.forSubscription(subscriptionId);
  if (instance) return instance.stripe_customer_id === customerId ? { instance, query: visitQuery } : null;
  const fresh = Date.now() / 1000 - session.created < WEBHOOK_GRACE_S;
  return fresh ? { instance: null, subscriptionId, customerId, query: visitQuery } : null;
}

/** The visit again (its instance as it is now), without asking Stripe again. */
export async function refreshVisit(deps: Pick<VisitDeps, 'instances'>, visit: Visit): Promise<Visit | null> {
  const instance = visit.instance ? await deps.instances.byId(visit.instance.id) : await deps.instances.forSubscription(visit.subscriptionId);
  if (!instance) return visit.instance ? null : visit;
  if (!visit.instance && instance.stripe_customer_id !== visit.customerId) return null;
  return { instance, query: visit.query };
}
