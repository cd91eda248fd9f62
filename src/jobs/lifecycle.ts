/**
 * After a subscription ends: cancel at once (service stopped, key revoked), archive after ARCHIVE_AFTER (database
 * and workspace exported, verified, then deleted with the service), purge after PURGE_AFTER (archive and personal
 * data deleted; Stripe ids and the audit trail stay). Each job is idempotent, holds the instance's lock while it
 * works, and records its transition in the audit log. Delayed jobs have ids derived from the subscription and
 * Stripe's canceled_at, so a repeated cancellation schedules nothing twice.
 */
import { DelayedError } from 'bullmq';
import { ARCHIVED_TABLES, readArchive } from '../db/archiveFormat.ts';
import type { InstanceWithCustomer } from '../db/instances.ts';
import { canHappen, isEnded, isRunning, provisioningUnderway } from '../instances/stateMachine.ts';
import { PermanentError } from '../errors.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../instances/secrets.ts';
import { stopProvisionFlow } from '../operations/provisionFlow.ts';
import { configureService } from '../operations/service.ts';
import { teardownInstance } from '../operations/teardown.ts';
import { OVERDUE, PAID } from '../providers/stripe.ts';
import type { DunningData, LifecycleData, PaymentData, ReactivateData, ResizeData } from '../queues/catalogue.ts';
import type { JobContext, JobHandle } from './context.ts';
import { planForPrice, PLANS } from '../plans.ts';
import { renderWorkspace } from '../workspace/render.ts';
import { withInstanceLock } from './instanceLock.ts';

type Outcome = Record<string, string | number>;

const PURGE_RETRY_MS = 60_000;

/** Whether a delayed archive or purge belongs to the instance's current cancellation (not one a reactivation undid). */
function ofThisCancellation(instance: InstanceWithCustomer, data: LifecycleData): boolean {
  return instance.cancelled_at !== null && Math.floor(instance.cancelled_at.getTime() / 1000) === data.canceledAt;
}

async function load(ctx: JobContext, id: string): Promise<InstanceWithCustomer> {
  const instance = await ctx.instances.byId(id);
  if (!instance) throw new PermanentError(`instance ${id} does not exist`);
  return instance;
}

export async function cancel(ctx: JobContext, job: JobHandle<LifecycleData>, token?: string): Promise<Outcome> {
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
    await ctx.customerDbs.revokeKeys(instance.id);
    await ctx.secrets.delete(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey);
    if (instance.service_id) await ctx.compute.stop(instance.service_id);
    await job.log('service stopped and API key revoked');
    await ctx.instances.transition(instance.id, 'cancelled', {
      actor: 'worker',
      set: { cancelled_at: new Date(canceledAtMs), archive_at: archiveAt, purge_at: purgeAt },
      detail: { canceledAt: new Date(canceledAtMs).toISOString(), archiveAt: archiveAt.toISOString(), purgeAt: purgeAt.toISOString() },
    });
    await ctx.jobs.addArchiveAndPurge(instance, job.data, { archiveAt, purgeAt });
    return { archiveAt: archiveAt.toISOString(), purgeAt: purgeAt.toISOString() };
  });
}

export async function archive(ctx: JobContext, job: JobHandle<LifecycleData>, token?: string): Promise<Outcome> {
  return withInstanceLock(ctx, job, token, job.data.instanceId, async (): Promise<Outcome> => {
    const instance = await load(ctx, job.data.instanceId);
    if (!canHappen(instance.status, 'archived')) return { skipped: `instance is ${instance.status}` };
    if (!ofThisCancellation(instance, job.data)) return { skipped: 'scheduled by an earlier cancellation' };
    let record = await ctx.archiveRecords.current(instance.id);
    if (!record && !(await ctx.customerDbs.exists(instance.id))) {
      // Never had a database (a provisioning that failed before create-branch): nothing to export, only to delete.
      await teardownInstance(ctx, instance);
      await ctx.instances.transition(instance.id, 'archived', {
        actor: 'worker',
        set: { archived_at: new Date(), access_url: null },
        detail: { nothing: 'no database was ever made' },
      });
      return { archived: 'nothing to export' };
    }
    if (!record) {
      const name = `${instance.workspace_id}/${job.data.canceledAt}.jsonl.gz`;
      record = await ctx.customerDbs.exportArchive(instance.id, instance.workspace_id, (stream) => ctx.archives.write(name, stream));
      await ctx.archiveRecords.save(instance.id, record);
      await job.log(`exported ${JSON.stringify(record.rowCounts)} into ${record.location} (${record.sizeBytes} bytes)`);
    }

    // Nothing is deleted until the archive reads back whole: same bytes, same rows.
    const check = await ctx.archives.checksum(record.location);
    if (check.sha256 !== record.sha256 || check.sizeBytes !== record.sizeBytes) {
      throw new PermanentError(`archive ${record.location} does not match what was written`);
    }
    const counts = await readArchive(ctx.archives.read(record.location));
    if (ARCHIVED_TABLES.some((table) => counts[table] !== record.rowCounts[table])) {
      throw new PermanentError(`archive ${record.location} rows differ from the export`);
    }
    await ctx.archiveRecords.markVerified(instance.id);

    await teardownInstance(ctx, instance);
    await ctx.instances.transition(instance.id, 'archived', {
      actor: 'worker',
      set: { archived_at: new Date(), access_url: null },
      detail: { location: record.location, sizeBytes: record.sizeBytes, sha256: record.sha256, rows: record.rowCounts },
    });
    return { location: record.location, sizeBytes: record.sizeBytes, sha256: record.sha256 };
  });
}

