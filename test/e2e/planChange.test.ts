/** Plan changes resize in place: limits, message limit, request rate, features and skills change; data and key stay. */
import { expect } from 'chai';
import { DEFAULT_PRICE_IDS } from '../../core/plans.ts';
import { QUEUES } from '../../src/queues/catalogue.ts';
import { startHarness, waitUntil, type Harness } from '../support/harness.ts';

describe('plan changes', function () {
  this.timeout(90_000);
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => h?.close());

  it('upgrades Starter → Pro and back in place (the running runtime takes each plan\'s request rate), keeping memories and the key; cancel_at_period_end changes nothing', async () => {
    const { customerId, subscriptionId, event } = h.checkout({ email: 'tess@example.com', name: 'Tess', plan: 'starter' });
    await h.deliver(event);
    const view = await h.waitForStatus(customerId, ['active', 'failed']);
    expect(view.status).to.equal('active');
    const key = /claw_[0-9A-Za-z]{43}/.exec((await h.smtp.waitFor((m) => m.to.includes('tess@example.com'))).text)![0];
    const call = (method: string, path: string, body?: unknown) =>
      fetch(`${view.accessUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        ...(body !== undefined && { body: JSON.stringify(body) }),
      }).catch(() => undefined);
    const planNow = async () => {
      const response = await call('GET', '/status');
      return response?.status === 200 ? ((await response.json()) as { plan: string; usage: { messageLimit: number } }) : undefined;
    };
    /** The key's rate as the runtime states it on an answer: RateLimit-Limit and RateLimit-Policy. */
    const rateNow = async () => {
      const response = (await call('GET', '/status'))!;
      expect(response.status).to.equal(200);
      return { limit: response.headers.get('ratelimit-limit'), policy: response.headers.get('ratelimit-policy') };
    };
    /**
     * Spends the key's bucket: every request the runtime said remained is served, and then it refuses with 429. The
     * bucket only refills, so the served count is at least what remained; the loop is bounded well above any plan's
     * limit (a refill of 1 to 5 a second cannot keep up with requests answered in milliseconds).
     */
    const spendBucket = async (limit: number) => {
      const first = (await call('GET', '/status'))!;
      const remaining = Number(first.headers.get('ratelimit-remaining'));
      let served = 0;
      let refused: Response | undefined;
      while (!refused && served < 3 * limit) {
        const response = (await call('GET', '/status'))!;
        await response.arrayBuffer();
        if (response.status === 429) refused = response;
        else served++;
      }
      expect(refused, `no 429 after ${served} requests`).not.to.equal(undefined);
      expect(refused!.headers.get('ratelimit-limit')).to.equal(String(limit));
      expect(Number(refused!.headers.get('retry-after'))).to.be.greaterThan(0);
      expect(served).to.be.at.least(remaining);
      return { remaining, served };
    };

    expect(await rateNow()).to.deep.equal({ limit: '60', policy: '60;w=60' });
    expect((await call('POST', '/api/memory', { content: 'Tess prefers tea over coffee' }))!.status).to.equal(201);
    expect((await call('PUT', '/api/skills/gmail', { enabled: true }))!.status).to.equal(403);

    const changeTo = async (price: string) => {
      const subscription = h.stripe.updateSubscription(subscriptionId, { price });
      expect((await h.deliver(h.stripe.event('customer.subscription.updated', subscription))).status).to.equal(200);
    };

    await changeTo(DEFAULT_PRICE_IDS.pro);
    await waitUntil(async () => (await planNow())?.plan === 'pro', 20_000);
    expect((await planNow())!.usage.messageLimit).to.equal(20_000);
    expect((await call('PUT', '/api/skills/gmail', { enabled: true }))!.status).to.equal(200);
    const memories = (await (await call('GET', '/api/memory?q=tea'))!.json()) as { memories: { content: string }[] };
    expect(memories.memories.map((m) => m.content)).to.deep.equal(['Tess prefers tea over coffee']);
    const { rows } = await h.db.query('SELECT l.limits, i.plan FROM local_services l JOIN instances i ON i.service_id = l.name WHERE i.id = $1', [
      view.instanceId,
    ]);
    expect(rows[0]).to.deep.equal({ limits: { cpu: 1, memoryMb: 1024 }, plan: 'pro' });
    // The restarted runtime enforces Pro's 120 a minute: more than Starter's whole bucket is served before a 429.
    expect(await rateNow()).to.deep.equal({ limit: '120', policy: '120;w=60' });
    expect((await spendBucket(120)).served).to.be.greaterThan(60);

    await changeTo(DEFAULT_PRICE_IDS.starter);
    await waitUntil(async () => (await planNow())?.plan === 'starter', 20_000);
    expect((await planNow())!.usage.messageLimit).to.equal(5_000);
    expect(await rateNow()).to.deep.equal({ limit: '60', policy: '60;w=60' });
    const refused = await call('PUT', '/api/skills/gmail', { enabled: true });
    expect(refused!.status).to.equal(403);
    expect(((await refused!.json()) as { requiredPlan: string }).requiredPlan).to.equal('pro');

    // Cancelling at the period's end is not a cancellation yet.
    const pending = h.stripe.updateSubscription(subscriptionId, { cancel_at_period_end: true });
    const atPeriodEnd = h.stripe.event('customer.subscription.updated', pending);
    await h.deliver(atPeriodEnd);
    const acted = await h.completedJob(QUEUES.stripeEvents, atPeriodEnd.id);
    expect(acted.returnvalue).to.deep.equal({ unchanged: 'subscription active, plan starter' }); // no job started
    expect((await h.waitForStatus(customerId, ['active'])).plan).to.equal('starter');
    expect((await planNow())!.plan).to.equal('starter');
    const { rows: trail } = await h.db.query(`SELECT detail FROM audit WHERE instance_id = $1 AND action = 'instance.resized' ORDER BY id`, [
      view.instanceId,
    ]);
    expect(trail.map((r) => `${r.detail.from}→${r.detail.to}`)).to.deep.equal(['starter→pro', 'pro→starter']);
    // Back on Starter, its 60 a minute is enforced again.
    await spendBucket(60);
  });
});
