/**
 * Intake and the welcome email at their edges: a checkout whose customer has no email address, a trialing
 * subscription, an instance that never got a database, and an SMTP server that refuses mail for a while or for good.
 */
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { INSTANCE_SECRETS, instanceOwner } from '../../src/instances/secrets.ts';
import { DEFAULT_PRICE_IDS } from '../../core/plans.ts';
import { Arrivals } from '../support/arrivals.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { waitForIncidents } from '../support/jobWaits.ts';

const KEY_IN_MAIL = /claw_[0-9A-Za-z]{43}/;

interface Mail {
  to: string[];
  subject: string;
  text: string;
}

interface Refusal {
  recipient: string;
  /** RCPT TO (the recipient refused), or the end of DATA (the message refused). */
  stage: 'rcpt' | 'data';
  code: number;
  remaining: number;
}

/** An SMTP server that accepts every mail, except those a test tells it to refuse, and counts its refusals. */
async function startMailServer() {
  const arrivals = new Arrivals<Mail>((mails) => mails.map((m) => `"${m.subject}" to ${m.to.join(', ')}`).join('; ') || 'none');
  const refusals: Refusal[] = [];
  const refused: string[] = [];
  const refusal = (recipients: string[], stage: Refusal['stage']): Error | null => {
    const rule = refusals.find((r) => r.stage === stage && r.remaining > 0 && recipients.includes(r.recipient));
    if (!rule) return null;
    rule.remaining--;
    refused.push(rule.recipient);
    return Object.assign(new Error(rule.code < 500 ? 'Try again later' : 'Mailbox unavailable'), { responseCode: rule.code });
  };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onRcptTo(address, _session, callback) {
      callback(refusal([address.address], 'rcpt') ?? undefined);
    },
    onData(stream, session, callback) {
      const to = session.envelope.rcptTo.map((r) => r.address);
      simpleParser(stream).then((mail) => {
        const refused = refusal(to, 'data');
        if (refused) return callback(refused);
        arrivals.add({ to, subject: mail.subject ?? '', text: mail.text ?? '' });
        callback();
      }, callback);
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `smtp://127.0.0.1:${(server.server.address() as AddressInfo).port}`,
    mails: arrivals.items,
    waitFor: (predicate: (mail: Mail) => boolean) => arrivals.waitFor(predicate, 30_000),
    refuse: (recipient: string, stage: Refusal['stage'], code: number, times: number) => void refusals.push({ recipient, stage, code, remaining: times }),
    refusedFor: (recipient: string) => refused.filter((r) => r === recipient).length,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('intake and welcome email edges', function () {
  this.timeout(90_000);
  let h: Harness;
  let smtp: Awaited<ReturnType<typeof startMailServer>>;

  before(async () => {
    smtp = await startMailServer();
    h = await startHarness({ SMTP_URL: smtp.url, ARCHIVE_AFTER: '1s', PURGE_AFTER: '2s' });
  });
  after(async () => {
    await h?.close();
    await smtp?.close();
  });

  const welcomes = (email: string) => smtp.mails.filter((m) => m.to.includes(email) && m.subject === 'Your Clawdbot is ready');
  const slackAbout = (text: string) => h.slack.posts.filter((p) => (p.text ?? '').includes(text));
  const alertMailsAbout = (text: string) => smtp.mails.filter((m) => m.to.includes('ops@clawdbot.test') && m.text.includes(text));

  async function stepAttempts(instanceId: string, step: string): Promise<number> {
    const { rows } = await h.db.query('SELECT attempts FROM steps WHERE instance_id = $1 AND name = $2', [instanceId, step]);
    return rows[0].attempts;
  }

  /** A paid checkout of a Stripe customer without an email address; the intake fails it. */
  async function checkoutWithoutEmail(name: string) {
    const customer = h.stripe.createCustomer({ name });
    const subscription = h.stripe.createSubscription({ customer: customer.id, price: DEFAULT_PRICE_IDS.starter });
    const session = h.stripe.createCheckoutSession({ customer: customer.id, subscription: subscription.id });
    expect(session.customer_details.email).to.equal(null);
    const event = h.stripe.event('checkout.session.completed', session);
    expect((await h.deliver(event)).status).to.equal(200);
    const failed = await h.waitForStatus(customer.id, ['failed', 'active']);
    return { customerId: customer.id, eventId: event.id, failed };
  }

  it('fails a checkout whose customer has no email address, with a clear reason and one alert', async () => {
    const { customerId, failed } = await checkoutWithoutEmail('Nemo');
    expect(failed.failure).to.deep.equal({
      step: 'resolve-customer',
      reason: `Stripe customer ${customerId} has no email address to send the welcome email to`,
    });
    expect(await waitForIncidents(h, failed.instanceId, 'instance.failed')).to.have.length(1);
    expect(slackAbout(customerId)).to.have.length(1);
    expect(slackAbout(customerId)[0]!.text).to.include('resolve-customer').and.include('no email address');
    expect(alertMailsAbout(customerId)).to.have.length(1);
    const { rows } = await h.db.query('SELECT database_name, service_id FROM instances WHERE id = $1', [failed.instanceId]);
    expect(rows[0]).to.deep.equal({ database_name: null, service_id: null }); // nothing was started
  });

  it('provisions a checkout without an email once the customer adds one in Stripe and an operator retries it', async () => {
    const { customerId, eventId, failed } = await checkoutWithoutEmail('Nia');
    h.stripe.updateCustomer(customerId, { email: 'nia@example.com' }); // what the customer does in Stripe's dashboard
    expect((await h.admin(`/api/admin/instances/${failed.instanceId}/retry`, { method: 'POST' })).status).to.equal(202);
    await h.completedJob('stripe-events', eventId);
    const active = await h.waitForStatus(customerId, ['active', 'failed'], 60_000);
    expect(active.status, JSON.stringify(active.failure)).to.equal('active');
    expect(active.instanceId).to.equal(failed.instanceId);
    const welcome = await smtp.waitFor((m) => m.to.includes('nia@example.com'));
    expect(welcome.text).to.include('Hello Nia').and.match(KEY_IN_MAIL);
    const { rows } = await h.db.query('SELECT email FROM customers WHERE stripe_customer_id = $1', [customerId]);
    expect(rows[0].email).to.equal('nia@example.com');
    expect(slackAbout(customerId)).to.have.length(1);
  });

  it('provisions a trialing subscription', async () => {
    const customer = h.stripe.createCustomer({ email: 'tia@example.com' });
    const subscription = h.stripe.createSubscription({ customer: customer.id, price: DEFAULT_PRICE_IDS.pro, status: 'trialing' });
    const session = h.stripe.createCheckoutSession({ customer: customer.id, subscription: subscription.id });
    await h.deliver(h.stripe.event('checkout.session.completed', session));

    const view = await h.waitForStatus(customer.id, ['active', 'failed'], 60_000);
    expect(view.status, JSON.stringify(view.failure)).to.equal('active');
    const key = KEY_IN_MAIL.exec((await smtp.waitFor((m) => m.to.includes('tia@example.com'))).text)![0];
    const status = await fetch(`${view.accessUrl}/status`, { headers: { authorization: `Bearer ${key}` } });
    expect(status.status).to.equal(200);
    expect(((await status.json()) as { plan: string }).plan).to.equal('pro');
    const { rows } = await h.db.query('SELECT status FROM subscriptions WHERE stripe_subscription_id = $1', [subscription.id]);
    expect(rows[0].status).to.equal('trialing');
  });

  it('archives an instance that never had a database as nothing, and purges it', async () => {
    const { customerId, subscriptionId, event } = h.checkout({ email: 'nell@example.com', price: 'price_not_ours' });
    await h.deliver(event);
    const failed = await h.waitForStatus(customerId, ['failed', 'active']);
    expect(failed.failure!.step).to.equal('resolve-plan');

    const canceled = h.stripe.updateSubscription(subscriptionId, { status: 'canceled' });
    await h.deliver(h.stripe.event('customer.subscription.deleted', canceled));
    await h.waitForStatus(customerId, ['purged'], 30_000);
    const { rows: trail } = await h.db.query('SELECT action, detail FROM audit WHERE instance_id = $1 ORDER BY id', [failed.instanceId]);
    expect(trail.map((r) => r.action)).to.deep.equal(['instance.created', 'instance.failed', 'instance.cancelled', 'instance.archived', 'instance.purged']);
    expect(trail[3].detail).to.deep.equal({ nothing: 'no database was ever made' });
    const { rows: archives } = await h.db.query('SELECT 1 FROM archives WHERE instance_id = $1', [failed.instanceId]);
    expect(archives).to.have.length(0);
    const { rows: instance } = await h.db.query('SELECT database_name, service_id FROM instances WHERE id = $1', [failed.instanceId]);
    expect(instance[0]).to.deep.equal({ database_name: null, service_id: null });
  });

  it('retries a welcome email the SMTP server refuses for a while (451), and sends it once', async () => {
    smtp.refuse('jon@example.com', 'data', 451, 2);
    const { customerId, event } = h.checkout({ email: 'jon@example.com' });
    await h.deliver(event);
    const view = await h.waitForStatus(customerId, ['active', 'failed'], 60_000);
    expect(view.status, JSON.stringify(view.failure)).to.equal('active');
    expect(smtp.refusedFor('jon@example.com')).to.equal(2);
    expect(await stepAttempts(view.instanceId, 'send-welcome-email')).to.equal(3);
    expect(welcomes('jon@example.com')).to.have.length(1);
    expect(slackAbout('jon@example.com')).to.have.length(0);
  });

  it('fails a welcome email the SMTP server refuses for good (550) with a readable reason, keeping the key for a retry', async () => {
    smtp.refuse('kai@example.com', 'rcpt', 550, 1);
    const { customerId, event } = h.checkout({ email: 'kai@example.com' });
    await h.deliver(event);
    const failed = await h.waitForStatus(customerId, ['failed', 'active'], 60_000);
    expect(failed.failure!.step).to.equal('send-welcome-email');
    expect(failed.failure!.reason).to.match(/^SMTP refused the mail: 550\b.*Mailbox unavailable/);
    expect(await stepAttempts(failed.instanceId, 'send-welcome-email')).to.equal(1); // final at once: no retries
    expect(await waitForIncidents(h, failed.instanceId, 'instance.failed')).to.have.length(1);
    expect(slackAbout('kai@example.com')[0]!.text).to.include('send-welcome-email').and.include('SMTP refused the mail');
    expect(await h.plane.ctx.secrets.get(instanceOwner(failed.instanceId), INSTANCE_SECRETS.pendingApiKey)).to.match(KEY_IN_MAIL);

    // The mailbox works again: an operator's retry sends the key that was kept.
    expect((await h.admin(`/api/admin/instances/${failed.instanceId}/retry`, { method: 'POST' })).status).to.equal(202);
    await h.completedJob('provision', `${failed.workspaceId}-send-welcome-email`);
    expect((await h.waitForStatus(customerId, ['active', 'failed'])).status).to.equal('active');
    const key = KEY_IN_MAIL.exec((await smtp.waitFor((m) => m.to.includes('kai@example.com'))).text)![0];
    expect((await fetch(`${failed.accessUrl}/status`, { headers: { authorization: `Bearer ${key}` } })).status).to.equal(200);
  });

  it('retries a welcome email whose recipient is greylisted (450 at RCPT TO), and sends it once', async () => {
    smtp.refuse('gil@example.com', 'rcpt', 450, 2);
    const { customerId, event } = h.checkout({ email: 'gil@example.com' });
    await h.deliver(event);
    const view = await h.waitForStatus(customerId, ['active', 'failed'], 60_000);
    expect(view.status, JSON.stringify(view.failure)).to.equal('active');
    expect(smtp.refusedFor('gil@example.com')).to.equal(2);
    expect(welcomes('gil@example.com')).to.have.length(1);
  });
});
