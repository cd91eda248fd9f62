/**
 * restore: puts a verified backup back as the instance's database, holding the instance's lock while it works and
 * no worker slot while it waits (for the database provider, the deployment, the health check).
 *
 * 1. The backup is read back whole (checksum, rows): one that does not match is refused, nothing touched.
 * 2. A 'restore' backup of the live data is taken.
 * 3. A fresh database (one per run, restoreDatabaseName) gets the runtime's schema, the backup, and the live
 *    database's keys and settings as they are now (so the customer's key works even if rotated since the backup).
 * 4. The service is stopped, the instance's database swapped to the fresh one, the service configured on it (on the
 *    fleet settings generation the instance runs: a restore changes its data, not its settings) and deployed, and
 *    its /health polled until it answers 200 (a suspended instance's service is configured and stays stopped until
 *    the customer pays).
 * 5. Then the old database is deleted. On any failure before that, the old database is swapped back and the
 *    service redeployed on it, the fresh database deleted, the run recorded failed, and the job fails for good (its
 *    one incident alerts operators).
 */
import { DelayedError } from 'bullmq';
import { planByName } from '../../../core/plans.ts';
import type { InstanceWithCustomer } from '../../db/instances.ts';
import { errorMessage, PermanentError } from '../../errors.ts';
import { logInstanceEvent } from '../../instances/eventLog.ts';
import { resourceRefs, restoreDatabaseName } from '../../instances/resources.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../instances/secrets.ts';
import { backupNow, verifyStoredArchive } from '../../operations/backup.ts';
import { raiseProviderAlert } from '../../operations/incidents.ts';
import { configureService } from '../../operations/service.ts';
import { probeHealth } from '../../operations/runtimeHealth.ts';
import type { DatabaseRef } from '../../providers/types.ts';
import type { RestoreData } from '../../queues/catalogue.ts';
import { maskSecrets } from '../../../core/logger.ts';
import type { JobContext, JobHandle } from '../context.ts';
import { withLockedInstance, type Outcome } from '../lifecycle/lockedInstance.ts';
import { BACKED_UP_STATUSES } from './backup.ts';

const POLL_MS = { min: 250, max: 5_000 };

type RestoreJob = JobHandle<RestoreData>;

/** The restore failed and was undone (or never touched anything): the reason is the job's failure. */
class RestoreFailed extends PermanentError {}

export async function restore(ctx: JobContext, job: RestoreJob, token?: string): Promise<Outcome> {
  return withLockedInstance(ctx, job, token, async (instance): Promise<Outcome> => {
    const run = await ctx.backups.restoreById(job.data.restoreId);
    if (!run) throw new PermanentError(`restore run ${job.data.restoreId} does not exist`);
    if (run.state !== 'running') return { skipped: `restore run is ${run.state}` };
    try {
      // A run that died after the restored database took over (say, while deleting the old one) finishes it again.
      if (job.data.committed && job.data.swapped && job.data.restored) return await finish(ctx, job, instance, { swapped: job.data.swapped, restored: job.data.restored });
      return job.data.swapped ? await afterSwap(ctx, job, token, instance) : await beforeSwap(ctx, job, token, instance);
    } catch (err) {
      if (err instanceof DelayedError || job.data.committed) throw err;
      const reason = maskSecrets(errorMessage(err)).slice(0, 2000);
      const undone = await undo(ctx, job, instance, reason).catch((undoErr: unknown) => `undoing it failed too: ${maskSecrets(errorMessage(undoErr))}`);
      await ctx.backups.restoreFinished(run.id, { state: 'failed', error: reason });
      await ctx.audit.record({
        actor: 'worker',
        action: 'instance.restore_failed',
        customerId: instance.customer_id,
        instanceId: instance.id,
        detail: { restoreId: run.id, backupId: run.backupId, reason, undone },
      });
      throw new RestoreFailed(`restore of backup ${run.backupId} failed (${undone}): ${reason}`);
    }
  });
}

