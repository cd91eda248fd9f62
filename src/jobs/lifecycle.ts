/**
 * After a subscription ends: cancel at once (service stopped, key revoked), archive after ARCHIVE_AFTER (database
 * and workspace exported, verified, then deleted with the service), purge after PURGE_AFTER (archive and personal
 * data deleted; Stripe ids and the audit trail stay). Each job is idempotent, holds the instance's lock while it
 * works, and records its transition in the audit log. Delayed jobs have ids derived from the subscription and
 * Stripe's canceled_at, so a repeated cancellation schedules nothing twice.
 */
import { DelayedError, type Job } from 'bullmq';
import { withCustomerDb } from '../db/customerDb.ts';
import { audit, instanceById, updateInstance, type InstanceWithCustomer } from '../db/instances.ts';
import { canHappen, isEnded, isRunning, provisioningUnderway, transition } from '../instances/stateMachine.ts';
import { PermanentError } from '../errors.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../instances/secrets.ts';
import { stopProvisionFlow } from '../operations/provisionFlow.ts';
import { configureService } from '../operations/service.ts';
import { teardownInstance } from '../operations/teardown.ts';
import { OVERDUE, PAID } from '../providers/stripe.ts';
import type { DunningData, LifecycleData, PaymentData, ReactivateData, ResizeData } from '../queues/catalogue.ts';
import type { JobContext } from './context.ts';
import { ARCHIVED_TABLES, exportStream, readArchive } from './archiveFormat.ts';
import { planForPrice, PLANS } from '../plans.ts';
import { fileSha256, renderWorkspace } from '../workspace/render.ts';
import { withInstanceLock } from './instanceLock.ts';

type Outcome = Record<string, string | number>;

const PURGE_RETRY_MS = 60_000;

/** Whether a delayed archive or purge belongs to the instance's current cancellation (not one a reactivation undid). */
function ofThisCancellation(instance: InstanceWithCustomer, data: LifecycleData): boolean {
  return instance.cancelled_at !== null && Math.floor(instance.cancelled_at.getTime() / 1000) === data.canceledAt;
}

async function load(ctx: JobContext, id: string): Promise<InstanceWithCustomer> {
  const instance = await instanceById(ctx.db, id);
  if (!instance) throw new PermanentError(`instance ${id} does not exist`);
  return instance;
}

export async function cancel(ctx: JobContext, job: Job<LifecycleData>, token?: string): Promise<Outcome> {
  return withInstanceLock(ctx, job, token, job.data.instanceId, async (): Promise<Outcome> => {
    const instance = await load(ctx, job.data.instanceId);
    if (!canHappen(instance.status, 'cancelled')) return { skipped: `instance is ${instance.status}` };
    const { lifecycle } = ctx.config;
    const canceledAtMs = job.data.canceledAt * 1000;
    const archiveAt = new Date(canceledAtMs + lifecycle.archiveAfterMs);
    const purgeAt = new Date(canceledAtMs + lifecycle.purgeAfterMs);

    // A provisioning still under way is stopped first, so no step of it deploys or issues a key after this.
    if (provisioningUnderway(instance.status)) await stopProvisionFlow(ctx, instance, job, token);
    // The key is refused from now on, even by a runtime something restarts: its hash is revoked where the runtime
    // checks it (within its two-second cache).
    await revokeKeys(ctx, instance);
    if (instance.service_id) await ctx.compute.stop(instance.service_id);
    await job.log('service stopped and API key revoked');
    await transition(ctx.db, instance.id, 'cancelled', {
      actor: 'worker',
      set: { cancelled_at: new Date(canceledAtMs), archive_at: archiveAt, purge_at: purgeAt },
      detail: { canceledAt: new Date(canceledAtMs).toISOString(), archiveAt: archiveAt.toISOString(), purgeAt: purgeAt.toISOString() },
    });
    await ctx.jobs.addArchiveAndPurge(instance, job.data, { archiveAt, purgeAt });
    return { archiveAt: archiveAt.toISOString(), purgeAt: purgeAt.toISOString() };
  });
}

async function revokeKeys(ctx: JobContext, instance: InstanceWithCustomer): Promise<void> {
  const databaseUrl = await ctx.secrets.get(instanceOwner(instance.id), INSTANCE_SECRETS.databaseUrl);
  if (databaseUrl) {
    await withCustomerDb(databaseUrl, (client) => client.query('UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL'));
  }
  await ctx.secrets.delete(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey);
}

