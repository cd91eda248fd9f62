/**
 * The end of a subscription, on a timeline of seconds: cancelled (key refused at once, service stopped), archived
 * (database exported, verified, then deleted with the service), purged (archive and personal data gone, the audit
 * trail kept).
 */
import type { Job } from 'bullmq';
import { expect } from 'chai';
import pg from 'pg';
import { readArchive } from '../../core/archiveFormat.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../src/instances/secrets.ts';
import { JOBS, QUEUES, STEPS } from '../../src/queues/catalogue.ts';
import { DEFAULT_PRICE_IDS } from '../../core/plans.ts';
import { startHarness, waitUntil, type Harness, type InstanceView } from '../support/harness.ts';

describe('subscription lifecycle: cancel, archive, purge', function () {
  this.timeout(90_000);
  let h: Harness;

  before(async () => {
    h = await startHarness({ ARCHIVE_AFTER: '3s', PURGE_AFTER: '6s' });
  });
  after(async () => h?.close());

  it('cancels at once, archives after ARCHIVE_AFTER and purges after PURGE_AFTER', async () => {
    const { customerId, subscriptionId, event } = h.checkout({ email: 'rosa@example.com', name: 'Rosa', plan: 'starter' });
    await h.deliver(event);
    const active = await h.waitForStatus(customerId, ['active', 'failed']);
    expect(active.status).to.equal('active');
    const mail = await h.smtp.waitFor((m) => m.to.includes('rosa@example.com'));
    const key = /claw_[0-9A-Za-z]{43}/.exec(mail.text)![0];
    const api = (path: string, body?: unknown) =>
      fetch(`${active.accessUrl}${path}`, {
        method: body ? 'POST' : 'GET',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        ...(body !== undefined && { body: JSON.stringify(body) }),
      });
    expect((await api('/api/memory', { content: 'Rosa keeps bees on the roof', tags: ['hobby'] })).status).to.equal(201);
    const { rows: before } = await h.db.query('SELECT service_id, database_name FROM instances WHERE id = $1', [active.instanceId]);
    const databaseUrl = (await h.plane.ctx.secrets.get(instanceOwner(active.instanceId), INSTANCE_SECRETS.databaseUrl))!;

    // Stripe cancels the subscription; the event arrives twice.
    const canceled = h.stripe.updateSubscription(subscriptionId, { status: 'canceled' });
    const deleted = h.stripe.event('customer.subscription.deleted', canceled);
    expect((await h.deliver(deleted)).status).to.equal(200);
    expect((await h.deliver(h.stripe.event('customer.subscription.deleted', canceled))).status).to.equal(200);

    const cancelled = await h.waitForStatus(customerId, ['cancelled']);
    const shown = cancelled as InstanceView & { archiveAt: string; purgeAt: string };
    expect(Date.parse(shown.archiveAt) - canceled.canceled_at! * 1000).to.equal(3_000);
    expect(Date.parse(shown.purgeAt) - canceled.canceled_at! * 1000).to.equal(6_000);
    // The key is refused at once: the service is stopped, and the key is revoked where a restarted runtime checks it.
    expect(await api('/status').then((r) => r.status, () => 'refused')).to.equal('refused');
    const customerDb = new pg.Client({ connectionString: databaseUrl });
    await customerDb.connect();
    const keys = await customerDb.query('SELECT count(*)::int AS live FROM api_keys WHERE revoked_at IS NULL');
    await customerDb.end();
    expect(keys.rows[0].live).to.equal(0);
    const delayed = await h.plane.ctx.queues.get(QUEUES.lifecycle).getDelayed();
    expect(delayed.map((j) => j.name).sort()).to.deep.equal(['archive', 'purge']); // scheduled once, despite two events

    const archived = await h.waitForStatus(customerId, ['archived'], 20_000);
    expect(archived.accessUrl).to.equal(null);
    const database = await h.db.query('SELECT 1 FROM pg_database WHERE datname = $1', [before[0].database_name]);
    expect(database.rowCount).to.equal(0);
    const service = await h.db.query('SELECT 1 FROM local_services WHERE name = $1', [before[0].service_id]);
    expect(service.rowCount).to.equal(0);
    const { rows: archives } = await h.db.query('SELECT location, size_bytes, sha256, verified_at FROM archives WHERE instance_id = $1', [
      active.instanceId,
    ]);
    expect(archives[0].verified_at).to.not.equal(null);
    expect(await h.plane.ctx.archives.checksum(archives[0].location)).to.deep.equal({
      sizeBytes: Number(archives[0].size_bytes),
      sha256: archives[0].sha256,
    });
    const memories: string[] = [];
    const counts = await readArchive(h.plane.ctx.archives.read(archives[0].location), async (table, row) => {
      if (table === 'memories') memories.push(String(row.content));
    });
    expect(memories).to.deep.equal(['Rosa keeps bees on the roof']);
    expect(counts.workspace_files).to.be.greaterThan(5);
    expect(await h.plane.ctx.secrets.get(instanceOwner(active.instanceId), INSTANCE_SECRETS.databaseUrl)).to.equal(null);

    const purged = await h.waitForStatus(customerId, ['purged'], 20_000);
    expect(purged.status).to.equal('purged');
    const archiveGone = await h.plane.ctx.archives.checksum(archives[0].location).then(() => 'still there', (e: NodeJS.ErrnoException) => e.code);
    expect(archiveGone, 'the archive file no longer exists').to.equal('ENOENT');
    const { rows: customer } = await h.db.query('SELECT email, name, stripe_customer_id FROM customers WHERE stripe_customer_id = $1', [customerId]);
    expect(customer[0]).to.deep.equal({ email: null, name: null, stripe_customer_id: customerId });
    const payloads = await h.db.query(`SELECT count(*)::int AS n FROM stripe_events WHERE payload::text LIKE '%rosa@example.com%'`);
    expect(payloads.rows[0].n).to.equal(0);
    const { rows: trail } = await h.db.query('SELECT action FROM audit WHERE instance_id = $1 ORDER BY id', [active.instanceId]);
    expect(trail.map((r) => r.action)).to.deep.equal(['instance.created', 'instance.active', 'instance.cancelled', 'instance.archived', 'instance.purged']);
    await waitUntil(async () => (await h.plane.ctx.queues.get(QUEUES.lifecycle).getDelayedCount()) === 0);
  });

  it('deprovisions through the admin API, and refuses to deprovision twice', async () => {
    const created = (await (
      await h.admin('/api/admin/provision', { method: 'POST', body: JSON.stringify({ email: 'sam@example.com', plan: 'starter' }) })
    ).json()) as { customerId: string };
    await h.waitForStatus(created.customerId, ['active']);
    expect((await h.admin(`/api/admin/customers/${created.customerId}/deprovision`, { method: 'POST' })).status).to.equal(202);
    const view = (await h.waitForStatus(created.customerId, ['cancelled'])) as InstanceView & { archiveAt: string | null };
    expect(view.archiveAt).to.be.a('string');
    expect((await h.admin(`/api/admin/customers/${created.customerId}/deprovision`, { method: 'POST' })).status).to.equal(409);
  });
});

