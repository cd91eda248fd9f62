/** Stripe intake: only verified events are recorded, each once, and a bad one changes nothing. */
import { expect } from 'chai';
import { DEFAULT_PRICE_IDS } from '../../core/plans.ts';
import { QUEUES } from '../../src/queues/catalogue.ts';
import { startHarness, waitUntil, WEBHOOK_SECRET, type Harness } from '../support/harness.ts';
import { signedWebhook } from '../emulators/stripeEmulator.ts';

describe('Stripe webhook intake', function () {
  this.timeout(60_000);
  let h: Harness;

  before(async () => {
    h = await startHarness();
  });
  after(async () => h?.close());

  async function recorded(): Promise<{ events: number; jobs: number }> {
    const { rows } = await h.db.query('SELECT count(*)::int AS n FROM stripe_events');
    const counts = await h.plane.ctx.queues.get(QUEUES.stripeEvents).getJobCounts();
    return { events: rows[0].n, jobs: Object.values(counts).reduce((a, b) => a + b, 0) };
  }

  /** A case whose body is signed with the right secret, now: only its content can refuse it. */
  function signed(what: string, body: string): [string, string, Record<string, string>][] {
    return [[what, body, { 'stripe-signature': signedWebhook(body, WEBHOOK_SECRET) }]];
  }

  it('refuses forged, stale, future, unsigned, malformed, oversized and unstorable deliveries, and records nothing', async () => {
    const before = await recorded();
    const { event } = h.checkout({ email: 'mallory@example.com' });
    const payload = JSON.stringify(event);
    const now = Math.floor(Date.now() / 1000);
    const huge = JSON.stringify({ ...event, padding: 'x'.repeat(2 * 1024 * 1024) });
    const cases: [string, string, Record<string, string>][] = [
      ['forged signature', payload, { 'stripe-signature': signedWebhook(payload, 'whsec_not_the_real_secret') }],
      ['stale timestamp', payload, { 'stripe-signature': signedWebhook(payload, WEBHOOK_SECRET, { timestamp: now - 600 }) }],
      ['missing header', payload, {}],
      ['tampered body', payload.replace('mallory', 'mallorx'), { 'stripe-signature': signedWebhook(payload, WEBHOOK_SECRET) }],
      ['malformed JSON', '{"id": "evt_1", ', { 'stripe-signature': signedWebhook('{"id": "evt_1", ', WEBHOOK_SECRET) }],
      ['2 MB body', huge, { 'stripe-signature': signedWebhook(huge, WEBHOOK_SECRET) }],
      ['timestamp 10 minutes ahead', payload, { 'stripe-signature': signedWebhook(payload, WEBHOOK_SECRET, { timestamp: now + 600 }) }],
      ['empty v1', payload, { 'stripe-signature': `t=${now},v1=` }],
      ['two timestamps', payload, { 'stripe-signature': `t=${now - 900},${signedWebhook(payload, WEBHOOK_SECRET, { timestamp: now - 900 }).split(',')[1]},t=${now}` }],
      ...signed('a NUL escape', payload.replace('"mallory@example.com"', '"mallory\\u0000@example.com"')),
      ...signed('created 1e20', payload.replace(/"created":\d+/, '"created":1e20')),
      ...signed('nesting 100,000 deep', payload.replace(/}$/, `,"deep":${'['.repeat(100_000)}${']'.repeat(100_000)}}`)),
    ];
    const expected: Record<string, string> = {
      'timestamp 10 minutes ahead': 'invalid_signature',
      'empty v1': 'invalid_signature',
      'two timestamps': 'invalid_signature',
      'a NUL escape': 'invalid_event',
      'created 1e20': 'invalid_event',
      'nesting 100,000 deep': 'invalid_event',
    };
    for (const [what, body, headers] of cases) {
      const response = await h.postWebhook(body, headers);
      expect(response.status, what).to.be.within(400, 499);
      const answer = (await response.json()) as { error: string; reason: string };
      expect(answer.error, what).to.equal(expected[what] ?? answer.error).and.be.a('string');
      expect(answer.reason, what).to.be.a('string');
    }
    expect(await recorded()).to.deep.equal(before);
    const { rows } = await h.db.query('SELECT count(*)::int AS n FROM customers');
    expect(rows[0].n).to.equal(0);
  });

  it('answers 400, never 500, to a path with a NUL or broken percent-encoding, on every kind of route', async () => {
    const before = await h.db.query('SELECT count(*)::int AS n FROM audit');
    const paths: [string, string][] = [
      ['GET', '/api/customers/%00/instance'],
      ['POST', '/api/admin/customers/a%00b/deprovision'],
      ['POST', '/api/admin/instances/%00/retry'],
      ['GET', '/api/customers/%E0%A4%A/instance'],
      ['GET', '/welcome/%00'],
    ];
    for (const [method, pathname] of paths) {
      const response = await h.admin(pathname, { method });
      expect(response.status, pathname).to.equal(400);
      expect(((await response.json()) as { error: string }).error, pathname).to.equal('invalid_path');
    }
    expect((await h.db.query('SELECT count(*)::int AS n FROM audit')).rows).to.deep.equal(before.rows);
  });

  it('processes the same event delivered 5 times at once exactly once: one instance, one database, one email', async () => {
    const { customerId, event } = h.checkout({ email: 'dave@example.com', name: 'Dave', plan: 'pro' });
    const responses = await Promise.all(Array.from({ length: 5 }, () => h.deliver(event)));
    expect(responses.map((r) => r.status)).to.deep.equal([200, 200, 200, 200, 200]);
    const answers = (await Promise.all(responses.map((r) => r.json()))) as { duplicate: boolean }[];
    expect(answers.filter((a) => !a.duplicate)).to.have.length(1);

    const view = await h.waitForStatus(customerId, ['active', 'failed']);
    expect(view.status).to.equal('active');
    // The event's job and the whole flow it started are done: every email of this delivery has been sent.
    await h.completedJob(QUEUES.stripeEvents, (event as { id: string }).id);
    await h.completedJob(QUEUES.provision, `${view.workspaceId}-finalize`);

    const instances = await h.db.query(
      'SELECT i.database_name FROM instances i JOIN customers c ON c.id = i.customer_id WHERE c.stripe_customer_id = $1',
      [customerId],
    );
    expect(instances.rows).to.have.length(1);
    const databases = await h.db.query('SELECT count(*)::int AS n FROM pg_database WHERE datname = $1', [instances.rows[0].database_name]);
    expect(databases.rows[0].n).to.equal(1);
    expect(h.smtp.messages.filter((m) => m.to.includes('dave@example.com'))).to.have.length(1);
    const services = await h.db.query('SELECT count(*)::int AS n FROM local_services');
    expect(services.rows[0].n).to.equal(1);
  });

  it('acknowledges events it does not act on without starting anything', async () => {
    const customer = h.stripe.createCustomer({ email: 'erin@example.com' });
    const session = h.stripe.createCheckoutSession({ customer: customer.id, mode: 'payment', email: 'erin@example.com' });
    const payment = await h.deliver(h.stripe.event('checkout.session.completed', session));
    expect(payment.status).to.equal(200);
    const other = await h.deliver(h.stripe.event('customer.created', customer));
    expect(await other.json()).to.include({ handled: false });

    const job = await h.plane.ctx.queues.get(QUEUES.stripeEvents).getJob(
      ((await h.db.query("SELECT id FROM stripe_events WHERE payload->'data'->'object'->>'mode' = 'payment'")).rows[0] as { id: string }).id,
    );
    await waitUntil(async () => (await job!.getState()) === 'completed');
    const { rows } = await h.db.query('SELECT count(*)::int AS n FROM customers WHERE email = $1', ['erin@example.com']);
    expect(rows[0].n).to.equal(0);
  });

  it('fails an unknown price with a clear reason and one alert, without crashing anything', async () => {
    const { customerId, subscriptionId, event } = h.checkout({ email: 'frank@example.com', price: 'price_not_ours' });
    expect((await h.deliver(event)).status).to.equal(200);
    const view = await h.waitForStatus(customerId, ['failed']);
    expect(view.failure!.step).to.equal('resolve-plan');
    expect(view.failure!.reason).to.include('price_not_ours');

    const post = await h.slack.waitFor((p) => (p.text ?? '').includes('frank@example.com'));
    expect(post.text).to.include('price_not_ours').and.include('/admin/queues/queue/stripe-events/');
    await h.smtp.waitFor((m) => m.to.includes('ops@clawdbot.test') && m.subject.includes('frank@example.com'));
    const { rows } = await h.db.query('SELECT id FROM stripe_events WHERE payload::text LIKE $1', [`%${customerId}%`]);
    const job = await h.plane.ctx.queues.get(QUEUES.stripeEvents).getJob(rows[0].id);
    await waitUntil(async () => (await job!.getState()) === 'failed');
    expect((await h.plane.ctx.queues.get(QUEUES.stripeEvents).getJob(rows[0].id))!.failedReason).to.include('is not one of');

    // Stripe now has the subscription on a real price: the operator's retry re-reads it and provisions.
    h.stripe.updateSubscription(subscriptionId, { price: DEFAULT_PRICE_IDS.pro });
    const retried = await h.admin(`/api/admin/instances/${view.instanceId}/retry`, { method: 'POST' });
    expect(retried.status).to.equal(202);
    const fixed = await h.waitForStatus(customerId, ['active']);
    expect(fixed.plan).to.equal('pro');
    await h.smtp.waitFor((m) => m.to.includes('frank@example.com') && m.subject === 'Your Clawdbot is ready');

    // Still serving: a good customer after the bad one is provisioned.
    const next = h.checkout({ email: 'gina@example.com' });
    await h.deliver(next.event);
    expect((await h.waitForStatus(next.customerId, ['active', 'failed'])).status).to.equal('active');
    expect(h.slack.posts.filter((p) => (p.text ?? '').includes('frank@example.com'))).to.have.length(1);
  });

  it('retries while Stripe is down, then alerts once about the event, and a later retry provisions', async () => {
    const { customerId, event } = h.checkout({ email: 'kim@example.com' });
    h.stripe.failNext(1_000, 503);
    await h.deliver(event);
    const eventId = (event as { id: string }).id;
    const post = await h.slack.waitFor((p) => (p.text ?? '').includes(eventId));
    expect(post.text).to.include('Stripe event could not be acted on').and.include(customerId).and.include('stripe-intake');
    const job = (await h.plane.ctx.queues.get(QUEUES.stripeEvents).getJob(eventId))!;
    expect(await job.getState()).to.equal('failed');
    expect(job.attemptsMade).to.equal(3);
    await h.smtp.waitFor((m) => m.to.includes('ops@clawdbot.test') && m.text.includes(eventId));
    expect((await h.admin(`/api/customers/${customerId}/instance`)).status).to.equal(404); // nothing half-made

    h.stripe.failNext(0, 503);
    await job.retry('failed', { resetAttemptsMade: true });
    expect((await h.waitForStatus(customerId, ['active', 'failed'])).status).to.equal('active');
    expect(h.slack.posts.filter((p) => (p.text ?? '').includes(eventId))).to.have.length(1);
  });

  it('waits for the payment of a delayed-payment checkout, then provisions', async () => {
    const customer = h.stripe.createCustomer({ email: 'lea@example.com', name: 'Lea' });
    const subscription = h.stripe.createSubscription({ customer: customer.id, price: DEFAULT_PRICE_IDS.starter, status: 'incomplete' });
    const session = h.stripe.createCheckoutSession({ customer: customer.id, subscription: subscription.id, email: 'lea@example.com' });
    const unpaid = h.stripe.event('checkout.session.completed', { ...session, payment_status: 'unpaid' });
    await h.deliver(unpaid);
    const job = (await h.plane.ctx.queues.get(QUEUES.stripeEvents).getJob(unpaid.id))!;
    await waitUntil(async () => (await job.getState()) === 'completed');
    expect((await h.plane.ctx.queues.get(QUEUES.stripeEvents).getJob(unpaid.id))!.returnvalue).to.have.property('deferred');
    expect((await h.admin(`/api/customers/${customer.id}/instance`)).status).to.equal(404);

    h.stripe.updateSubscription(subscription.id, { status: 'active' });
    await h.deliver(h.stripe.event('checkout.session.async_payment_succeeded', session));
    expect((await h.waitForStatus(customer.id, ['active', 'failed'])).status).to.equal('active');
    await h.smtp.waitFor((m) => m.to.includes('lea@example.com'));
  });
});

