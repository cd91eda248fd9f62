// A stateful Stripe API emulator speaking Stripe's wire protocol (form-encoded requests, JSON responses,
// Bearer auth, Stripe error bodies), so the real `stripe` package can be pointed at it in tests.
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';

export const EMULATOR_API_KEY = 'sk_test_emulator';

export type SubscriptionStatus =
  | 'incomplete' | 'incomplete_expired' | 'trialing' | 'active' | 'past_due' | 'canceled' | 'unpaid' | 'paused';
type Metadata = Record<string, string>;

export interface Customer {
  id: string; object: 'customer'; address: null; balance: number; created: number; currency: string | null;
  default_source: null; delinquent: boolean; description: null; email: string | null; invoice_prefix: string;
  invoice_settings: { custom_fields: null; default_payment_method: null; footer: null; rendering_options: null };
  livemode: false; metadata: Metadata; name: string | null; next_invoice_sequence: number; phone: null;
  preferred_locales: string[]; shipping: null; tax_exempt: 'none'; test_clock: null;
}

export interface Price {
  id: string; object: 'price'; active: boolean; billing_scheme: 'per_unit'; created: number; currency: string;
  custom_unit_amount: null; livemode: false; lookup_key: string | null; metadata: Metadata; nickname: null; product: string;
  recurring: { interval: 'month' | 'year'; interval_count: number; meter: null; trial_period_days: null; usage_type: 'licensed' };
  tax_behavior: 'unspecified'; tiers_mode: null; transform_quantity: null; type: 'recurring';
  unit_amount: number; unit_amount_decimal: string;
}

export interface SubscriptionItem {
  id: string; object: 'subscription_item'; created: number; current_period_end: number; current_period_start: number;
  discounts: string[]; metadata: Metadata; price: Price; quantity: number; subscription: string; tax_rates: unknown[];
}

export interface Subscription {
  id: string; object: 'subscription'; application: null; billing_cycle_anchor: number; cancel_at: number | null;
  cancel_at_period_end: boolean; canceled_at: number | null;
  cancellation_details: { comment: null; feedback: null; reason: 'cancellation_requested' | null };
  collection_method: 'charge_automatically'; created: number; currency: string; customer: string;
  default_payment_method: null; description: null; discounts: string[]; ended_at: number | null;
  items: { object: 'list'; data: SubscriptionItem[]; has_more: false; url: string };
  latest_invoice: null; livemode: false; metadata: Metadata; pause_collection: null; schedule: null;
  start_date: number; status: SubscriptionStatus; test_clock: null; trial_end: null; trial_start: null;
}

export interface CheckoutSession {
  id: string; object: 'checkout.session'; amount_subtotal: number; amount_total: number; cancel_url: null;
  client_reference_id: string | null; created: number; currency: string; customer: string;
  customer_creation: 'always';
  customer_details: { address: null; email: string | null; name: string | null; phone: null; tax_exempt: 'none'; tax_ids: unknown[] };
  customer_email: null; expires_at: number; invoice: null; livemode: false; metadata: Metadata;
  mode: 'subscription' | 'payment'; payment_intent: null; payment_status: 'paid' | 'unpaid' | 'no_payment_required';
  status: 'open' | 'complete' | 'expired';
  subscription: string | null; success_url: string; url: null;
}

export interface LineItem {
  id: string; object: 'item'; amount_discount: number; amount_subtotal: number; amount_tax: number; amount_total: number;
  currency: string; description: string; price: Price; quantity: number;
}

export interface StripeEvent<T = unknown> {
  id: string; object: 'event'; api_version: string; created: number;
  data: { object: T; previous_attributes?: Record<string, unknown> };
  livemode: false; pending_webhooks: number; request: { id: string | null; idempotency_key: string | null }; type: string;
}