describe('reactivation', function () {
  this.timeout(120_000);
  let h: Harness;

  before(async () => {
    h = await startHarness({ ARCHIVE_AFTER: '3s', PURGE_AFTER: '7s' });
  });
  after(async () => h?.close());

  /**
   * The cancellation's archive or purge jobs were called off by the reactivation: none is left to run (removed, or
   * completed as skipped), so waiting past their time could show nothing more.
   */
  async function expectCalledOff(instanceId: string, names: string[]) {
    const jobs = await h.completedJobsOf(instanceId, names);
    for (const job of jobs) expect(job.returnvalue, `${job.name} ${job.id}`).to.have.property('skipped');
  }

  /** A customer signs up and stores a memory (`<email> collects stamps`). */
  async function signUp(email: string) {
    const { customerId, subscriptionId, event } = h.checkout({ email, plan: 'starter' });
    await h.deliver(event);
    const view = await h.waitForStatus(customerId, ['active', 'failed']);
    expect(view.status).to.equal('active');
    const key = /claw_[0-9A-Za-z]{43}/.exec((await h.smtp.waitFor((m) => m.to.includes(email))).text)![0];
    const memory = await fetch(`${view.accessUrl}/api/memory`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ content: `${email} collects stamps` }),
    });
    expect(memory.status).to.equal(201);
    return { customerId, subscriptionId, key, view };
  }

  /** A customer signs up, stores a memory, and cancels; returns what a comeback needs. */
  async function signUpAndCancel(email: string) {
    const { customerId, subscriptionId, key, view } = await signUp(email);
    const canceled = h.stripe.updateSubscription(subscriptionId, { status: 'canceled' });
    await h.deliver(h.stripe.event('customer.subscription.deleted', canceled));
    await h.waitForStatus(customerId, ['cancelled']);
    return { customerId, oldKey: key, workspaceId: view.workspaceId };
  }

  /** The same Stripe customer subscribes again; returns the instance and the new key from the new welcome email. */
  async function comeBack(customerId: string, email: string) {
    const mailsBefore = h.smtp.messages.filter((m) => m.to.includes(email)).length;
    const subscription = h.stripe.createSubscription({ customer: customerId, price: DEFAULT_PRICE_IDS.pro });
    const session = h.stripe.createCheckoutSession({ customer: customerId, subscription: subscription.id, email });
    await h.deliver(h.stripe.event('checkout.session.completed', session));
    const view = await h.waitForStatus(customerId, ['active', 'failed'], 60_000);
    expect(view.status, JSON.stringify(view.failure)).to.equal('active');
    await waitUntil(async () => h.smtp.messages.filter((m) => m.to.includes(email) && m.subject === 'Your Clawdbot is ready').length > mailsBefore);
    const mail = h.smtp.messages.filter((m) => m.to.includes(email) && m.subject === 'Your Clawdbot is ready').at(-1)!;
    const key = /claw_[0-9A-Za-z]{43}/.exec(mail.text)![0];
    const memories = async () =>
      ((await (await fetch(`${view.accessUrl}/api/memory`, { headers: { authorization: `Bearer ${key}` } })).json()) as {
        memories: { content: string }[];
      }).memories.map((m) => m.content);
    return { view, key, memories };
  }

  it('before the archive: the same service and database come back with a new key; memories kept', async () => {
    const email = 'uma@example.com';
    const { customerId, oldKey, workspaceId } = await signUpAndCancel(email);
    const { view, key, memories } = await comeBack(customerId, email);
    expect(view.workspaceId).to.equal(workspaceId);
    expect(view.plan).to.equal('pro');
    expect(key).to.not.equal(oldKey);
    expect(await memories()).to.deep.equal([`${email} collects stamps`]);
    const old = await fetch(`${view.accessUrl}/status`, { headers: { authorization: `Bearer ${oldKey}` } });
    expect(old.status).to.equal(401);
    await expectCalledOff(view.instanceId, ['archive', 'purge']);
    expect((await h.waitForStatus(customerId, ['active'])).status).to.equal('active');
    const { rows } = await h.db.query(`SELECT action FROM audit WHERE action LIKE 'instance.%' AND instance_id = $1 ORDER BY id`, [view.instanceId]);
    expect(rows.map((r) => r.action)).to.include.members(['instance.cancelled', 'instance.reactivated']).and.not.include('instance.archived');
  });

  it('between archive and purge: provisioned afresh with the archive restored', async () => {
    const email = 'vic@example.com';
    const { customerId, workspaceId } = await signUpAndCancel(email);
    await h.waitForStatus(customerId, ['archived'], 20_000);
    const { view, memories } = await comeBack(customerId, email);
    expect(view.workspaceId).to.equal(workspaceId);
    expect(await memories()).to.deep.equal([`${email} collects stamps`]);
    const { rows } = await h.db.query('SELECT deleted_at FROM archives WHERE instance_id = $1', [view.instanceId]);
    expect(rows[0].deleted_at).to.not.equal(null); // restored, then deleted
    await expectCalledOff(view.instanceId, ['purge']);
    expect((await h.waitForStatus(customerId, ['active'])).status).to.equal('active');
  });

  it('before its cancellation ran: the old instance is cancelled and reactivated, never a second one beside it', async () => {
    const email = 'xia@example.com';
    const { customerId, subscriptionId, key: oldKey, view: first } = await signUp(email);
    // Stripe has cancelled the old subscription, but its event comes only after the customer's new checkout.
    const canceled = h.stripe.updateSubscription(subscriptionId, { status: 'canceled' });

    const { key, memories } = await comeBack(customerId, email);
    const view = await h.waitForStatus(customerId, ['active']);
    expect(view.instanceId).to.equal(first.instanceId);
    expect(view.plan).to.equal('pro');
    expect(await memories()).to.deep.equal([`${email} collects stamps`]);
    expect((await fetch(`${view.accessUrl}/status`, { headers: { authorization: `Bearer ${oldKey}` } })).status).to.equal(401);
    expect((await fetch(`${view.accessUrl}/status`, { headers: { authorization: `Bearer ${key}` } })).status).to.equal(200);

    // The old subscription's deletion, delivered late, finds no instance on it any more: nothing is cancelled again.
    const late = h.stripe.event('customer.subscription.deleted', canceled) as { id: string };
    await h.deliver(late);
    expect((await h.completedJob(QUEUES.stripeEvents, late.id)).returnvalue).to.deep.equal({ ignored: 'no instance for this subscription' });
    await expectCalledOff(view.instanceId, ['archive', 'purge']);
    const instances = await h.db.query(
      `SELECT i.status, c.email FROM instances i JOIN customers c ON c.id = i.customer_id WHERE c.stripe_customer_id = $1`,
      [customerId],
    );
    expect(instances.rows).to.deep.equal([{ status: 'active', email }]);
    const { rows } = await h.db.query(`SELECT action FROM audit WHERE action LIKE 'instance.%' AND instance_id = $1 ORDER BY id`, [view.instanceId]);
    const actions = rows.map((r) => r.action as string);
    expect(actions.indexOf('instance.cancelled')).to.be.above(-1).and.below(actions.indexOf('instance.reactivated'));
    expect(actions).to.not.include('instance.archived');
  });

  it('after the purge: provisioned fresh, with the new email', async () => {
    const email = 'wen@example.com';
    const { customerId } = await signUpAndCancel(email);
    await h.waitForStatus(customerId, ['purged'], 30_000);
    const { memories } = await comeBack(customerId, email);
    expect(await memories()).to.deep.equal([]);
    const { rows } = await h.db.query('SELECT email FROM customers WHERE stripe_customer_id = $1', [customerId]);
    expect(rows[0].email).to.equal(email);
  });
});

