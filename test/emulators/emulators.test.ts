// Proves each emulator against the real client library the product uses.
import { expect } from 'chai';
import Stripe from 'stripe';
import nodemailer from 'nodemailer';
import { signedWebhook, startStripeEmulator, type StripeEmulator } from './stripeEmulator.ts';
import { startSmtpCapture, type SmtpCapture } from './smtpCapture.ts';
import { startSlackReceiver, type SlackReceiver } from './slackReceiver.ts';

describe('test emulators', () => {
  describe('Stripe emulator with the stripe package', () => {
    let emulator: StripeEmulator;
    const client = (key = 'sk_test_emulator') =>
      new Stripe(key, { host: '127.0.0.1', port: emulator.port, protocol: 'http', maxNetworkRetries: 1 });

    beforeEach(async () => {
      emulator = await startStripeEmulator();
    });
    afterEach(() => emulator.close());

    it('retrieves a subscription with its price and inlines an expanded customer', async () => {
      const customer = emulator.createCustomer({ email: 'ada@example.com', name: 'Ada' });
      const created = emulator.createSubscription({ customer: customer.id, price: 'price_pro' });

      const subscription = await client().subscriptions.retrieve(created.id, { expand: ['customer'] });

      expect(subscription.status).to.equal('active');
      expect(subscription.items.data[0]?.price.id).to.equal('price_pro');
      expect(subscription.items.data[0]?.current_period_end).to.be.greaterThan(subscription.created);
      expect((subscription.customer as Stripe.Customer).email).to.equal('ada@example.com');
      expect(emulator.calls).to.deep.equal([{ method: 'GET', path: `/v1/subscriptions/${created.id}` }]);
    });

    it('reads a completed checkout session and its line items', async () => {
      const customer = emulator.createCustomer({ email: 'ada@example.com' });
      const subscription = emulator.createSubscription({ customer: customer.id, price: 'price_pro' });
      const created = emulator.createCheckoutSession({ customer: customer.id, subscription: subscription.id, mode: 'subscription' });

      const session = await client().checkout.sessions.retrieve(created.id);
      const lineItems = await client().checkout.sessions.listLineItems(created.id);

      expect(session).to.include({ mode: 'subscription', status: 'complete', subscription: subscription.id });
      expect(session.customer_details?.email).to.equal('ada@example.com');
      expect(lineItems.data.map((item) => item.price?.id)).to.deep.equal(['price_pro']);
    });

    it('changes the price, schedules cancellation and cancels through the API', async () => {
      const customer = emulator.createCustomer({ email: 'ada@example.com' });
      const created = emulator.createSubscription({ customer: customer.id, price: 'price_pro' });
      emulator.createPrice({ id: 'price_team', unit_amount: 9900 });
      const stripe = client();

      const itemId = created.items.data[0]!.id;
      const changed = await stripe.subscriptions.update(created.id, {
        items: [{ id: itemId, price: 'price_team' }], proration_behavior: 'none', metadata: { plan: 'team' },
      });
      expect(changed.items.data.map((item) => item.price.id)).to.deep.equal(['price_team']);
      expect(changed.metadata).to.deep.equal({ plan: 'team' });

      const scheduled = await stripe.subscriptions.update(created.id, { cancel_at_period_end: true });
      expect(scheduled.cancel_at_period_end).to.equal(true);
      expect(scheduled.cancel_at).to.equal(scheduled.items.data[0]?.current_period_end);

      const canceled = await stripe.subscriptions.cancel(created.id);
      expect(canceled.status).to.equal('canceled');
      expect(emulator.getSubscription(created.id).ended_at).to.be.a('number');

      const again = await stripe.subscriptions.cancel(created.id).catch((err: unknown) => err);
      expect(again).to.be.instanceOf(Stripe.errors.StripeInvalidRequestError).and.include({ statusCode: 404 });
    });

    it('rejects unknown prices and unknown parameters like Stripe', async () => {
      const customer = emulator.createCustomer({ email: 'ada@example.com' });
      const { id } = emulator.createSubscription({ customer: customer.id, price: 'price_pro' });

      const unknownPrice = await client().subscriptions.update(id, { items: [{ price: 'price_nope' }] }).catch((err: unknown) => err);
      expect(unknownPrice).to.be.instanceOf(Stripe.errors.StripeInvalidRequestError).and.include({ code: 'resource_missing', param: 'items[0][price]' });

      const unknownParam = await client().subscriptions.update(id, { description: 'x' }).catch((err: unknown) => err);
      expect(unknownParam).to.include({ code: 'parameter_unknown', param: 'description' });
      expect(emulator.getSubscription(id).items.data[0]?.price.id).to.equal('price_pro');
    });

    it('answers 404 resource_missing for an unknown id and 401 for a wrong key', async () => {
      const missing = await client().subscriptions.retrieve('sub_missing').catch((err: unknown) => err);
      expect(missing).to.be.instanceOf(Stripe.errors.StripeInvalidRequestError);
      expect(missing).to.include({ statusCode: 404, code: 'resource_missing', type: 'StripeInvalidRequestError' });

      const unauthorized = await client('sk_test_wrong').customers.retrieve('cus_any').catch((err: unknown) => err);
      expect(unauthorized).to.be.instanceOf(Stripe.errors.StripeAuthenticationError).and.include({ statusCode: 401 });
    });

    it('injects a 500 that the client retries, and a 429 with Retry-After', async () => {
      const customer = emulator.createCustomer({ email: 'ada@example.com' });

      emulator.failNext(1, 500);
      expect((await client().customers.retrieve(customer.id)).id).to.equal(customer.id);
      expect(emulator.calls).to.have.length(2);

      emulator.failNext(1, 429, { 'Retry-After': '1' });
      const limited = await client().customers.retrieve(customer.id, {}, { maxNetworkRetries: 0 }).catch((err: unknown) => err);
      expect(limited).to.be.instanceOf(Stripe.errors.StripeRateLimitError);
      expect((limited as Stripe.errors.StripeError).headers?.['retry-after']).to.equal('1');
    });

    it('adds latency that trips the client timeout', async () => {
      emulator.delay(300);
      const stripe = new Stripe('sk_test_emulator', { host: '127.0.0.1', port: emulator.port, protocol: 'http', timeout: 50, maxNetworkRetries: 0 });
      const slow = await stripe.customers.retrieve('cus_any').catch((err: unknown) => err);
      expect(slow).to.be.instanceOf(Stripe.errors.StripeConnectionError);
    });

    it('signs webhook events the way constructEvent verifies them', () => {
      const customer = emulator.createCustomer({ email: 'ada@example.com', name: 'Ada' });
      const subscription = emulator.createSubscription({ customer: customer.id, price: 'price_pro' });
      const session = emulator.createCheckoutSession({ customer: customer.id, subscription: subscription.id, mode: 'subscription' });
      const secret = 'whsec_test_secret';
      const payload = JSON.stringify(emulator.event('checkout.session.completed', session));

      const event = client().webhooks.constructEvent(payload, signedWebhook(payload, secret), secret);
      expect(event.type).to.equal('checkout.session.completed');
      expect(event.id).to.match(/^evt_/);
      expect(event.data.object).to.include({ id: session.id, subscription: subscription.id, mode: 'subscription' });

      const tampered = payload.replace(subscription.id, 'sub_forged');
      expect(() => client().webhooks.constructEvent(tampered, signedWebhook(payload, secret), secret))
        .to.throw(Stripe.errors.StripeSignatureVerificationError);
    });
  });

  describe('SMTP capture with nodemailer', () => {
    let smtp: SmtpCapture;
    before(async () => {
      smtp = await startSmtpCapture();
    });
    after(() => smtp.close());

    it('receives and parses a message', async () => {
      const transport = nodemailer.createTransport(smtp.url);
      await transport.sendMail({
        from: '"Clawdbot" <noreply@clawdbot.test>', to: 'ada@example.com', bcc: 'ops@clawdbot.test',
        subject: 'Your assistant is ready', text: 'Hello Ada', html: '<p>Hello Ada</p>', headers: { 'X-Instance': 'inst_1' },
      });

      const mail = await smtp.waitFor((m) => m.subject === 'Your assistant is ready', 2000);
      expect(mail.text.trim()).to.equal('Hello Ada');
      expect(mail.html).to.contain('<p>Hello Ada</p>');
      expect(mail.to).to.deep.equal(['ada@example.com', 'ops@clawdbot.test']);
      expect(mail.from).to.contain('noreply@clawdbot.test');
      expect(mail.headers['x-instance']).to.equal('inst_1');
    });

    it('times out with a clear error when nothing matches', async () => {
      const err = await smtp.waitFor((m) => m.subject === 'never', 50).catch((e: Error) => e);
      expect(err).to.be.instanceOf(Error).with.property('message').that.matches(/nothing matching arrived within 50 ms \(received: "/);
    });
  });

  describe('Slack receiver with fetch', () => {
    let slack: SlackReceiver;
    beforeEach(async () => {
      slack = await startSlackReceiver();
    });
    afterEach(() => slack.close());

    const post = (body: string) =>
      fetch(slack.url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });

    it('records a post and answers ok', async () => {
      const res = await post(JSON.stringify({ text: 'Provisioning failed for sub_1' }));
      expect(res.status).to.equal(200);
      expect(await res.text()).to.equal('ok');
      const recorded = await slack.waitFor((p) => p.text?.includes('sub_1') ?? false, 1000);
      expect(recorded.text).to.equal('Provisioning failed for sub_1');
    });

    it('400s garbage and empty messages', async () => {
      const garbage = await post('not json');
      expect([garbage.status, await garbage.text()]).to.deep.equal([400, 'invalid_payload']);
      const empty = await post('{}');
      expect([empty.status, await empty.text()]).to.deep.equal([400, 'no_text']);
      expect(slack.posts).to.have.length(0);
    });

    it('injects failures', async () => {
      slack.failNext(1, 429, { 'Retry-After': '2' });
      const limited = await post(JSON.stringify({ text: 'hi' }));
      expect([limited.status, limited.headers.get('retry-after')]).to.deep.equal([429, '2']);
      expect((await post(JSON.stringify({ text: 'hi' }))).status).to.equal(200);
      expect(slack.attempts).to.equal(2);
      expect(slack.posts).to.have.length(1);
    });
  });
});
