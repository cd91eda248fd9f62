/**
 * GET /metrics: Prometheus text whose numbers are what happened, read from where it landed (Postgres, BullMQ, the
 * counters every process adds to Redis); and those counters and the rate-limit periods on a real Redis.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { CounterStore } from '../../src/metrics/counterStore.ts';
import { MetricsFlusher } from '../../src/metrics/flusher.ts';
import { MetricsRecorder, recordFleetRun } from '../../src/metrics/recorder.ts';
import { RATE_LIMIT_GAP_MS, RedisRateLimitPeriods } from '../../src/queues/rateLimits.ts';
import { STEPS } from '../../src/queues/catalogue.ts';
import { ADMIN, deleteKeys, startHarness, type Harness } from '../support/harness.ts';
import { parsePrometheusText, sampleValue, type Family } from '../support/prometheusText.ts';

const METRICS_TOKEN = 'test-metrics-token-0123456789';

describe('GET /metrics (Railway and Neon emulated)', function () {
  this.timeout(120_000);
  let h: Harness;

  before(async () => {
    h = await startHarness({ METRICS_TOKEN }, { cloud: {} });
  });
  after(async () => h?.close());

  const scrape = (token?: string, scheme = 'Bearer') =>
    fetch(`${h.url}/metrics`, { headers: token === undefined ? {} : { authorization: `${scheme} ${token}` } });

  it('answers 401 JSON without ADMIN_TOKEN or METRICS_TOKEN', async () => {
    for (const response of [await scrape(), await scrape('wrong-token-0123456789'), await scrape(`${METRICS_TOKEN}x`), await scrape(METRICS_TOKEN, 'Basic')]) {
      expect(response.status).to.equal(401);
      expect(await response.json()).to.deep.include({ error: 'unauthorized' });
    }
    expect((await scrape(ADMIN.token)).status).to.equal(200);
  });

  it('shows what the test did: three active instances, one failed, the deliveries, provider calls, steps and fleet runs', async () => {
    // Three paying customers, one checkout on a price of no plan, a redelivery, an event not acted on, a forged one.
    const customers = ['mia', 'noa', 'ola'].map((name) => h.checkout({ email: `${name}@example.com`, plan: 'starter' }));
    const unknownPrice = h.checkout({ email: 'pia@example.com', price: 'price_not_a_plan' });
    const deliveries = await Promise.all([...customers, unknownPrice].map((c) => h.deliver(c.event)));
    expect(deliveries.map((r) => r.status)).to.deep.equal([200, 200, 200, 200]);
    expect(await (await h.deliver(customers[0]!.event)).json()).to.deep.include({ duplicate: true });
    expect((await h.deliver(h.stripe.event('customer.created', { id: 'cus_other', object: 'customer' }))).status).to.equal(200);
    expect((await h.postWebhook('{"id":"evt_forged"}', { 'stripe-signature': 't=1,v1=00' })).status).to.equal(400);
    await Promise.all(customers.map((c) => h.waitForStatus(c.customerId, ['active'], 90_000)));
    await h.waitForStatus(unknownPrice.customerId, ['failed']);
    // A fleet job's run, as the worker records it (the fleet jobs are off in tests).
    recordFleetRun('reconcile', 1_500);

    const response = await scrape(METRICS_TOKEN);
    expect(response.status).to.equal(200);
    expect(response.headers.get('content-type')).to.equal('text/plain; version=0.0.4; charset=utf-8');
    const families = parsePrometheusText(await response.text());
    const value = (name: string, labels: Record<string, string> = {}) => sampleValue(families, name, labels);
    const family = (name: string): Family => {
      const found = families.get(name);
      expect(found, `family ${name}`).to.not.equal(undefined);
      return found!;
    };

    for (const [name, type] of Object.entries({
      clawdbot_instances: 'gauge',
      clawdbot_active_instances_health: 'gauge',
      clawdbot_queue_jobs: 'gauge',
      clawdbot_step_duration_seconds: 'histogram',
      clawdbot_time_to_ready_seconds: 'histogram',
      clawdbot_failed_instances: 'gauge',
      clawdbot_provider_calls_total: 'counter',
      clawdbot_webhook_events_total: 'counter',
      clawdbot_fleet_run_duration_seconds: 'histogram',
      clawdbot_process_cpu_user_seconds_total: 'counter',
      clawdbot_nodejs_heap_size_used_bytes: 'gauge',
    })) {
      expect(family(name).type, name).to.equal(type);
      expect(family(name).help, name).to.not.equal('');
    }

    expect(value('clawdbot_instances', { status: 'active' })).to.equal(3);
    expect(value('clawdbot_instances', { status: 'failed' })).to.equal(1);
    expect(value('clawdbot_instances', { status: 'purged' })).to.equal(0);
    expect(value('clawdbot_active_instances_health', { state: 'unknown' })).to.equal(3); // no monitor run yet
    expect(value('clawdbot_active_instances_health', { state: 'healthy' })).to.equal(0);
    expect(value('clawdbot_failed_instances', { step: 'resolve-plan', reason: 'invalid' })).to.equal(1);
    expect(value('clawdbot_queue_jobs', { queue: 'stripe-events', state: 'failed' })).to.equal(1);
    expect(value('clawdbot_queue_jobs', { queue: 'compute', state: 'waiting' })).to.equal(0);

    expect(value('clawdbot_webhook_events_total', { event_type: 'checkout.session.completed', outcome: 'accepted' })).to.equal(4);
    expect(value('clawdbot_webhook_events_total', { event_type: 'checkout.session.completed', outcome: 'duplicate' })).to.equal(1);
    expect(value('clawdbot_webhook_events_total', { event_type: 'customer.created', outcome: 'ignored' })).to.equal(1);
    expect(value('clawdbot_webhook_events_total', { event_type: 'unverified', outcome: 'rejected' })).to.equal(1);
    expect(family('clawdbot_webhook_events_total').samples.reduce((n, s) => n + s.value, 0)).to.equal(7);

    // Every call the emulators answered is counted (Railway's in this test: each of its answers, 200 or not).
    expect(value('clawdbot_provider_calls_total', { provider: 'railway', result: 'ok' })).to.equal(h.railway!.calls.filter((c) => c.status < 400).length);
    expect(value('clawdbot_provider_calls_total', { provider: 'neon', result: 'ok' })).to.be.greaterThan(0);
    expect(value('clawdbot_provider_calls_total', { provider: 'runtime', result: 'ok' })).to.be.at.least(3);
    expect(value('clawdbot_provider_calls_total', { provider: 'slack', result: 'ok' })).to.equal(h.slack.posts.length);

    for (const step of Object.values(STEPS)) {
      expect(value('clawdbot_step_duration_seconds_count', { step }), step).to.equal(3);
      expect(value('clawdbot_step_duration_seconds_sum', { step }), step).to.be.greaterThan(0);
    }
    expect(value('clawdbot_time_to_ready_seconds_count')).to.equal(3);
    const { rows } = await h.db.query<{ s: number }>(`SELECT sum(extract(epoch FROM active_at - provision_started_at))::float8 AS s FROM instances`);
    expect(value('clawdbot_time_to_ready_seconds_sum')).to.be.closeTo(rows[0]!.s, 1e-6);

    expect(value('clawdbot_fleet_run_duration_seconds_count', { job: 'reconcile' })).to.equal(1);
    expect(value('clawdbot_fleet_run_duration_seconds_sum', { job: 'reconcile' })).to.equal(1.5);
    expect(value('clawdbot_fleet_run_duration_seconds_bucket', { job: 'reconcile', le: '1' })).to.equal(0);
    expect(value('clawdbot_fleet_run_duration_seconds_bucket', { job: 'reconcile', le: '2.5' })).to.equal(1);
    expect(value('clawdbot_fleet_run_duration_seconds_count', { job: 'monitor' })).to.equal(0);
  });
});

describe('metrics counters and rate-limit periods (Redis)', () => {
  const prefix = `{test-metrics-${randomBytes(4).toString('hex')}}`;
  let redis: Redis;

  before(() => {
    redis = new Redis('redis://127.0.0.1:6379');
  });
  after(async () => {
    await deleteKeys(redis, `${prefix}:*`);
    redis.disconnect();
  });

  it("adds every process's counts to the same sums, and keeps counts that could not be written", async () => {
    const store = new CounterStore(redis, prefix);
    const periods = new RedisRateLimitPeriods(redis, prefix);
    const [a, b] = [new MetricsRecorder(), new MetricsRecorder()];
    const flushers = [new MetricsFlusher(a, store, periods), new MetricsFlusher(b, store, periods)];
    a.providerCall('railway', 200);
    a.webhookEvent('invoice.paid', 'accepted');
    b.providerCall('railway', 200);
    b.providerCall('railway', 429);
    await Promise.all(flushers.map((f) => f.flush()));
    expect(Object.fromEntries(await store.read('provider_calls'))).to.deep.equal({ 'railway\tok': 2, 'railway\trate_limited': 1 });
    expect(Object.fromEntries(await store.read('webhook_events'))).to.deep.equal({ 'invoice.paid\taccepted': 1 });

    // Redis refuses the write: the counts stay with the recorder and go with the next flush.
    const refusing = new MetricsFlusher(a, { add: () => Promise.reject(new Error('READONLY')) }, periods);
    a.providerCall('neon', 200);
    await refusing.flush();
    expect((await store.read('provider_calls')).has('neon\tok')).to.equal(false);
    await flushers[0]!.flush();
    expect((await store.read('provider_calls')).get('neon\tok')).to.equal(1);
  });

  it('keeps one period per provider until a call gets through or 429s stop coming, and remembers its alert', async () => {
    const periods = new RedisRateLimitPeriods(redis, prefix);
    expect(await periods.limited('railway', 1_000, 2_000)).to.deep.equal({ since: 1_000, alerted: false });
    expect(await periods.limited('railway', 3_000, 2_000)).to.deep.equal({ since: 1_000, alerted: false });
    await periods.alerted('railway', 999); // not this period's start: nothing
    expect(await periods.limited('railway', 4_000, 2_000)).to.deep.equal({ since: 1_000, alerted: false });
    await periods.alerted('railway', 1_000);
    expect(await periods.limited('railway', 5_000, 2_000)).to.deep.equal({ since: 1_000, alerted: true });
    expect(await periods.limited('neon', 5_000, 2_000)).to.deep.equal({ since: 5_000, alerted: false });

    await periods.answered(new Map([['railway', 900]])); // a success from before the period: it goes on
    expect(await periods.limited('railway', 6_000, 2_000)).to.deep.equal({ since: 1_000, alerted: true });
    await periods.answered(new Map([['railway', 6_500]]));
    expect(await periods.limited('railway', 7_000, 2_000)).to.deep.equal({ since: 7_000, alerted: false });
    expect(await periods.limited('neon', 6_000, 2_000)).to.deep.equal({ since: 5_000, alerted: false });

    // The last 429 asked for 2 s: one that comes later than that plus the gap begins a new period.
    const late = 7_000 + 2_000 + RATE_LIMIT_GAP_MS + 1;
    expect(await periods.limited('railway', late, 2_000)).to.deep.equal({ since: late, alerted: false });
  });
});