describe('failed payments', function () {
  this.timeout(90_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ PAYMENT_GRACE: '1500ms' });
  });
  after(async () => h?.close());

  const invoice = (customer: string, subscription: string, attempt: number) => ({
    id: `in_test_${attempt}_${subscription.slice(-6)}`,
    object: 'invoice',
    customer,
    attempt_count: attempt,
    parent: { type: 'subscription_details', subscription_details: { subscription } },
  });

  it('dunning email, suspension after the grace (402, data kept), and resumption when paid', async () => {
    const { customerId, subscriptionId, event } = h.checkout({ email: 'xena@example.com', plan: 'starter' });
    await h.deliver(event);
    const view = await h.waitForStatus(customerId, ['active', 'failed']);
    const key = /claw_[0-9A-Za-z]{43}/.exec((await h.smtp.waitFor((m) => m.to.includes('xena@example.com'))).text)![0];
    const status = () => fetch(`${view.accessUrl}/status`, { headers: { authorization: `Bearer ${key}` } }).then((r) => r.status, () => 'refused');
    expect(await status()).to.equal(200);

    h.stripe.updateSubscription(subscriptionId, { status: 'past_due' });
    await h.deliver(h.stripe.event('invoice.payment_failed', invoice(customerId, subscriptionId, 1)));
    const dunning = await h.smtp.waitFor((m) => m.to.includes('xena@example.com') && m.subject.includes('did not go through'));
    expect(dunning.text).to.include('update your payment method');

    await h.waitForStatus(customerId, ['suspended'], 20_000);
    expect(await status()).to.equal('refused'); // the service is stopped
    const { rows } = await h.db.query('SELECT desired_state FROM local_services s JOIN instances i ON i.service_id = s.name WHERE i.id = $1', [view.instanceId]);
    expect(rows[0].desired_state).to.equal('stopped');
    // Something restarting the runtime would still refuse the key with a clear 402.
    const databaseUrl = (await h.plane.ctx.secrets.get(instanceOwner(view.instanceId), INSTANCE_SECRETS.databaseUrl))!;
    const customerDb = new pg.Client({ connectionString: databaseUrl });
    await customerDb.connect();
    const flag = await customerDb.query('SELECT suspended_reason FROM account_status');
    const filesKept = await customerDb.query('SELECT count(*)::int AS n FROM workspace_files');
    await customerDb.end();
    expect(flag.rows[0].suspended_reason).to.include('overdue');
    expect(filesKept.rows[0].n).to.be.greaterThan(0);

    h.stripe.updateSubscription(subscriptionId, { status: 'active' });
    await h.deliver(h.stripe.event('invoice.paid', invoice(customerId, subscriptionId, 2)));
    await h.waitForStatus(customerId, ['active'], 20_000);
    await waitUntil(async () => (await status()) === 200, 15_000);
    const { rows: trail } = await h.db.query(`SELECT action FROM audit WHERE instance_id = $1 ORDER BY id`, [view.instanceId]);
    expect(trail.map((r) => r.action).filter((a) => a === 'instance.suspended' || a === 'instance.resumed')).to.deep.equal([
      'instance.suspended',
      'instance.resumed',
    ]);
  });

  it('does not suspend when the payment succeeds within the grace', async () => {
    const { customerId, subscriptionId, event } = h.checkout({ email: 'yuri@example.com', plan: 'starter' });
    await h.deliver(event);
    const view = await h.waitForStatus(customerId, ['active']);
    h.stripe.updateSubscription(subscriptionId, { status: 'past_due' });
    const failed = h.stripe.event('invoice.payment_failed', invoice(customerId, subscriptionId, 1));
    await h.deliver(failed);
    expect((await h.completedJob(QUEUES.stripeEvents, failed.id)).returnvalue).to.deep.equal({ overdue: 'past_due' }); // the grace runs
    h.stripe.updateSubscription(subscriptionId, { status: 'active' });
    const paid = h.stripe.event('invoice.paid', invoice(customerId, subscriptionId, 2));
    await h.deliver(paid);
    await h.completedJob(QUEUES.stripeEvents, paid.id);
    // The suspension checks Stripe again at the end of the grace, and finds the subscription paid.
    const suspensions = await h.completedJobsOf(view.instanceId, ['suspend']);
    expect(suspensions.map((j) => j.returnvalue)).to.deep.equal([{ skipped: 'subscription is active' }]);
    expect((await h.waitForStatus(customerId, ['active'])).status).to.equal('active');
  });
});

