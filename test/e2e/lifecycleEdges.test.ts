/**
 * The edges of a subscription's life on the local providers: a plan change made while suspended, a cancellation
 * while suspended, a lifecycle job that fails for good, a purge that comes due before the archive succeeded, and
 * the operator's reactivate endpoint. Failures are made where they happen (the customer database refusing
 * connections, a database role that cannot be dropped, an archive store that refuses the archive), and fixed the way
 * an operator would.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { DEFAULT_PRICE_IDS } from '../../core/plans.ts';
import { startHarness, waitUntil, type Harness, type InstanceView } from '../support/harness.ts';
import { bullBoardAction, waitForIncidents, waitForJob } from '../support/jobWaits.ts';

const KEY_IN_MAIL = /claw_[0-9A-Za-z]{43}/;

interface Customer {
  email: string;
  customerId: string;
  /** Stripe's subscription id (customers who came through Checkout). */
  subscriptionId?: string;
  view: InstanceView;
  key: string;
}

describe('lifecycle edges', function () {
  this.timeout(90_000);
  let h: Harness;
  const customers: Record<string, Customer> = {};

  /** The newest welcome email's key. */
  function keyOf(email: string): string | undefined {
    const mail = h.smtp.messages.filter((m) => m.to.includes(email) && m.subject === 'Your Clawdbot is ready').at(-1);
    return mail && KEY_IN_MAIL.exec(mail.text)?.[0];
  }

  async function signUp(email: string, via: 'checkout' | 'admin'): Promise<Customer> {
    let customerId: string;
    let subscriptionId: string | undefined;
    if (via === 'checkout') {
      const checkout = h.checkout({ email, plan: 'starter' });
      ({ customerId, subscriptionId } = checkout);
      expect((await h.deliver(checkout.event)).status).to.equal(200);
    } else {
      const created = await h.admin('/api/admin/provision', { method: 'POST', body: JSON.stringify({ email, plan: 'starter' }) });
      ({ customerId } = (await created.json()) as { customerId: string });
    }
    const view = await h.waitForStatus(customerId, ['active', 'failed'], 60_000);
    expect(view.status, JSON.stringify(view.failure)).to.equal('active');
    await h.smtp.waitFor((m) => m.to.includes(email) && m.subject === 'Your Clawdbot is ready');
    return { email, customerId, subscriptionId, view, key: keyOf(email)! };
  }

  function call(customer: Customer, pathname: string, init: { key?: string; body?: unknown } = {}): Promise<Response | undefined> {
    return fetch(`${customer.view.accessUrl}${pathname}`, {
      method: init.body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${init.key ?? customer.key}`, 'content-type': 'application/json' },
      ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
    }).catch(() => undefined);
  }

  async function remember(customer: Customer, content: string): Promise<void> {
    expect((await call(customer, '/api/memory', { body: { content } }))?.status).to.equal(201);
  }

  const invoice = (customer: Customer, attempt: number) => ({
    id: `in_${attempt}_${customer.subscriptionId!.slice(-8)}`,
    object: 'invoice',
    customer: customer.customerId,
    attempt_count: attempt,
    parent: { type: 'subscription_details', subscription_details: { subscription: customer.subscriptionId } },
  });

  /** A payment fails and stays overdue past the grace: the instance is suspended. */
  async function suspend(customer: Customer): Promise<void> {
    h.stripe.updateSubscription(customer.subscriptionId!, { status: 'past_due' });
    await h.deliver(h.stripe.event('invoice.payment_failed', invoice(customer, 1)));
    await h.waitForStatus(customer.customerId, ['suspended'], 20_000);
  }

  /** The archive store cannot take this workspace's archive: a file sits where its directory goes. */
  async function blockArchiveStore(customer: Customer): Promise<void> {
    await mkdir(h.config.lifecycle.archiveDir, { recursive: true });
    await writeFile(path.join(h.config.lifecycle.archiveDir, customer.view.workspaceId), 'not a directory');
  }

  async function databaseOf(customer: Customer): Promise<{ name: string; role: string }> {
    const { rows } = await h.db.query('SELECT database_name, database_role FROM instances WHERE id = $1', [customer.view.instanceId]);
    expect(rows[0].database_role).to.match(/^claw_[0-9a-f]+$/); // safe to quote as it is
    return { name: rows[0].database_name, role: rows[0].database_role };
  }

  async function deprovision(customer: Customer): Promise<number> {
    expect((await h.admin(`/api/admin/customers/${customer.customerId}/deprovision`, { method: 'POST' })).status).to.equal(202);
    await h.waitForStatus(customer.customerId, ['cancelled', 'archived', 'purged'], 20_000);
    const { rows } = await h.db.query<{ at: number }>('SELECT extract(epoch FROM cancelled_at)::bigint AS at FROM instances WHERE id = $1', [
      customer.view.instanceId,
    ]);
    return Number(rows[0]!.at);
  }

  async function resources(customer: Customer): Promise<{ service: number; database: number }> {
    const { rows } = await h.db.query('SELECT service_id, database_name FROM instances WHERE id = $1', [customer.view.instanceId]);
    return {
      service: (await h.db.query('SELECT 1 FROM local_services WHERE name = $1', [rows[0].service_id])).rowCount ?? 0,
      database: (await h.db.query('SELECT 1 FROM pg_database WHERE datname = $1', [rows[0].database_name])).rowCount ?? 0,
    };
  }

  /** What happened to the instance, in order (operators' requests left out: they race with the worker's rows). */
  async function trail(customer: Customer): Promise<string[]> {
    const { rows } = await h.db.query(`SELECT action FROM audit WHERE instance_id = $1 AND action NOT LIKE '%requested' ORDER BY id`, [
      customer.view.instanceId,
    ]);
    return rows.map((r) => r.action as string);
  }

  before(async () => {
    h = await startHarness({ PAYMENT_GRACE: '1s', ARCHIVE_AFTER: '1s', PURGE_AFTER: '6s' });
    const signUps: [string, 'checkout' | 'admin'][] = [
      ['rita@example.com', 'checkout'],
      ['olga@example.com', 'checkout'],
      ['ivan@example.com', 'admin'],
      ['pete@example.com', 'admin'],
      ['rhea@example.com', 'admin'],
      ['finn@example.com', 'admin'],
    ];
    const made = await Promise.all(signUps.map(([email, via]) => signUp(email, via)));
    for (const customer of made) customers[customer.email.split('@')[0]!] = customer;
    // Finn's purge clock starts now, so their test does not wait for it alone.
    expect((await h.admin(`/api/admin/customers/${customers.finn!.customerId}/deprovision`, { method: 'POST' })).status).to.equal(202);
  });
  after(async () => h?.close());

  it('resumes a suspended customer on the plan they changed to while suspended', async () => {
    const rita = customers.rita!;
    await suspend(rita);
    const upgraded = h.stripe.updateSubscription(rita.subscriptionId!, { price: DEFAULT_PRICE_IDS.pro });
    const change = h.stripe.event('customer.subscription.updated', upgraded);
    await h.deliver(change);
    await h.completedJob('stripe-events', change.id);
    const meanwhile = await h.waitForStatus(rita.customerId, ['suspended']);
    expect(meanwhile.plan, 'nothing is resized while suspended').to.equal('starter');

    h.stripe.updateSubscription(rita.subscriptionId!, { status: 'active' });
    await h.deliver(h.stripe.event('invoice.paid', invoice(rita, 2)));
    await waitUntil(async () => {
      const view = await h.waitForStatus(rita.customerId, ['active', 'suspended']);
      return view.status === 'active' && view.plan === 'pro';
    }, 30_000);
    // The runtime serves the new plan, with the same key.
    await waitUntil(async () => {
      const status = await call(rita, '/status');
      return status?.status === 200 && ((await status.json()) as { plan: string }).plan === 'pro';
    }, 30_000);
    const { rows } = await h.db.query('SELECT l.limits FROM local_services l JOIN instances i ON i.service_id = l.name WHERE i.id = $1', [
      rita.view.instanceId,
    ]);
    expect(rows[0].limits).to.deep.equal({ cpu: 1, memoryMb: 1024 });
    expect((await trail(rita)).filter((a) => ['instance.suspended', 'instance.resumed', 'instance.resized'].includes(a))).to.deep.equal([
      'instance.suspended',
      'instance.resumed',
      'instance.resized',
    ]);
  });

  it('cancels a suspended customer, and archives their data as for any other', async () => {
    const olga = customers.olga!;
    await remember(olga, 'Olga grows tomatoes');
    await suspend(olga);
    const canceled = h.stripe.updateSubscription(olga.subscriptionId!, { status: 'canceled' });
    await h.deliver(h.stripe.event('customer.subscription.deleted', canceled));
    await h.waitForStatus(olga.customerId, ['archived', 'purged'], 30_000);
    expect(await resources(olga)).to.deep.equal({ service: 0, database: 0 });
    const actions = await trail(olga);
    expect(actions.slice(actions.indexOf('instance.suspended'), actions.indexOf('instance.archived') + 1)).to.deep.equal([
      'instance.suspended',
      'instance.cancelled',
      'instance.archived',
    ]);
    const { rows } = await h.db.query(`SELECT detail FROM audit WHERE instance_id = $1 AND action = 'instance.archived'`, [olga.view.instanceId]);
    expect(rows[0].detail.rows.memories).to.equal(1);
  });

  it('raises one incident (one Slack post, one email) for a lifecycle job that fails for good, leaving the status as it was', async () => {
    const ivan = customers.ivan!;
    // The customer database refuses connections, so the cancellation cannot revoke the key.
    const database = await databaseOf(ivan);
    await h.db.query(`ALTER DATABASE "${database.name}" ALLOW_CONNECTIONS false`);
    expect((await h.admin(`/api/admin/customers/${ivan.customerId}/deprovision`, { method: 'POST' })).status).to.equal(202);

    const [incident, ...more] = await waitForIncidents(h, ivan.view.instanceId, 'lifecycle.failed');
    expect(more).to.have.length(0);
    expect(incident!.detail).to.include({ step: 'cancel' });
    const cancel = await waitForJob(h, 'lifecycle', incident!.detail.jobId!, ['failed']);
    expect(cancel.attemptsMade).to.equal(h.config.worker.attempts);
    const posts = h.slack.posts.filter((p) => (p.text ?? '').includes(ivan.email));
    expect(posts).to.have.length(1);
    expect(posts[0]!.text).to.include('Lifecycle job cancel failed').and.include('not currently accepting connections')
      .and.include(`/admin/queues/queue/lifecycle/${incident!.detail.jobId}`);
    const mails = h.smtp.messages.filter((m) => m.to.includes('ops@clawdbot.test') && m.text.includes(ivan.email));
    expect(mails).to.have.length(1);
    expect(mails[0]!.subject).to.include('Lifecycle job cancel failed');

    expect((await h.waitForStatus(ivan.customerId, ['active', 'cancelled'])).status).to.equal('active');
    expect((await call(ivan, '/status'))?.status, 'the runtime still serves').to.equal(200);
    expect(await trail(ivan)).to.deep.equal(['instance.created', 'instance.active', 'lifecycle.failed']);
  });

  it('makes a purge that comes due before the archive wait for it, and purges once it is archived', async () => {
    const pete = customers.pete!;
    await remember(pete, 'Pete restores old radios');
    // The customer's role holds a privilege in another database, so the archive cannot drop it, and fails.
    const { role } = await databaseOf(pete);
    await h.db.query(`GRANT SELECT ON audit TO "${role}"`);
    let archiveId: string, purgeId: string, archiveFile: string;
    try {
      const canceledAt = await deprovision(pete);
      archiveId = `${pete.view.workspaceId}-archive-${canceledAt}`;
      purgeId = `${pete.view.workspaceId}-purge-${canceledAt}`;
      const failed = await waitForJob(h, 'lifecycle', archiveId, ['failed']);
      expect(failed.failedReason).to.include('cannot be dropped');

      // The purge comes due while the instance is still only cancelled: it deletes nothing and waits.
      await waitUntil(async () => {
        const { logs } = await h.plane.ctx.queues.get('lifecycle').getJobLogs(purgeId);
        return logs.some((line) => line.includes('waits for the archive'));
      }, 20_000);
      await waitForJob(h, 'lifecycle', purgeId, ['delayed']);
      expect((await h.waitForStatus(pete.customerId, ['cancelled'])).status).to.equal('cancelled');
      const { rows: kept } = await h.db.query('SELECT c.email, a.location FROM customers c, archives a WHERE c.id = $1 AND a.instance_id = $2', [
        pete.view.customerId,
        pete.view.instanceId,
      ]);
      expect(kept[0].email).to.equal(pete.email);
      archiveFile = path.join(h.config.lifecycle.archiveDir, kept[0].location);
      expect(existsSync(archiveFile), 'the archive is kept').to.equal(true);
    } finally {
      // An operator revokes the privilege (whatever happened above: the harness must be able to drop the role).
      await h.db.query(`REVOKE SELECT ON audit FROM "${role}"`);
    }

    // The operator retries the archive, then runs the waiting purge at once.
    expect(await bullBoardAction(h, 'lifecycle', archiveId, 'retry')).to.equal(204);
    await h.completedJob('lifecycle', archiveId);
    expect((await h.waitForStatus(pete.customerId, ['archived'])).status).to.equal('archived');
    expect(await bullBoardAction(h, 'lifecycle', purgeId, 'promote')).to.equal(204);
    await h.completedJob('lifecycle', purgeId);

    expect((await h.waitForStatus(pete.customerId, ['purged'])).status).to.equal('purged');
    const { rows: purged } = await h.db.query('SELECT email, name FROM customers WHERE id = $1', [pete.view.customerId]);
    expect(purged[0]).to.deep.equal({ email: null, name: null });
    expect(existsSync(archiveFile), 'the archive is deleted').to.equal(false);
    const { rows: roles } = await h.db.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
    expect(roles).to.have.length(0);
    const actions = await trail(pete);
    expect(actions.slice(actions.indexOf('instance.cancelled'))).to.deep.equal([
      'instance.cancelled', 'lifecycle.failed', 'instance.archived', 'instance.purged',
    ]);
  });

  it('reactivates an ended customer through the admin endpoint, with a new key and their data', async () => {
    const rhea = customers.rhea!;
    await remember(rhea, 'Rhea sings in a choir');
    await deprovision(rhea);
    await h.waitForStatus(rhea.customerId, ['archived'], 20_000);

    const reactivated = await h.admin(`/api/admin/customers/${rhea.customerId}/reactivate`, { method: 'POST' });
    expect(reactivated.status).to.equal(202);
    expect(await reactivated.json()).to.deep.equal({ reactivating: rhea.view.instanceId });
    const view = await h.waitForStatus(rhea.customerId, ['active', 'failed'], 60_000);
    expect(view.status, JSON.stringify(view.failure)).to.equal('active');
    expect(view.workspaceId).to.equal(rhea.view.workspaceId);
    await waitUntil(async () => keyOf(rhea.email) !== rhea.key);
    const back: Customer = { ...rhea, view, key: keyOf(rhea.email)! };

    expect((await call(back, '/status', { key: rhea.key }))?.status, 'the old key').to.equal(401);
    const memories = (await (await call(back, '/api/memory'))!.json()) as { memories: { content: string }[] };
    expect(memories.memories.map((m) => m.content)).to.deep.equal(['Rhea sings in a choir']);
    const { rows } = await h.db.query(`SELECT actor, action FROM audit WHERE instance_id = $1 AND action LIKE 'instance.reactivat%'`, [
      rhea.view.instanceId,
    ]);
    expect(rows).to.have.deep.members([
      { actor: 'admin-api', action: 'instance.reactivation_requested' },
      { actor: 'worker', action: 'instance.reactivated' },
    ]);

    const again = await h.admin(`/api/admin/customers/${rhea.customerId}/reactivate`, { method: 'POST' });
    expect(again.status).to.equal(409);
    expect(await again.json()).to.include({ error: 'not_ended' });
    expect((await h.admin('/api/admin/customers/cus_nobody/reactivate', { method: 'POST' })).status).to.equal(404);
  });

  it('refuses to reactivate a purged customer, who has no email address left (409)', async () => {
    const finn = customers.finn!; // deprovisioned in before()
    await h.waitForStatus(finn.customerId, ['purged'], 30_000);
    const refused = await h.admin(`/api/admin/customers/${finn.customerId}/reactivate`, { method: 'POST' });
    expect(refused.status).to.equal(409);
    expect(await refused.json()).to.include({ error: 'no_email' });
    const { rows } = await h.db.query(`SELECT 1 FROM audit WHERE instance_id = $1 AND action = 'instance.reactivation_requested'`, [
      finn.view.instanceId,
    ]);
    expect(rows).to.have.length(0);
  });

  it('fails an archive the archive store refuses, with one incident, and keeps working', async () => {
    const gus = await signUp('gus@example.com', 'admin');
    await blockArchiveStore(gus);
    const canceledAt = await deprovision(gus);
    const archive = await waitForJob(h, 'lifecycle', `${gus.view.workspaceId}-archive-${canceledAt}`, ['failed']);
    expect(archive.failedReason).to.include('EEXIST');
    const [incident] = await waitForIncidents(h, gus.view.instanceId, 'lifecycle.failed');
    expect(incident!.detail).to.include({ step: 'archive' });
    expect((await h.waitForStatus(gus.customerId, ['cancelled'])).status).to.equal('cancelled');
    expect(await resources(gus), 'nothing deleted').to.deep.equal({ service: 1, database: 1 });
  });
});