/** Steps 1 to 4 up to the deployment: nothing of the live instance is changed before the service is stopped. */
async function beforeSwap(ctx: JobContext, job: RestoreJob, token: string | undefined, instance: InstanceWithCustomer): Promise<Outcome> {
  const run = (await ctx.backups.restoreById(job.data.restoreId))!;
  if (!BACKED_UP_STATUSES.includes(instance.status)) throw new Error(`the instance is ${instance.status}`);
  if (!instance.service_id) throw new Error('the instance has no service');
  const plan = planByName(instance.plan ?? '');
  if (!plan) throw new Error(`the instance has no known plan (${instance.plan ?? 'none'})`);
  const backup = await ctx.backups.byId(run.backupId);
  if (!backup || backup.instanceId !== instance.id || backup.state !== 'verified' || !backup.location || !backup.sha256) {
    throw new Error(`backup ${run.backupId} is not a verified backup of this instance`);
  }
  const record = { location: backup.location, sizeBytes: backup.sizeBytes ?? 0, sha256: backup.sha256, rowCounts: backup.rowCounts ?? {} };
  if (!run.startedAt) {
    // Read back whole before anything is touched: a backup altered in the store is refused here.
    await verifyStoredArchive(ctx, record);
    await ctx.backups.restoreStarted(run.id, {});
    await job.log(`backup ${backup.id} verified`);
  }
  if (!run.preBackupId) {
    const pre = await backupNow(ctx, instance, 'restore');
    await ctx.backups.restoreStarted(run.id, { preBackupId: pre.backupId });
    await job.log(`live data backed up first: backup ${pre.backupId}`);
  }

  const name = restoreDatabaseName(instance.workspace_id, run.id);
  await ctx.backups.restoreStarted(run.id, { databaseName: name });
  const made = await ctx.database.ensureDatabase(name, job.data.database);
  for (const alert of made.alerts ?? []) await raiseProviderAlert(ctx, job, alert);
  if ('pending' in made) {
    const waitingSince = job.data.waitingSince ?? Date.now();
    if (Date.now() - waitingSince > ctx.config.databaseReadyTimeoutMs) throw new Error(`the fresh database was not ready in time: ${made.detail}`);
    await job.updateData({ ...job.data, database: made.pending, waitingSince });
    await job.moveToDelayed(Date.now() + made.retryInMs, token);
    throw new DelayedError();
  }
  const restored: DatabaseRef = { branchId: made.ready.branchId, databaseName: made.ready.databaseName, roleName: made.ready.roleName };
  await job.updateData({ ...job.data, restored });
  const counts = await ctx.customerDbs.loadRestore(instance.id, made.ready.connectionUrl, () => ctx.archives.read(record.location));
  await job.log(`backup loaded into ${restored.roleName}: ${JSON.stringify(counts ?? 'by an earlier attempt')}`);

  // The swap: from here on a failure swaps back. The old database's URL is kept sealed until the end.
  const owner = instanceOwner(instance.id);
  const liveUrl = await ctx.customerDbs.connectionUrl(instance.id);
  await ctx.secrets.put(owner, INSTANCE_SECRETS.previousDatabaseUrl, liveUrl);
  const swapped = resourceRefs(instance).database;
  await job.updateData({ ...job.data, restored, swapped });
  await ctx.compute.stop(instance.service_id);
  await ctx.customerDbs.register(instance.id, made.ready.connectionUrl);
  await ctx.instances.update(instance.id, { branch_id: restored.branchId, database_name: restored.databaseName, database_role: restored.roleName });
  await configureService(ctx, instance, instance.service_id, plan, 'instance');
  if (instance.status === 'suspended') {
    // Its service stays stopped until the customer pays: it will start on the restored database then.
    await job.log(`database swapped to ${restored.roleName}; the suspended service stays stopped`);
    return finish(ctx, job, instance, { swapped, restored });
  }
  const { deploymentId } = await ctx.compute.deploy(instance.service_id);
  const deadline = Date.now() + ctx.config.deployTimeoutMs + ctx.config.healthCheck.timeoutMs;
  await job.updateData({ ...job.data, restored, swapped, deploymentId, deadline, polls: 0 });
  await job.log(`service stopped, database swapped to ${restored.roleName}, deployment ${deploymentId} started`);
  await job.moveToDelayed(Date.now() + POLL_MS.min, token);
  throw new DelayedError();
}