describe('events late, twice and out of order', function () {
  this.timeout(120_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ PAYMENT_GRACE: '1h' });
  });
  after(async () => h?.close());

  /** A customer's story as Stripe ends it: signed up on Starter, a failed and then a paid invoice, upgraded to Pro. */
  function story(email: string) {
    const customer = h.stripe.createCustomer({ email });
    const subscription = h.stripe.createSubscription({ customer: customer.id, price: DEFAULT_PRICE_IDS.starter });
    const session = h.stripe.createCheckoutSession({ customer: customer.id, subscription: subscription.id, email });
    const invoice = (n: number) => ({
      id: `in_${n}_${subscription.id.slice(-8)}`,
      object: 'invoice',
      customer: customer.id,
      attempt_count: n,
      parent: { type: 'subscription_details', subscription_details: { subscription: subscription.id } },
    });
    const events: { id: string }[] = [
      h.stripe.event('checkout.session.completed', session),
      h.stripe.event('invoice.payment_failed', invoice(1)),
      h.stripe.event('invoice.paid', invoice(2)),
    ];
    const upgraded = h.stripe.updateSubscription(subscription.id, { price: DEFAULT_PRICE_IDS.pro });
    events.push(h.stripe.event('customer.subscription.updated', upgraded));
    return { customerId: customer.id, events };
  }

  async function finalState(customerId: string, events: { id: string }[]) {
    let instanceId = '';
    await waitUntil(async () => {
      const r = await h.admin(`/api/customers/${customerId}/instance`);
      if (r.status !== 200) return false;
      const view = (await r.json()) as InstanceView;
      instanceId = view.instanceId;
      return view.status === 'active' && view.plan === 'pro';
    }, 60_000);
    // Every event acted on, then every job they started (provisioning steps, plan changes) done: nothing late can land.
    for (const event of events) await h.completedJob(QUEUES.stripeEvents, event.id);
    await h.completedJobsOf(instanceId, [...Object.values(STEPS), 'resize', 'resume', 'reactivate']);
    const { rows } = await h.db.query(
      `SELECT i.status, i.plan, l.limits, count(*) OVER ()::int AS instances
       FROM instances i JOIN customers c ON c.id = i.customer_id LEFT JOIN local_services l ON l.name = i.service_id
       WHERE c.stripe_customer_id = $1`,
      [customerId],
    );
    const email = (await h.db.query('SELECT email FROM customers WHERE stripe_customer_id = $1', [customerId])).rows[0].email as string;
    const welcomes = h.smtp.messages.filter((m) => m.to.includes(email) && m.subject === 'Your Clawdbot is ready').length;
    return { ...rows[0], welcomes };
  }

  /** A fixed shuffle (so a failure reproduces), every event delivered twice. */
  function shuffledTwice<T>(items: T[], seed: number): T[] {
    const doubled = [...items, ...items];
    let state = seed;
    for (let i = doubled.length - 1; i > 0; i--) {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      const j = state % (i + 1);
      [doubled[i], doubled[j]] = [doubled[j]!, doubled[i]!];
    }
    return doubled;
  }

  it('ends in the same state as in order, whatever the order and however often', async () => {
    const inOrder = story('zoe@example.com');
    for (const event of inOrder.events) expect((await h.deliver(event)).status).to.equal(200);
    const expected = await finalState(inOrder.customerId, inOrder.events);
    expect(expected).to.deep.equal({ status: 'active', plan: 'pro', limits: { cpu: 1, memoryMb: 1024 }, instances: 1, welcomes: 1 });

    for (const seed of [7, 42]) {
      const shuffled = story(`zoe-${seed}@example.com`);
      for (const event of shuffledTwice(shuffled.events, seed)) expect((await h.deliver(event)).status).to.equal(200);
      expect(await finalState(shuffled.customerId, shuffled.events), `seed ${seed}`).to.deep.equal(expected);
    }
  });
});

