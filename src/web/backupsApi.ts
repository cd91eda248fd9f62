/**
 * The operators' backup endpoints (Authorization: Bearer ADMIN_TOKEN): an instance's backups and restore runs, a
 * backup now, and a restore of one of its verified backups.
 */
import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import type { Config } from '../config.ts';
import type { AuditLog } from '../db/audit.ts';
import type { BackupRecords } from '../db/backups.ts';
import { UUID, type Instances, type InstanceWithCustomer } from '../db/instances.ts';
import { BACKED_UP_STATUSES } from '../jobs/backups/backup.ts';
import { QUEUES } from '../queues/catalogue.ts';
import type { JobQueue } from '../queues/jobQueue.ts';
import { HttpError } from '../../core/http/httpError.ts';
import { readJsonBody } from '../../core/http/rawBody.ts';
import { requireAdminToken } from './auth.ts';

export interface BackupsApiDeps {
  config: Config;
  instances: Instances;
  backups: BackupRecords;
  jobs: JobQueue;
  audit: AuditLog;
}

export function backupsApi(deps: BackupsApiDeps): Router {
  const router = new Router({ prefix: '/api/admin/instances/:instanceId' });
  router.use(requireAdminToken(deps.config.admin.token));

  const instanceOf = async (id: string): Promise<InstanceWithCustomer> => {
    const instance = UUID.test(id) ? await deps.instances.byId(id) : undefined;
    if (!instance) throw new HttpError(404, 'not_found', 'no such instance');
    return instance;
  };
  const mustRun = (instance: InstanceWithCustomer, what: string) => {
    if (!BACKED_UP_STATUSES.includes(instance.status)) {
      throw new HttpError(409, 'not_running', `the instance is ${instance.status}; only an active or suspended instance can be ${what}`);
    }
  };

  /** Its backups and restore runs, newest first. */
  router.get('/backups', async (ctx) => {
    const instance = await instanceOf(ctx.params.instanceId!);
    const [backups, restores] = await Promise.all([deps.backups.list(instance.id), deps.backups.restores(instance.id)]);
    ctx.body = { instanceId: instance.id, backups: backups.map(withoutInstance), restores: restores.map(withoutInstance) };
  });

  /** A backup now (it counts towards the plan's number like any other). */
  router.post('/backups', async (ctx) => {
    const instance = await instanceOf(ctx.params.instanceId!);
    mustRun(instance, 'backed up');
    const jobId = await deps.jobs.addBackupNow(instance, randomUUID());
    await deps.audit.record({ actor: 'admin-api', action: 'backup.requested', customerId: instance.customer_id, instanceId: instance.id, detail: { jobId } });
    ctx.status = 202;
    ctx.body = { backingUp: instance.id, job: `${QUEUES.backups}/${jobId}` };
  });

  /** `{ backupId }`: one of this instance's verified backups becomes its data (see src/jobs/backups/restore.ts). */
  router.post('/restore', async (ctx) => {
    const instance = await instanceOf(ctx.params.instanceId!);
    const body = (await readJsonBody(ctx.req)) as { backupId?: unknown } | null;
    const backupId = body?.backupId;
    if (typeof backupId !== 'string' || !UUID.test(backupId)) throw new HttpError(400, 'invalid_request', 'backupId must be a backup id');
    const backup = await deps.backups.byId(backupId);
    if (!backup || backup.instanceId !== instance.id) throw new HttpError(400, 'unknown_backup', 'no backup of this instance has this id');
    if (backup.state !== 'verified') throw new HttpError(400, 'backup_not_verified', `backup ${backupId} is ${backup.state}; only a verified backup can be restored`);
    mustRun(instance, 'restored');
    const run = await deps.backups.requestRestore(instance.id, backupId);
    if (!run) throw new HttpError(409, 'restore_running', 'a restore of this instance is under way');
    let jobId: string;
    try {
      jobId = await deps.jobs.addRestore(instance, run.id);
    } catch (err) {
      // No job will run it: the run must not stay running (it would refuse every later restore).
      await deps.backups.restoreFinished(run.id, { state: 'failed', error: `the restore job could not be queued: ${(err as Error).message}` });
      throw err;
    }
    await deps.audit.record({
      actor: 'admin-api',
      action: 'restore.requested',
      customerId: instance.customer_id,
      instanceId: instance.id,
      detail: { restoreId: run.id, backupId, jobId },
    });
    ctx.status = 202;
    ctx.body = { restoreId: run.id, backupId, job: `${QUEUES.backups}/${jobId}` };
  });

  return router;
}

/** A run as the listing shows it: all of it but the instance's id, which the listing names once. */
function withoutInstance<T extends { instanceId: string }>({ instanceId: _, ...run }: T): Omit<T, 'instanceId'> {
  return run;
}