/** Step 4's wait (the deployment, then /health) and step 5. */
async function afterSwap(ctx: JobContext, job: RestoreJob, token: string | undefined, instance: InstanceWithCustomer): Promise<Outcome> {
  const data = job.data as Required<Pick<RestoreData, 'swapped' | 'restored' | 'deploymentId' | 'deadline'>> & RestoreData;
  // Swapped but never deployed (the run died in between): nothing to wait for, so it is undone.
  if (!data.deploymentId || data.deadline === undefined) throw new Error('the run stopped between the swap and the deployment');
  if (!BACKED_UP_STATUSES.includes(instance.status)) throw new Error(`the instance became ${instance.status} during the restore`);
  if (!instance.service_id || !instance.access_url) throw new Error('the instance has no service');
  const { state, detail } = await ctx.compute.deploymentState(instance.service_id, data.deploymentId);
  if (state === 'failed') throw new Error(`the deployment on the restored database failed${detail ? `: ${detail}` : ''}`);
  const { ok: healthy, last } = state === 'success' ? await probeHealth(instance.access_url) : { ok: false, last: state };
  if (!healthy) {
    if (Date.now() > data.deadline) throw new Error(`the service was not healthy on the restored database in time (last: ${last})`);
    const polls = (data.polls ?? 0) + 1;
    await job.updateData({ ...data, polls });
    await job.moveToDelayed(Date.now() + Math.min(POLL_MS.min * 2 ** polls, POLL_MS.max), token);
    throw new DelayedError();
  }

  return finish(ctx, job, instance, data);
}

/** Step 5: the instance serves the restored data (a suspended one will): the old database goes, and its URL. */
async function finish(
  ctx: JobContext,
  job: RestoreJob,
  instance: InstanceWithCustomer,
  data: { swapped: DatabaseRef; restored: DatabaseRef },
): Promise<Outcome> {
  const run = (await ctx.backups.restoreById(job.data.restoreId))!;
  // The commit point: past it a failure (a retry after a crash) finishes the restore again, never swaps back onto
  // the old database, which may already be gone.
  if (!job.data.committed) await job.updateData({ ...job.data, committed: true });
  if (data.swapped.branchId !== data.restored.branchId) await ctx.database.deleteDatabase(data.swapped);
  await ctx.secrets.delete(instanceOwner(instance.id), INSTANCE_SECRETS.previousDatabaseUrl);
  await ctx.backups.restoreFinished(run.id, { state: 'succeeded' });
  await ctx.audit.record({
    actor: 'worker',
    action: 'instance.restored',
    customerId: instance.customer_id,
    instanceId: instance.id,
    detail: { restoreId: run.id, backupId: run.backupId, preBackupId: run.preBackupId, database: data.restored.branchId, replaced: data.swapped.branchId },
  });
  logInstanceEvent('restored', { instance: instance.id, workspace: instance.workspace_id, customer: instance.customer_id }, { backupId: run.backupId });
  return { restored: run.backupId, database: data.restored.branchId, preBackupId: run.preBackupId ?? '' };
}

/**
 * Puts things back as they were: the old database swapped back and the service redeployed on it (when it was
 * stopped for the swap and the instance still runs), the fresh database deleted. Answers what was done.
 */
async function undo(ctx: JobContext, job: RestoreJob, instance: InstanceWithCustomer, reason: string): Promise<string> {
  const { swapped, restored } = job.data;
  const owner = instanceOwner(instance.id);
  const done: string[] = [];
  if (swapped) {
    const previousUrl = await ctx.secrets.get(owner, INSTANCE_SECRETS.previousDatabaseUrl);
    if (previousUrl) {
      await ctx.customerDbs.register(instance.id, previousUrl);
      await ctx.instances.update(instance.id, { branch_id: swapped.branchId, database_name: swapped.databaseName, database_role: swapped.roleName });
      done.push(`database ${swapped.roleName} swapped back`);
    }
    const current = await ctx.instances.byId(instance.id);
    const plan = planByName(current?.plan ?? '');
    if (current && BACKED_UP_STATUSES.includes(current.status) && current.service_id && plan) {
      await configureService(ctx, current, current.service_id, plan, 'instance');
      if (current.status === 'active') {
        const { deploymentId } = await ctx.compute.deploy(current.service_id);
        done.push(`service redeployed on it (${deploymentId})`);
      } else {
        done.push('the suspended service configured on it, still stopped');
      }
    }
  }
  if (restored && restored.branchId !== swapped?.branchId) {
    await ctx.database.deleteDatabase(restored);
    done.push(`fresh database ${restored.roleName} deleted`);
  } else if (!restored && !swapped) {
    // The provider may have made (or placed) the fresh database before it was ready: deleted by its name, which
    // providers look a database up by when no id was recorded (nothing to do when there is none).
    const run = await ctx.backups.restoreById(job.data.restoreId);
    if (run?.databaseName) {
      await ctx.database.deleteDatabase({ branchId: run.databaseName, databaseName: run.databaseName, roleName: run.databaseName });
    }
  }
  await ctx.secrets.delete(owner, INSTANCE_SECRETS.previousDatabaseUrl);
  await job.log(`restore undone (${reason}): ${done.join('; ') || 'nothing was changed'}`);
  return done.length ? done.join('; ') : 'the live database was never changed';
}
