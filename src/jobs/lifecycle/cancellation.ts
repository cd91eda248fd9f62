/**
 * After a subscription ends: cancel at once (service stopped, key revoked), archive after ARCHIVE_AFTER (database
 * and workspace exported, verified, then deleted with the service), purge after PURGE_AFTER (archive and personal
 * data deleted; Stripe ids and the audit trail stay). Each job is idempotent, holds the instance's lock while it
 * works, and records its transition in the audit log. Delayed jobs have ids derived from the subscription and
 * Stripe's canceled_at, so a repeated cancellation schedules nothing twice.
 */
import { DelayedError } from 'bullmq';
import { ARCHIVED_TABLES, readArchive } from '../../../core/archiveFormat.ts';
import type { InstanceWithCustomer } from '../../db/instances.ts';
import { PermanentError } from '../../errors.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../instances/secrets.ts';
import { canHappen, provisioningUnderway } from '../../instances/stateMachine.ts';
import { stopProvisionFlow } from '../../operations/provisionFlow.ts';
import { teardownInstance } from '../../operations/teardown.ts';
import { deleteAllBackups } from '../../operations/backup.ts';
import type { LifecycleData } from '../../queues/catalogue.ts';
import type { JobContext, JobHandle } from '../context.ts';
import { withLockedInstance, type Outcome } from './lockedInstance.ts';

const PURGE_RETRY_MS = 60_000;

/** Whether a delayed archive or purge belongs to the instance's current cancellation (not one a reactivation undid). */
function ofThisCancellation(instance: InstanceWithCustomer, data: LifecycleData): boolean {
  return instance.cancelled_at !== null && Math.floor(instance.cancelled_at.getTime() / 1000) === data.canceledAt;
}

export async function cancel(ctx: JobContext, job: JobHandle<LifecycleData>, token?: string): Promise<Outcome> {
  return withLockedInstance(ctx, job, token, async (instance): Promise<Outcome> => {
    if (!canHappen(instance.status, 'cancelled')) return { skipped: `instance is ${instance.status}` };
    if (job.data.subscriptionId && job.data.subscriptionId !== instance.subscription_id) {
      return { skipped: 'the instance has moved on to a newer subscription of the customer' };
    }
    const { lifecycle } = ctx.config;
    const canceledAtMs = job.data.canceledAt * 1000;
    const archiveAt = new Date(canceledAtMs + lifecycle.archiveAfterMs);
    const purgeAt = new Date(canceledAtMs + lifecycle.purgeAfterMs);

    // A provisioning still under way is stopped first, so no step of it deploys or issues a key after this: no
    // further step runs from now on, and the flow is removed once the step running now (if any) has finished.
    if (provisioningUnderway(instance.status)) {
      if (!instance.cancel_requested_at) await ctx.instances.update(instance.id, { cancel_requested_at: new Date() });
      await stopProvisionFlow(ctx, instance, job, token);
    }
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
  return withLockedInstance(ctx, job, token, async (instance): Promise<Outcome> => {
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
  return withLockedInstance(ctx, job, token, async (instance): Promise<Outcome> => {
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
    const backups = await deleteAllBackups(ctx, instance);
    if (backups) deleted.push(`${backups} backups`);
    // Personal data held by the control plane: the customer's email and name, and the Stripe event payloads that
    // carry them. The Stripe ids stay (for accounting) and so does the audit trail. A returning customer's other
    // instance still needs them (its emails, its events' retries): then they stay until that one is purged too.
    if (await ctx.subscriptions.forgetCustomer(instance.customer_id, instance.id)) {
      deleted.push('customer email and name');
      if (instance.stripe_customer_id) {
        const scrubbed = await ctx.stripeEvents.scrubCustomer(instance.stripe_customer_id);
        deleted.push(`${scrubbed} Stripe event payloads`);
      }
    } else {
      deleted.push('nothing of the customer: another instance of theirs is not purged');
    }
    await ctx.instances.transition(instance.id, 'purged', { actor: 'worker', set: { purged_at: new Date() }, detail: { deleted } });
    return { deleted: deleted.join(', ') };
  });
}