export async function archive(ctx: JobContext, job: Job<LifecycleData>, token?: string): Promise<Outcome> {
  return withInstanceLock(ctx, job, token, job.data.instanceId, async (): Promise<Outcome> => {
    const instance = await load(ctx, job.data.instanceId);
    if (!canHappen(instance.status, 'archived')) return { skipped: `instance is ${instance.status}` };
    if (!ofThisCancellation(instance, job.data)) return { skipped: 'scheduled by an earlier cancellation' };
    const owner = instanceOwner(instance.id);
    const databaseUrl = await ctx.secrets.get(owner, INSTANCE_SECRETS.databaseUrl);
    const name = `${instance.workspace_id}/${job.data.canceledAt}.jsonl.gz`;

    let stored = await ctx.db.query<{ location: string; size_bytes: string; sha256: string; row_counts: Record<string, number> }>(
      'SELECT location, size_bytes, sha256, row_counts FROM archives WHERE instance_id = $1 AND deleted_at IS NULL',
      [instance.id],
    );
    if (!stored.rows[0] && !databaseUrl) {
      // Never had a database (a provisioning that failed before create-branch): nothing to export, only to delete.
      await teardownInstance(ctx, instance);
      await transition(ctx.db, instance.id, 'archived', {
        actor: 'worker',
        set: { archived_at: new Date(), access_url: null },
        detail: { nothing: 'no database was ever made' },
      });
      return { archived: 'nothing to export' };
    }
    if (!stored.rows[0]) {
      const written = await withCustomerDb(databaseUrl!, async (client) => {
        const { stream, counts } = exportStream(client, { workspaceId: instance.workspace_id });
        const result = await ctx.archives.write(name, stream);
        return { ...result, counts: await counts };
      });
      await ctx.db.query(
        `INSERT INTO archives (instance_id, location, size_bytes, sha256, row_counts) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (instance_id) DO UPDATE SET location = $2, size_bytes = $3, sha256 = $4, row_counts = $5, created_at = now(),
           verified_at = NULL, deleted_at = NULL`,
        [instance.id, written.location, written.sizeBytes, written.sha256, JSON.stringify(written.counts)],
      );
      await job.log(`exported ${JSON.stringify(written.counts)} into ${written.location} (${written.sizeBytes} bytes)`);
      stored = await ctx.db.query('SELECT location, size_bytes, sha256, row_counts FROM archives WHERE instance_id = $1', [instance.id]);
    }
    const record = stored.rows[0]!;

    // Nothing is deleted until the archive reads back whole: same bytes, same rows.
    const check = await ctx.archives.checksum(record.location);
    if (check.sha256 !== record.sha256 || check.sizeBytes !== Number(record.size_bytes)) {
      throw new PermanentError(`archive ${record.location} does not match what was written`);
    }
    const counts = await readArchive(ctx.archives.read(record.location));
    if (ARCHIVED_TABLES.some((table) => counts[table] !== record.row_counts[table])) {
      throw new PermanentError(`archive ${record.location} rows differ from the export`);
    }
    await ctx.db.query('UPDATE archives SET verified_at = now() WHERE instance_id = $1', [instance.id]);

    await teardownInstance(ctx, instance);
    await transition(ctx.db, instance.id, 'archived', {
      actor: 'worker',
      set: { archived_at: new Date(), access_url: null },
      detail: { location: record.location, sizeBytes: Number(record.size_bytes), sha256: record.sha256, rows: record.row_counts },
    });
    return { location: record.location, sizeBytes: Number(record.size_bytes), sha256: record.sha256 };
  });
}

export async function purge(ctx: JobContext, job: Job<LifecycleData>, token?: string): Promise<Outcome> {
  return withInstanceLock(ctx, job, token, job.data.instanceId, async (): Promise<Outcome> => {
    const instance = await load(ctx, job.data.instanceId);
    const archived = canHappen(instance.status, 'purged');
    if (!archived && !canHappen(instance.status, 'archived')) return { skipped: `instance is ${instance.status}` };
    if (!ofThisCancellation(instance, job.data)) return { skipped: 'scheduled by an earlier cancellation' };
    if (!archived) {
      // The archive has not happened yet (it is retrying, or waits for an operator): the purge comes back later.
      await job.log('not archived yet: the purge waits for the archive');
      await job.moveToDelayed(Date.now() + PURGE_RETRY_MS, token);
      throw new DelayedError();
    }
    const deleted: string[] = [];
    const { rows } = await ctx.db.query<{ location: string }>('SELECT location FROM archives WHERE instance_id = $1 AND deleted_at IS NULL', [instance.id]);
    for (const { location } of rows) {
      await ctx.archives.delete(location);
      deleted.push(`archive ${location}`);
    }
    await ctx.db.query('UPDATE archives SET deleted_at = now() WHERE instance_id = $1', [instance.id]);
    // Personal data held by the control plane: the customer's email and name, and the Stripe event payloads that
    // carry them. The Stripe ids stay (for accounting) and so does the audit trail.
    await ctx.db.query('UPDATE customers SET email = NULL, name = NULL, updated_at = now() WHERE id = $1', [instance.customer_id]);
    deleted.push('customer email and name');
    if (instance.stripe_customer_id) {
      const scrubbed = await ctx.db.query(
        `UPDATE stripe_events SET payload = jsonb_build_object('id', id, 'type', type, 'purged', true)
         WHERE payload->'data'->'object'->>'customer' = $1 OR payload->'data'->'object'->>'id' = $1`,
        [instance.stripe_customer_id],
      );
      deleted.push(`${scrubbed.rowCount} Stripe event payloads`);
    }
    await transition(ctx.db, instance.id, 'purged', { actor: 'worker', set: { purged_at: new Date() }, detail: { deleted } });
    return { deleted: deleted.join(', ') };
  });
}