/** What a test may change on a subscription directly (bypassing the API's rules). */
export interface SubscriptionPatch {
  price?: string; // replaces the price of the first item
  status?: SubscriptionStatus; // 'canceled' cancels as DELETE does
  cancel_at_period_end?: boolean;
  metadata?: Metadata; // merged; '' removes a key
}

export interface Call { method: string; path: string }

type StoredObject = Customer | Price | Subscription | CheckoutSession;
type Form = { [key: string]: string | Form };

class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly code?: string, readonly param?: string) {
    super(message);
  }
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const randomId = (prefix: string, length = 24) =>
  prefix + Array.from(randomBytes(length), (b) => ALPHABET[b % ALPHABET.length]).join('');
const now = () => Math.floor(Date.now() / 1000);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function addMonths(unixSeconds: number, months: number): number {
  const date = new Date(unixSeconds * 1000);
  date.setUTCMonth(date.getUTCMonth() + months);
  return Math.floor(date.getTime() / 1000);
}

/** Decodes Stripe's form encoding (`items[0][price]=x`, `expand[]=customer`) into nested objects. */
function parseForm(encoded: string): Form {
  const form: Form = {};
  for (const [key, value] of new URLSearchParams(encoded)) {
    const path = key.replace(/\]/g, '').split('[');
    let node = form;
    for (const [i, part] of path.entries()) {
      const name = part === '' ? String(Object.keys(node).length) : part;
      if (i === path.length - 1) {
        node[name] = value;
      } else {
        const next = node[name];
        node = typeof next === 'object' ? next : (node[name] = {});
      }
    }
  }
  return form;
}

/** Values of a form array (`x[0]`, `x[1]`, ...) in index order; a scalar is a one-element list. */
const formList = (value: string | Form | undefined): Array<string | Form> =>
  value === undefined ? [] : typeof value === 'string' ? [value] : Object.values(value);

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null;

function stripeErrorBody(status: number, message: string, code?: string, param?: string) {
  const type = status >= 500 ? 'api_error' : 'invalid_request_error';
  const docUrl = code && `https://stripe.com/docs/error-codes/${code.replace(/_/g, '-')}`;
  return { error: { type, message, ...(code && { code, doc_url: docUrl }), ...(param && { param }) } };
}

function faultMessage(status: number): [string, string?] {
  if (status === 429) return ['Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.', 'rate_limit'];
  if (status >= 500) return ['Sorry, something went wrong. We\'ve already been notified of the problem.'];
  return [`Injected failure (${status}).`];
}

const UPDATABLE = new Set(['items', 'cancel_at_period_end', 'metadata', 'proration_behavior', 'expand']);

export class StripeEmulator {
  readonly calls: Call[] = [];
  /** Customer portal sessions made (POST /v1/billing_portal/sessions), newest last. */
  readonly portalSessions: { id: string; customer: string; return_url: string | null; url: string }[] = [];
  private readonly store = new Map<string, StoredObject>();
  private readonly lineItems = new Map<string, LineItem[]>();
  private faults = { remaining: 0, status: 500, headers: {} as OutgoingHttpHeaders };
  private latencyMs = 0;

