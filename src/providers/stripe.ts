/** Stripe API reads through the stripe package, pointed at STRIPE_API_BASE when it is set (tests, emulators). */
import Stripe from 'stripe';
import { parseRetryAfter, PermanentError, TransientError } from '../errors.ts';

export interface SubscriptionSnapshot {
  id: string;
  customerId: string;
  status: string;
  priceId: string | null;
  /** Epoch seconds, once cancelled. */
  canceledAt: number | null;
}

/** Subscription states in which the customer has paid (or is trialing): they get, or keep, a running instance. */
export const PAID: ReadonlySet<string> = new Set(['active', 'trialing']);

/** Subscription states in which the customer has not paid and the grace runs. */
export const OVERDUE: ReadonlySet<string> = new Set(['past_due', 'unpaid']);

export interface CustomerSnapshot {
  id: string;
  email: string | null;
  name: string | null;
}

export interface CheckoutSessionSnapshot {
  id: string;
  mode: string;
  status: string | null;
  paymentStatus: string;
  customerId: string | null;
  subscriptionId: string | null;
  /** Epoch seconds. */
  created: number;
}

export class StripeGateway {
  private readonly client: Stripe | null;

  constructor(secretKey: string | null, apiBase: string | null) {
    if (!secretKey) {
      this.client = null;
      return;
    }
    const base = apiBase ? new URL(apiBase) : null;
    this.client = new Stripe(secretKey, {
      maxNetworkRetries: 2,
      timeout: 20_000,
      ...(base && {
        host: base.hostname,
        port: Number(base.port || (base.protocol === 'https:' ? 443 : 80)),
        protocol: base.protocol === 'https:' ? 'https' : 'http',
      }),
    });
  }

  async subscription(id: string): Promise<SubscriptionSnapshot> {
    const sub = await this.call((s) => s.subscriptions.retrieve(id));
    return {
      id: sub.id,
      customerId: typeof sub.customer === 'string' ? sub.customer : sub.customer.id,
      status: sub.status,
      priceId: sub.items.data[0]?.price.id ?? null,
      canceledAt: sub.canceled_at ?? null,
    };
  }

  async customer(id: string): Promise<CustomerSnapshot> {
    const customer = await this.call((s) => s.customers.retrieve(id));
    if ('deleted' in customer && customer.deleted) return { id, email: null, name: null };
    return { id: customer.id, email: customer.email ?? null, name: customer.name ?? null };
  }

  /** A Checkout Session; a PermanentError when Stripe knows no such session. */
  async checkoutSession(id: string): Promise<CheckoutSessionSnapshot> {
    const session = await this.call((s) => s.checkout.sessions.retrieve(id));
    const idOf = (ref: string | { id: string } | null) => (ref === null ? null : typeof ref === 'string' ? ref : ref.id);
    return {
      id: session.id,
      mode: session.mode,
      status: session.status,
      paymentStatus: session.payment_status,
      customerId: idOf(session.customer),
      subscriptionId: idOf(session.subscription),
      created: session.created,
    };
  }

  /** A Stripe customer portal session (change plan, payment method, cancel): its one-time URL. */
  async billingPortalUrl(customerId: string, returnUrl: string): Promise<string> {
    const session = await this.call((s) => s.billingPortal.sessions.create({ customer: customerId, return_url: returnUrl }));
    return session.url;
  }

  private async call<T>(fn: (client: Stripe) => Promise<T>): Promise<T> {
    if (!this.client) throw new PermanentError('STRIPE_SECRET_KEY is not configured, so Stripe cannot be asked');
    try {
      return await fn(this.client);
    } catch (err) {
      if (err instanceof Stripe.errors.StripeError) {
        const status = err.statusCode ?? 0;
        if (status === 0 || status === 429 || status >= 500 || err.type === 'StripeConnectionError') {
          throw new TransientError(`Stripe: ${err.message}`, parseRetryAfter(err.headers?.['retry-after']));
        }
        throw new PermanentError(`Stripe: ${err.message}`);
      }
      throw err;
    }
  }
}