/**
 * A plan change, in place: the service gets the new plan's variables (message limit, features) and CPU and memory,
 * and restarts on them; the new plan's skill files are added to the workspace (nothing the customer changed is
 * overwritten) and STATE.json records the plan. The database, its memories and the key stay as they are.
 */
export async function resize(ctx: JobContext, job: Job<ResizeData>, token?: string): Promise<Outcome> {
  return withInstanceLock(ctx, job, token, job.data.instanceId, async (): Promise<Outcome> => {
    const instance = await load(ctx, job.data.instanceId);
    const plan = PLANS[job.data.plan];
    if (!isRunning(instance.status)) return { skipped: `instance is ${instance.status}` };
    if (instance.plan === plan.name) return { unchanged: plan.name };
    if (!instance.service_id || !instance.email) throw new PermanentError('instance has no service or customer email');
    const databaseUrl = await ctx.secrets.get(instanceOwner(instance.id), INSTANCE_SECRETS.databaseUrl);
    if (!databaseUrl) throw new PermanentError('no database connection for this instance');

    const files = renderWorkspace({
      workspaceId: instance.workspace_id,
      customer: { name: instance.customer_name, email: instance.email },
      plan,
      createdAt: instance.provision_started_at,
    });
    await withCustomerDb(databaseUrl, async (client) => {
      for (const file of files.filter((f) => f.path.startsWith('skills/') || f.path === 'STATE.json')) {
        const overwrite = file.path === 'STATE.json';
        await client.query(
          `INSERT INTO workspace_files (path, content, sha256) VALUES ($1, $2, $3)
           ON CONFLICT (path) DO ${overwrite ? 'UPDATE SET content = EXCLUDED.content, sha256 = EXCLUDED.sha256, updated_at = now()' : 'NOTHING'}`,
          [file.path, file.content, fileSha256(file.content)],
        );
      }
    });
    await configureService(ctx, instance, instance.service_id, plan);
    const { deploymentId } = await ctx.compute.deploy(instance.service_id);
    await ctx.db.query('UPDATE subscriptions SET plan = $2, updated_at = now() WHERE id = $1', [instance.subscription_id, plan.name]);
    await updateInstance(ctx.db, instance.id, { plan: plan.name });
    await audit(ctx.db, {
      actor: 'worker',
      action: 'instance.resized',
      customerId: instance.customer_id,
      instanceId: instance.id,
      detail: { from: instance.plan, to: plan.name, deploymentId },
    });
    return { from: instance.plan ?? '', to: plan.name, deploymentId };
  });
}


/**
 * A customer comes back (a new subscription, or an operator). The pending archive and purge are called off and the
 * provisioning flow runs again as a new generation: before the archive it finds the service and database still
 * there and issues a new key; between archive and purge it makes them afresh and restores the archive into them;
 * after the purge it starts from nothing. Memories and conversations survive every path that still has them.
 */
export async function reactivate(ctx: JobContext, job: Job<ReactivateData>, token?: string): Promise<Outcome> {
  return withInstanceLock(ctx, job, token, job.data.instanceId, async (): Promise<Outcome> => {
    const instance = await load(ctx, job.data.instanceId);
    if (!isEnded(instance.status)) return { skipped: `instance is ${instance.status}` };
    if (instance.cancelled_at) await ctx.jobs.removeArchiveAndPurge(instance, Math.floor(instance.cancelled_at.getTime() / 1000));
    const generation = instance.generation + 1;
    await transition(ctx.db, instance.id, 'reactivated', {
      actor: 'worker',
      set: {
        generation,
        subscription_id: job.data.subscriptionId,
        plan: job.data.plan,
        api_key_hash: null,
        api_key_label: null,
        failed_step: null,
        failure_reason: null,
        failed_job: null,
        failure_alerted_at: null,
        cancelled_at: null,
        archive_at: null,
        purge_at: null,
        archived_at: null,
        purged_at: null,
        provision_started_at: new Date(),
        active_at: null,
      },
      detail: { from: instance.status, plan: job.data.plan, generation },
    });
    await ctx.jobs.addProvisionFlow({ instanceId: instance.id, workspaceId: instance.workspace_id, generation });
    return { from: instance.status, generation };
  });
}