describe('cancelling a provisioning still under way', function () {
  this.timeout(90_000);
  let h: Harness;
  before(async () => {
    // A deployment takes a minute, so the deploy step is still under way (waiting on it) when the cancellation lands.
    h = await startHarness({}, { cloud: { railway: { deployMs: 60_000 } } });
  });
  after(async () => h?.close());

  it('cancelled while deploy runs: the flow goes first, so nothing of it deploys or issues a key afterwards', async () => {
    // Railway parks the deploy step's call while the cancellation arrives.
    const held = h.railway!.holdNext('serviceInstanceDeployV2');
    const created = (await (
      await h.admin('/api/admin/provision', { method: 'POST', body: JSON.stringify({ email: 'ada@example.com', plan: 'starter' }) })
    ).json()) as { customerId: string; workspaceId: string; instanceId: string };
    await held.arrived;
    expect((await h.admin(`/api/admin/customers/${created.customerId}/deprovision`, { method: 'POST' })).status).to.equal(202);
    // The cancellation waits for the running step (it holds the instance's lock), holding no slot.
    let cancel: Job | undefined;
    await waitUntil(async () => {
      const delayed = await h.plane.ctx.queues.get(QUEUES.lifecycle).getJobs(['delayed']);
      cancel = delayed.find((j) => j.name === 'cancel' && j.data.instanceId === created.instanceId);
      return cancel !== undefined;
    });
    expect((await h.plane.ctx.queues.get(QUEUES.lifecycle).getJobLogs(cancel!.id!)).logs.join('\n')).to.include('waiting for the instance');
    held.release();

    await h.completedJob(QUEUES.lifecycle, cancel!.id!);
    expect((await h.waitForStatus(created.customerId, ['cancelled'])).status).to.equal('cancelled');
    // No step after the running one ever started (each was removed with the flow, or skipped by the step runner),
    // and none of the flow is left to run.
    const { rows: started } = await h.db.query('SELECT name FROM steps WHERE instance_id = $1 ORDER BY name', [created.instanceId]);
    expect(started.map((r) => r.name)).to.deep.equal([STEPS.buildWorkspace, STEPS.createBranch, STEPS.createService, STEPS.deploy]);
    const left = await Promise.all(Object.values(STEPS).map((step) => h.plane.ctx.queues.get(JOBS[step].queue).getJob(`${created.workspaceId}-${step}`)));
    const leftStates = await Promise.all(left.filter((job) => job !== undefined).map((job) => job.getState()));
    expect(leftStates.filter((state) => state !== 'completed')).to.deep.equal([]);
    // The one deployment asked for is removed (Railway's stop), and none came after it.
    const [service] = h.railway!.services();
    expect(h.railway!.deploymentsOf(service!.id).map((d) => d.status)).to.deep.equal(['REMOVED']);
    expect(h.railway!.counts().serviceInstanceDeployV2).to.equal(1);
    // No key reaches anyone: no welcome email, the sealed key deleted, its hash revoked in the customer database.
    expect(h.smtp.messages.filter((m) => m.to.includes('ada@example.com'))).to.have.length(0);
    expect(await h.plane.ctx.secrets.get(instanceOwner(created.instanceId), INSTANCE_SECRETS.pendingApiKey)).to.equal(null);
    const customerDb = new pg.Client({ connectionString: (await h.plane.ctx.secrets.get(instanceOwner(created.instanceId), INSTANCE_SECRETS.databaseUrl))! });
    await customerDb.connect();
    const keys = await customerDb.query('SELECT count(*)::int AS live FROM api_keys WHERE revoked_at IS NULL');
    await customerDb.end();
    expect(keys.rows[0].live).to.equal(0);
    const { rows: trail } = await h.db.query('SELECT action FROM audit WHERE instance_id = $1 ORDER BY id', [created.instanceId]);
    expect(trail.map((r) => r.action)).to.not.include('instance.active');
  });
});