export async function purge(ctx: JobContext, job: JobHandle<LifecycleData>, token?: string): Promise<Outcome> {
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
    const stored = await ctx.archiveRecords.current(instance.id);
    if (stored) {
      await ctx.archives.delete(stored.location);
      deleted.push(`archive ${stored.location}`);
    }
    await ctx.archiveRecords.markDeleted(instance.id);
    // Personal data held by the control plane: the customer's email and name, and the Stripe event payloads that
    // carry them. The Stripe ids stay (for accounting) and so does the audit trail.
    await ctx.subscriptions.forgetCustomer(instance.customer_id);
    deleted.push('customer email and name');
    if (instance.stripe_customer_id) {
      const scrubbed = await ctx.stripeEvents.scrubCustomer(instance.stripe_customer_id);
      deleted.push(`${scrubbed} Stripe event payloads`);
    }
    await ctx.instances.transition(instance.id, 'purged', { actor: 'worker', set: { purged_at: new Date() }, detail: { deleted } });
    return { deleted: deleted.join(', ') };
  });
}

/**
 * A plan change, in place: the service gets the new plan's variables (message limit, features) and CPU and memory,
 * and restarts on them; the new plan's skill files are added to the workspace (nothing the customer changed is
 * overwritten) and STATE.json records the plan. The database, its memories and the key stay as they are.
 */
export async function resize(ctx: JobContext, job: JobHandle<ResizeData>, token?: string): Promise<Outcome> {
  return withInstanceLock(ctx, job, token, job.data.instanceId, async (): Promise<Outcome> => {
    const instance = await load(ctx, job.data.instanceId);
    const plan = PLANS[job.data.plan];
    if (!isRunning(instance.status)) return { skipped: `instance is ${instance.status}` };
    if (instance.plan === plan.name) return { unchanged: plan.name };
    if (!instance.service_id || !instance.email) throw new PermanentError('instance has no service or customer email');
    const files = renderWorkspace({
      workspaceId: instance.workspace_id,
      customer: { name: instance.customer_name, email: instance.email },
      plan,
      createdAt: instance.provision_started_at,
    });
    await ctx.customerDbs.updateWorkspace(instance.id, {
      add: files.filter((f) => f.path.startsWith('skills/')),
      replace: files.filter((f) => f.path === 'STATE.json'),
    });
    await configureService(ctx, instance, instance.service_id, plan);
    const { deploymentId } = await ctx.compute.deploy(instance.service_id);
    await ctx.subscriptions.setPlan(instance.subscription_id, plan.name);
    await ctx.instances.update(instance.id, { plan: plan.name });
    await ctx.audit.record({
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
export async function reactivate(ctx: JobContext, job: JobHandle<ReactivateData>, token?: string): Promise<Outcome> {
  return withInstanceLock(ctx, job, token, job.data.instanceId, async (): Promise<Outcome> => {
    const instance = await load(ctx, job.data.instanceId);
    if (!isEnded(instance.status)) return { skipped: `instance is ${instance.status}` };
    if (instance.cancelled_at) await ctx.jobs.removeArchiveAndPurge(instance, Math.floor(instance.cancelled_at.getTime() / 1000));
    const generation = instance.generation + 1;
    await ctx.instances.transition(instance.id, 'reactivated', {
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

/**
 * The grace after a failed payment is over: if Stripe still has the subscription past_due or unpaid, the service is
 * stopped and the key refused with 402 (data kept); otherwise nothing happens.
 */
export async function suspend(ctx: JobContext, job: JobHandle<PaymentData>, token?: string): Promise<Outcome> {
  return withInstanceLock(ctx, job, token, job.data.instanceId, async (): Promise<Outcome> => {
    const instance = await load(ctx, job.data.instanceId);
    if (!canHappen(instance.status, 'suspended')) return { skipped: `instance is ${instance.status}` };
    const subscription = await ctx.stripe.subscription(instance.stripe_subscription_id);
    if (!OVERDUE.has(subscription.status)) return { skipped: `subscription is ${subscription.status}` };
    await ctx.customerDbs.setSuspension(instance.id, `the subscription's payment is overdue (${subscription.status}); update the payment method to resume`);
    if (instance.service_id) await ctx.compute.stop(instance.service_id);
    await ctx.instances.transition(instance.id, 'suspended', { actor: 'worker', detail: { stripeStatus: subscription.status } });
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
export async function resume(ctx: JobContext, job: JobHandle<PaymentData>, token?: string): Promise<Outcome> {
  return withInstanceLock(ctx, job, token, job.data.instanceId, async (): Promise<Outcome> => {
    const instance = await load(ctx, job.data.instanceId);
    if (!canHappen(instance.status, 'resumed')) return { skipped: `instance is ${instance.status}` };
    const subscription = await ctx.stripe.subscription(instance.stripe_subscription_id);
    if (!PAID.has(subscription.status)) return { skipped: `subscription is ${subscription.status}` };
    await ctx.customerDbs.setSuspension(instance.id, null);
    const deployment = instance.service_id ? await ctx.compute.deploy(instance.service_id) : undefined;
    await ctx.instances.transition(instance.id, 'resumed', {
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
export async function dunningEmail(ctx: JobContext, job: JobHandle<DunningData>): Promise<Outcome> {
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