  constructor(private readonly server: Server, readonly apiKey: string, readonly apiVersion: string) {
    server.on('request', (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res).catch(() => res.destroy()));
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The next `n` requests answer `status` with a Stripe error body (and the given headers, e.g. Retry-After). */
  failNext(n: number, status: number, headers: OutgoingHttpHeaders = {}): void {
    this.faults = { remaining: n, status, headers };
  }

  /** Every following request waits `ms` before it is answered (0 turns it off). */
  delay(ms: number): void {
    this.latencyMs = ms;
  }

  createCustomer({ email = null, name = null, metadata = {} }: { email?: string | null; name?: string | null; metadata?: Metadata } = {}): Customer {
    const customer: Customer = {
      id: randomId('cus_', 14), object: 'customer', address: null, balance: 0, created: now(), currency: null,
      default_source: null, delinquent: false, description: null, email,
      invoice_prefix: randomId('', 8).toUpperCase(),
      invoice_settings: { custom_fields: null, default_payment_method: null, footer: null, rendering_options: null },
      livemode: false, metadata: { ...metadata }, name, next_invoice_sequence: 1, phone: null, preferred_locales: [],
      shipping: null, tax_exempt: 'none', test_clock: null,
    };
    return this.save(customer);
  }

  /** What a customer changes in Stripe's dashboard (their email, their name). */
  updateCustomer(id: string, patch: { email?: string | null; name?: string | null }): Customer {
    const customer = this.find('customer', id);
    Object.assign(customer, patch);
    return structuredClone(customer);
  }

  createPrice({ id = randomId('price_'), unit_amount = 2000, currency = 'usd', interval = 'month', lookup_key = null, product = randomId('prod_', 14) }:
    { id?: string; unit_amount?: number; currency?: string; interval?: 'month' | 'year'; lookup_key?: string | null; product?: string } = {}): Price {
    const price: Price = {
      id, object: 'price', active: true, billing_scheme: 'per_unit', created: now(), currency, custom_unit_amount: null,
      livemode: false, lookup_key, metadata: {}, nickname: null, product,
      recurring: { interval, interval_count: 1, meter: null, trial_period_days: null, usage_type: 'licensed' },
      tax_behavior: 'unspecified', tiers_mode: null, transform_quantity: null, type: 'recurring',
      unit_amount, unit_amount_decimal: String(unit_amount),
    };
    return this.save(price);
  }

  /** `price` is a price id; an unknown one is created (monthly, 2000 usd). */
  createSubscription({ customer, price, status = 'active', metadata = {} }:
    { customer: string; price: string; status?: SubscriptionStatus; metadata?: Metadata }): Subscription {
    this.find('customer', customer);
    const created = now();
    const id = randomId('sub_');
    const subscription: Subscription = {
      id, object: 'subscription', application: null, billing_cycle_anchor: created, cancel_at: null,
      cancel_at_period_end: false, canceled_at: null, cancellation_details: { comment: null, feedback: null, reason: null },
      collection_method: 'charge_automatically', created, currency: 'usd', customer, default_payment_method: null,
      description: null, discounts: [], ended_at: null,
      items: { object: 'list', data: [], has_more: false, url: `/v1/subscription_items?subscription=${id}` },
      latest_invoice: null, livemode: false, metadata: { ...metadata }, pause_collection: null, schedule: null,
      start_date: created, status: 'active', test_clock: null, trial_end: null, trial_start: null,
    };
    this.addItem(subscription, this.priceOrCreate(price));
    subscription.currency = subscription.items.data[0]!.price.currency;
    if (status === 'canceled') this.cancel(subscription);
    else subscription.status = status;
    return this.save(subscription);
  }

  /**
   * A completed Checkout Session, as Stripe sends it in checkout.session.completed; `payment_status: 'unpaid'` is one
   * paid by a delayed method (completed, the money not yet there).
   */
  createCheckoutSession({ customer, subscription = null, mode = 'subscription', email, name, client_reference_id = null, metadata = {}, payment_status = 'paid' }:
    { customer: string; subscription?: string | null; mode?: 'subscription' | 'payment'; email?: string; name?: string;
      client_reference_id?: string | null; metadata?: Metadata; payment_status?: CheckoutSession['payment_status'] }): CheckoutSession {
    const buyer = this.find('customer', customer);
    const items = subscription ? this.find('subscription', subscription).items.data : [];
    const id = randomId('cs_test_', 58);
    const lineItems = items.map((item): LineItem => {
      const amount = item.price.unit_amount * item.quantity;
      return {
        id: randomId('li_'), object: 'item', amount_discount: 0, amount_subtotal: amount, amount_tax: 0, amount_total: amount,
        currency: item.price.currency, description: item.price.product, price: structuredClone(item.price), quantity: item.quantity,
      };
    });
    const amount = lineItems.reduce((sum, item) => sum + item.amount_total, 0);
    const created = now();
    const session: CheckoutSession = {
      id, object: 'checkout.session', amount_subtotal: amount, amount_total: amount, cancel_url: null, client_reference_id,
      created, currency: lineItems[0]?.currency ?? 'usd', customer, customer_creation: 'always',
      customer_details: { address: null, email: email ?? buyer.email, name: name ?? buyer.name, phone: null, tax_exempt: 'none', tax_ids: [] },
      customer_email: null, expires_at: created + 24 * 3600, invoice: null, livemode: false, metadata: { ...metadata }, mode,
      payment_intent: null, payment_status, status: 'complete', subscription,
      success_url: 'https://example.com/success', url: null,
    };
    this.lineItems.set(id, lineItems);
    return this.save(session);
  }

  updateSubscription(id: string, patch: SubscriptionPatch): Subscription {
    const subscription = this.find('subscription', id);
    if (patch.price !== undefined) subscription.items.data[0]!.price = this.priceOrCreate(patch.price);
    if (patch.cancel_at_period_end !== undefined) this.setCancelAtPeriodEnd(subscription, patch.cancel_at_period_end);
    if (patch.metadata) this.mergeMetadata(subscription, patch.metadata);
    if (patch.status === 'canceled') this.cancel(subscription);
    else if (patch.status) subscription.status = patch.status;
    return structuredClone(subscription);
  }

  getSubscription(id: string): Subscription {
    return structuredClone(this.find('subscription', id));
  }

  /** A Stripe Event envelope around a snapshot of `object`, as delivered to webhook endpoints. */
  event<T>(type: string, object: T, previous_attributes?: Record<string, unknown>): StripeEvent<T> {
    return {
      id: randomId('evt_'), object: 'event', api_version: this.apiVersion, created: now(),
      data: { object: structuredClone(object), ...(previous_attributes && { previous_attributes }) },
      livemode: false, pending_webhooks: 1, request: { id: null, idempotency_key: null }, type,
    };
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.close((err) => (err ? reject(err) : resolve()));
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const method = req.method ?? 'GET';
    this.calls.push({ method, path: url.pathname });
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (this.latencyMs > 0) await sleep(this.latencyMs);

    const headers = { 'Content-Type': 'application/json', 'Request-Id': randomId('req_', 14) };
    const send = (status: number, body: unknown, extra: OutgoingHttpHeaders = {}) =>
      res.writeHead(status, { ...headers, ...extra }).end(JSON.stringify(body));

    if (this.faults.remaining > 0) {
      this.faults.remaining--;
      return void send(this.faults.status, stripeErrorBody(this.faults.status, ...faultMessage(this.faults.status)), this.faults.headers);
    }
    try {
      this.authenticate(req.headers.authorization);
      const params = parseForm(method === 'POST' ? Buffer.concat(chunks).toString() : url.search.slice(1));
      const result = this.route(method, url.pathname, params);
      const expanded = formList(params.expand)
        .filter((path): path is string => typeof path === 'string')
        .reduce<unknown>((value, path) => this.expand(value, path.split('.')), structuredClone(result));
      send(200, expanded);
    } catch (err) {
      const error = err instanceof ApiError ? err : new ApiError(500, `Emulator failure: ${String(err)}`);
      send(error.status, stripeErrorBody(error.status, error.message, error.code, error.param));
    }
  }

  private authenticate(authorization: string | undefined): void {
    if (!authorization) {
      throw new ApiError(401, 'You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. \'Authorization: Bearer YOUR_SECRET_KEY\').');
    }
    const key = authorization.replace(/^Bearer /, '');
    if (key !== this.apiKey) throw new ApiError(401, `Invalid API Key provided: ${key.slice(0, 8)}****${key.slice(-4)}`);
  }

  private route(method: string, path: string, params: Form): unknown {
    const match = (pattern: RegExp) => pattern.exec(path)?.[1];
    let id: string | undefined;
    if (method === 'GET' && (id = match(/^\/v1\/customers\/([^/]+)$/))) return this.find('customer', id);
    if (method === 'GET' && (id = match(/^\/v1\/prices\/([^/]+)$/))) return this.find('price', id);
    if (method === 'GET' && (id = match(/^\/v1\/subscriptions\/([^/]+)$/))) return this.find('subscription', id);
    if (method === 'POST' && (id = match(/^\/v1\/subscriptions\/([^/]+)$/))) return this.updateViaApi(this.find('subscription', id), params);
    if (method === 'DELETE' && (id = match(/^\/v1\/subscriptions\/([^/]+)$/))) return this.cancelViaApi(id);
    if (method === 'GET' && (id = match(/^\/v1\/checkout\/sessions\/([^/]+)$/))) return this.find('checkout.session', id);
    if (method === 'GET' && (id = match(/^\/v1\/checkout\/sessions\/([^/]+)\/line_items$/))) {
      this.find('checkout.session', id);
      return { object: 'list', data: this.lineItems.get(id) ?? [], has_more: false, url: path };
    }
    if (method === 'POST' && path === '/v1/billing_portal/sessions') return this.billingPortalSession(params);
    throw new ApiError(404, `Unrecognized request URL (${method}: ${path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`);
  }

  /** POST /v1/billing_portal/sessions: a customer portal session of a known customer, as Stripe answers it. */
  private billingPortalSession(params: Form): object {
    const customer = params.customer;
    if (typeof customer !== 'string') throw new ApiError(400, 'Missing required param: customer.', 'parameter_missing', 'customer');
    this.find('customer', customer);
    const id = randomId('bps_', 24);
    const session = {
      id,
      object: 'billing_portal.session',
      configuration: 'bpc_emulated',
      created: Math.floor(Date.now() / 1000),
      customer,
      livemode: false,
      locale: null,
      on_behalf_of: null,
      return_url: typeof params.return_url === 'string' ? params.return_url : null,
      url: `${this.url}/p/session/${id}`,
    };
    this.portalSessions.push(session);
    return session;
  }

  private updateViaApi(subscription: Subscription, params: Form): Subscription {
    for (const key of Object.keys(params)) {
      if (!UPDATABLE.has(key)) throw new ApiError(400, `Received unknown parameter: ${key}`, 'parameter_unknown', key);
    }
    if (subscription.status === 'canceled' && Object.keys(params).some((key) => key !== 'metadata' && key !== 'expand')) {
      throw new ApiError(400, 'A canceled subscription can only update its cancellation_details and metadata.');
    }
    // Validate everything before changing anything, as Stripe does.
    const itemChanges = formList(params.items).map((item, i) => {
      const priceId = typeof item === 'object' ? item.price : undefined;
      if (typeof item !== 'object' || typeof priceId !== 'string') {
        throw new ApiError(400, `Missing required param: items[${i}][price].`, 'parameter_missing', `items[${i}][price]`);
      }
      const price = this.store.get(priceId);
      if (price?.object !== 'price') throw new ApiError(400, `No such price: '${priceId}'`, 'resource_missing', `items[${i}][price]`);
      const itemId = typeof item.id === 'string' ? item.id : undefined;
      const existing = itemId === undefined ? undefined : subscription.items.data.find((candidate) => candidate.id === itemId);
      if (itemId !== undefined && !existing) {
        throw new ApiError(400, `No such subscription_item: '${itemId}'`, 'resource_missing', `items[${i}][id]`);
      }
      return { existing, price };
    });
    const cancelAtPeriodEnd = params.cancel_at_period_end;
    if (cancelAtPeriodEnd !== undefined && cancelAtPeriodEnd !== 'true' && cancelAtPeriodEnd !== 'false') {
      throw new ApiError(400, `Invalid boolean: ${JSON.stringify(cancelAtPeriodEnd)}`, undefined, 'cancel_at_period_end');
    }

    for (const { existing, price } of itemChanges) {
      if (existing) existing.price = price;
      else this.addItem(subscription, price);
    }
    if (cancelAtPeriodEnd !== undefined) this.setCancelAtPeriodEnd(subscription, cancelAtPeriodEnd === 'true');
    if (typeof params.metadata === 'object') {
      this.mergeMetadata(subscription, Object.fromEntries(Object.entries(params.metadata).filter(([, v]) => typeof v === 'string')) as Metadata);
    }
    return subscription;
  }

  private cancelViaApi(id: string): Subscription {
    const subscription = this.find('subscription', id);
    // Stripe treats a canceled subscription as gone for cancellation purposes.
    if (subscription.status === 'canceled') throw new ApiError(404, `No such subscription: '${id}'`, 'resource_missing', 'id');
    this.cancel(subscription);
    return subscription;
  }

  private cancel(subscription: Subscription): void {
    const at = now();
    subscription.status = 'canceled';
    subscription.canceled_at = at;
    subscription.ended_at = at;
    subscription.cancellation_details.reason = 'cancellation_requested';
  }

  private setCancelAtPeriodEnd(subscription: Subscription, value: boolean): void {
    subscription.cancel_at_period_end = value;
    subscription.cancel_at = value ? subscription.items.data[0]!.current_period_end : null;
    subscription.canceled_at = value ? now() : null;
  }

  private mergeMetadata(subscription: Subscription, metadata: Metadata): void {
    for (const [key, value] of Object.entries(metadata)) {
      if (value === '') delete subscription.metadata[key];
      else subscription.metadata[key] = value;
    }
  }

  private addItem(subscription: Subscription, price: Price): void {
    const start = now();
    subscription.items.data.push({
      id: randomId('si_', 14), object: 'subscription_item', created: start,
      current_period_end: addMonths(start, price.recurring.interval === 'year' ? 12 : 1), current_period_start: start,
      discounts: [], metadata: {}, price, quantity: 1, subscription: subscription.id, tax_rates: [],
    });
  }

  private priceOrCreate(id: string): Price {
    const existing = this.store.get(id);
    return existing?.object === 'price' ? existing : this.createPrice({ id });
  }

  private find<K extends StoredObject['object']>(kind: K, id: string): Extract<StoredObject, { object: K }> {
    const found = this.store.get(id);
    if (found?.object !== kind) throw new ApiError(404, `No such ${kind}: '${id}'`, 'resource_missing', 'id');
    return found as Extract<StoredObject, { object: K }>;
  }

  private save<T extends StoredObject>(object: T): T {
    this.store.set(object.id, object);
    return structuredClone(object);
  }

  /** Replaces ids along `path` (e.g. ['customer'] or ['data', 'price']) with the objects they name. */
  private expand(value: unknown, path: string[]): unknown {
    if (Array.isArray(value)) return value.map((element) => this.expand(element, path));
    const [key, ...rest] = path;
    if (key === undefined || !isRecord(value)) return value;
    const field = value[key];
    const target = typeof field === 'string' ? this.store.get(field) : undefined;
    return { ...value, [key]: this.expand(target ? structuredClone(target) : field, rest) };
  }
}

export async function startStripeEmulator(opts: { apiKey?: string; apiVersion?: string } = {}): Promise<StripeEmulator> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return new StripeEmulator(server, opts.apiKey ?? EMULATOR_API_KEY, opts.apiVersion ?? Stripe.API_VERSION);
}

/** The Stripe-Signature header for `payload`, made by the stripe package exactly as Stripe makes it. */
export function signedWebhook(payload: string, secret: string, opts: { timestamp?: number } = {}): string {
  return Stripe.webhooks.generateTestHeaderString({ payload, secret, ...opts });
}