async function setSuspension(ctx: JobContext, instance: InstanceWithCustomer, reason: string | null): Promise<void> {
  const databaseUrl = await ctx.secrets.get(instanceOwner(instance.id), INSTANCE_SECRETS.databaseUrl);
  if (!databaseUrl) throw new PermanentError('no database connection for this instance');
  await withCustomerDb(databaseUrl, (client) =>
    client.query(
      `INSERT INTO account_status (id, suspended_reason) VALUES (true, $1)
       ON CONFLICT (id) DO UPDATE SET suspended_reason = $1, updated_at = now()`,
      [reason],
    ),
  );
}

/**
 * The grace after a failed payment is over: if Stripe still has the subscription past_due or unpaid, the service is
 * stopped and the key refused with 402 (data kept); otherwise nothing happens.
 */
export async function suspend(ctx: JobContext, job: Job<PaymentData>, token?: string): Promise<Outcome> {
  return withInstanceLock(ctx, job, token, job.data.instanceId, async (): Promise<Outcome> => {
    const instance = await load(ctx, job.data.instanceId);
    if (!canHappen(instance.status, 'suspended')) return { skipped: `instance is ${instance.status}` };
    const subscription = await ctx.stripe.subscription(instance.stripe_subscription_id);
    if (!OVERDUE.has(subscription.status)) return { skipped: `subscription is ${subscription.status}` };
    await setSuspension(ctx, instance, `the subscription's payment is overdue (${subscription.status}); update the payment method to resume`);
    if (instance.service_id) await ctx.compute.stop(instance.service_id);
    await transition(ctx.db, instance.id, 'suspended', { actor: 'worker', detail: { stripeStatus: subscription.status } });
    if (instance.email) {
      await ctx.mailer.send({
        to: instance.email,
        subject: 'Your Clawdbot is paused',
        text: `Hello,\n\nWe could not collect the payment for your Clawdbot subscription, so your assistant is paused. Your data is kept.\nUpdate your payment method and it resumes right away.\n\nThe Clawdbot team\n`,
        messageId: `<suspended-${instance.workspace_id}-${job.id}@clawdbot>`,
      });
    }
    return { suspended: subscription.status };
  });
}

/** Paid again: the key is accepted and the service runs again. */
export async function resume(ctx: JobContext, job: Job<PaymentData>, token?: string): Promise<Outcome> {
  return withInstanceLock(ctx, job, token, job.data.instanceId, async (): Promise<Outcome> => {
    const instance = await load(ctx, job.data.instanceId);
    if (!canHappen(instance.status, 'resumed')) return { skipped: `instance is ${instance.status}` };
    const subscription = await ctx.stripe.subscription(instance.stripe_subscription_id);
    if (!PAID.has(subscription.status)) return { skipped: `subscription is ${subscription.status}` };
    await setSuspension(ctx, instance, null);
    const deployment = instance.service_id ? await ctx.compute.deploy(instance.service_id) : undefined;
    await transition(ctx.db, instance.id, 'resumed', {
      actor: 'worker',
      set: { past_due_since: null },
      detail: { deploymentId: deployment?.deploymentId ?? null },
    });
    // A plan change made while suspended was not applied then (resize acts on active instances): apply it now.
    const plan = subscription.priceId ? planForPrice(subscription.priceId, ctx.config.stripe.priceIds) : undefined;
    if (plan && plan.name !== instance.plan) await ctx.jobs.addResize(instance, plan.name, `resume-${job.id}`);
    return { resumed: subscription.status };
  });
}

/** A payment failed: the customer is told, with the grace before the assistant pauses. */
export async function dunningEmail(ctx: JobContext, job: Job<DunningData>): Promise<Outcome> {
  const instance = await load(ctx, job.data.instanceId);
  if (!instance.email) return { skipped: 'no email address' };
  const days = Math.max(1, Math.round(ctx.config.lifecycle.paymentGraceMs / 86_400_000));
  await ctx.mailer.send({
    to: instance.email,
    subject: 'Your Clawdbot payment did not go through',
    text: `Hello,\n\nThe latest payment for your Clawdbot subscription failed (attempt ${job.data.attempt}). Please update your payment method.\nYour assistant keeps running for now; if the payment is still overdue after about ${days} day${days === 1 ? '' : 's'}, it is paused until the payment goes through. Your data is kept either way.\n\nThe Clawdbot team\n`,
    messageId: `<dunning-${instance.workspace_id}-${job.id}@clawdbot>`,
  });
  return { sent: instance.email.replace(/^[^@]*/, '***') };
}
