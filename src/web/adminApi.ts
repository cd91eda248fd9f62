/** The operators' API (Authorization: Bearer ADMIN_TOKEN): instance status, and provisioning comped customers. */
import { createHash, randomUUID } from 'node:crypto';
import Router from '@koa/router';
import type { Config } from '../config.ts';
import type { AuditLog } from '../db/audit.ts';
import type { InstanceHealth, InstanceListFilter } from '../db/instanceHealth.ts';
import { UUID, type Instances, type InstanceWithCustomer } from '../db/instances.ts';
import type { StepLedger } from '../db/steps.ts';
import { canHappen, INSTANCE_STATUSES, isEnded, type InstanceEvent } from '../instances/stateMachine.ts';
import { isPlanName, PLANS } from '../../core/plans.ts';
import { startProvisioning } from '../provisioning.ts';
import type { JobQueue } from '../queues/jobQueue.ts';
import { QUEUES } from '../queues/catalogue.ts';
import { inspectFleet, type InspectContext } from '../jobs/fleet/reconcile.ts';
import { KEY_ROTATION_STATUSES } from '../jobs/lifecycle/rotateKey.ts';
import { maskSecrets } from '../../core/logger.ts';
import { requireAdminToken } from './auth.ts';
import { welcomeUrl } from '../instances/welcomeLink.ts';
import { HttpError } from '../../core/http/httpError.ts';
import { readJsonBody } from '../../core/http/rawBody.ts';

const EMAIL = /^[^@\s<>"]{1,64}@[^@\s<>"]{1,253}\.[^@\s<>".]{2,63}$/;

const HEALTH_FILTERS = ['healthy', 'degraded', 'down', 'unknown'] as const;
const LIST_LIMIT = { default: 50, max: 200 };

export function adminApi(deps: { config: Config; instances: Instances; steps: StepLedger; audit: AuditLog; jobs: JobQueue; health: InstanceHealth } & InspectContext): Router {
  const router = new Router({ prefix: '/api' });
  router.use(requireAdminToken(deps.config.admin.token));

  router.get('/customers/:customerRef/instance', async (ctx) => {
    const instance = await deps.instances.forCustomer(ctx.params.customerRef!);
    if (!instance) throw new HttpError(404, 'not_found', 'no instance for this customer');
    const [steps, health] = await Promise.all([deps.steps.list(instance.id), deps.health.view(instance.id)]);
    ctx.body = {
      instanceId: instance.id,
      customerId: instance.customer_id,
      workspaceId: instance.workspace_id,
      accessUrl: instance.access_url,
      status: instance.status,
      plan: instance.plan,
      failure: instance.failed_step ? { step: instance.failed_step, reason: instance.failure_reason } : null,
      cancelledAt: instance.cancelled_at,
      archiveAt: instance.archived_at ? null : instance.archive_at,
      archivedAt: instance.archived_at,
      purgeAt: instance.purged_at ? null : instance.purge_at,
      purgedAt: instance.purged_at,
      steps: steps.map((s) => ({ name: s.name, state: s.state, startedAt: s.started_at, finishedAt: s.finished_at })),
      // What the health monitor last saw; null until it has probed the instance (only active ones are probed).
      health,
    };
  });

  /** Instances newest first, with their health: ?status=&health=&limit=, and ?cursor= from the previous page. */
  router.get('/admin/instances', async (ctx) => {
    const { instances, next } = await deps.health.list(listFilter(ctx.query));
    ctx.body = { instances, nextCursor: next ? Buffer.from(`${next.createdAt}|${next.id}`).toString('base64url') : null };
  });

  router.post('/admin/provision', async (ctx) => {
    const body = (await readJsonBody(ctx.req)) as { email?: unknown; plan?: unknown; name?: unknown } | null;
    const problems: string[] = [];
    const email = typeof body?.email === 'string' ? body.email.trim() : '';
    if (!EMAIL.test(email)) problems.push('email must be an email address');
    if (!isPlanName(body?.plan)) problems.push(`plan must be one of ${Object.keys(PLANS).join(', ')}`);
    const name = body?.name === undefined || body.name === null ? null : typeof body.name === 'string' ? body.name.trim().slice(0, 200) : undefined;
    if (name === undefined) problems.push('name, when given, must be a string');
    if (problems.length) throw new HttpError(400, 'invalid_request', problems.join('; '));

    // With an Idempotency-Key, repeating the request provisions nothing new.
    const idempotencyKey = ctx.get('idempotency-key');
    const ref = idempotencyKey ? createHash('sha256').update(idempotencyKey).digest('hex').slice(0, 32) : randomUUID();
    const instance = await deps.instances.record({
      stripeCustomerId: null,
      subscriptionRef: `comp_${ref}`,
      email,
      name: name ?? null,
      priceId: null,
      plan: PLANS[body!.plan as keyof typeof PLANS],
      subscriptionStatus: 'active',
      comped: true,
      actor: 'admin-api',
    }, { compute: deps.config.computeProvider, database: deps.config.databaseProvider });
    const started = await startProvisioning(deps.jobs, instance);
    ctx.status = started ? 202 : 200;
    ctx.body = {
      customerId: instance.customer_id,
      workspaceId: instance.workspace_id,
      instanceId: instance.id,
      // For the customer: their progress, then their key once (a comped customer has no Checkout Session to show it).
      welcomeUrl: welcomeUrl(deps.config.publicUrl, deps.config.secretsKey, instance.id),
    };
  });

  /** Ends a customer's instance now, as a cancelled subscription would: stopped at once, archived and purged later. */
  router.post('/admin/customers/:customerRef/deprovision', async (ctx) => {
    const instance = await deps.instances.forCustomer(ctx.params.customerRef!);
    if (!instance) throw new HttpError(404, 'not_found', 'no instance for this customer');
    if (!canHappen(instance.status, 'cancelled')) {
      throw new HttpError(409, 'not_running', `the instance is ${instance.status}`);
    }
    await deps.jobs.addCancel(instance, Math.floor(Date.now() / 1000));
    await deps.audit.record({ actor: 'admin-api', action: 'instance.deprovision_requested', customerId: instance.customer_id, instanceId: instance.id });
    ctx.status = 202;
    ctx.body = { deprovisioning: instance.id };
  });

  /** Brings an ended customer back on their current subscription (before the archive, between, or after the purge). */
  router.post('/admin/customers/:customerRef/reactivate', async (ctx) => {
    const instance = await deps.instances.forCustomer(ctx.params.customerRef!);
    if (!instance) throw new HttpError(404, 'not_found', 'no instance for this customer');
    if (!isEnded(instance.status)) {
      throw new HttpError(409, 'not_ended', `the instance is ${instance.status}`);
    }
    if (!instance.email) throw new HttpError(409, 'no_email', 'the customer was purged and has no email address; they can subscribe again');
    const plan = isPlanName(instance.plan) ? instance.plan : 'starter';
    await deps.jobs.addReactivate(instance, { subscriptionId: instance.subscription_id, plan }, `admin-${Date.now()}`);
    await deps.audit.record({ actor: 'admin-api', action: 'instance.reactivation_requested', customerId: instance.customer_id, instanceId: instance.id });
    ctx.status = 202;
    ctx.body = { reactivating: instance.id };
  });

  /** Re-runs the job that failed; the flow continues from that step. */
  router.post('/admin/instances/:instanceId/retry', async (ctx) => {
    const instance = await failedInstance(deps.instances, ctx.params.instanceId!, 'retried');
    const [queue, jobId] = (instance.failed_job ?? '').split('/');
    if (!queue || !jobId || !(await deps.jobs.retryFailed(queue, jobId))) {
      throw new HttpError(409, 'not_retriable', 'the failed job is no longer there to retry');
    }
    await deps.audit.record({ actor: 'admin-api', action: 'instance.retried', customerId: instance.customer_id, instanceId: instance.id });
    ctx.status = 202;
    ctx.body = { retried: instance.failed_job };
  });

  /** Gives up on a failed provisioning: removes its flow and undoes what it made, newest first. */
  router.post('/admin/instances/:instanceId/abandon', async (ctx) => {
    const instance = await failedInstance(deps.instances, ctx.params.instanceId!, 'abandoned');
    await deps.jobs.addAbandon(instance);
    ctx.status = 202;
    ctx.body = { abandoning: instance.id };
  });

  /** After fixing what made an instance crash-loop: the monitor restarts it again at its next failures. */
  router.post('/admin/instances/:instanceId/clear-crash-loop', async (ctx) => {
    const instanceId = ctx.params.instanceId!;
    const instance = UUID.test(instanceId) ? await deps.instances.byId(instanceId) : undefined;
    if (!instance) throw new HttpError(404, 'not_found', 'no such instance');
    if (!(await deps.health.clearCrashLoop(instance.id))) throw new HttpError(409, 'not_crash_looping', 'the instance is not in a crash loop');
    await deps.audit.record({ actor: 'admin-api', action: 'instance.crash_loop_cleared', customerId: instance.customer_id, instanceId: instance.id });
    ctx.body = { cleared: instance.id };
  });

  /** Replaces the customer's API key: a job issues the new key, revokes the others and emails the customer. */
  router.post('/admin/instances/:instanceId/rotate-key', async (ctx) => {
    const instanceId = ctx.params.instanceId!;
    const instance = UUID.test(instanceId) ? await deps.instances.byId(instanceId) : undefined;
    if (!instance) throw new HttpError(404, 'not_found', 'no such instance');
    if (!KEY_ROTATION_STATUSES.includes(instance.status)) {
      throw new HttpError(409, 'not_running', `the instance is ${instance.status}; only an active or suspended instance's key can be rotated`);
    }
    const jobId = await deps.jobs.addRotateKey(instance, randomUUID());
    ctx.status = 202;
    ctx.body = { rotating: instance.id, job: `${QUEUES.lifecycle}/${jobId}` };
  });

  /** The newest reconcile report (a dry run's too), whichever process made it. */
  router.get('/admin/reconcile', async (ctx) => {
    const report = await deps.reconciliation.lastReport();
    if (!report) throw new HttpError(404, 'not_found', 'no reconcile run has reported yet');
    ctx.body = report;
  });

  /** ?dryRun=true: a run here and now whose report is the answer, changing nothing. Otherwise a run is queued now. */
  router.post('/admin/reconcile', async (ctx) => {
    const dryRun = dryRunOf(ctx.query);
    if (!dryRun) {
      const jobId = await deps.jobs.addReconcile(randomUUID());
      await deps.audit.record({ actor: 'admin-api', action: 'reconcile.requested', detail: { jobId } });
      ctx.status = 202;
      ctx.body = { reconciling: `${QUEUES.fleet}/${jobId}` };
      return;
    }
    try {
      ctx.body = await inspectFleet(deps);
    } catch (err) {
      // A provider that does not answer the listing: the operator sees which, as a failed job would say.
      throw new HttpError(502, 'reconcile_failed', maskSecrets((err as Error).message).slice(0, 500));
    }
  });

  return router;
}

function listFilter(query: Record<string, string | string[] | undefined>): InstanceListFilter {
  const one = (name: string): string | undefined => {
    const value = query[name];
    if (Array.isArray(value)) throw new HttpError(400, 'invalid_request', `${name} must be given once`);
    return value === '' ? undefined : value;
  };
  const problems: string[] = [];
  const status = one('status');
  if (status !== undefined && !(INSTANCE_STATUSES as readonly string[]).includes(status)) problems.push(`status must be one of ${INSTANCE_STATUSES.join(', ')}`);
  const health = one('health');
  if (health !== undefined && !(HEALTH_FILTERS as readonly string[]).includes(health)) problems.push(`health must be one of ${HEALTH_FILTERS.join(', ')}`);
  const limitText = one('limit');
  const limit = limitText === undefined ? LIST_LIMIT.default : /^\d{1,3}$/.test(limitText) ? Number(limitText) : NaN;
  if (!(limit >= 1 && limit <= LIST_LIMIT.max)) problems.push(`limit must be an integer from 1 to ${LIST_LIMIT.max}`);
  const cursor = one('cursor');
  let after: InstanceListFilter['after'];
  if (cursor !== undefined) {
    const [createdAt, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
    if (!id || !UUID.test(id) || !createdAt || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(createdAt)) problems.push('cursor must be a nextCursor this API gave');
    else after = { createdAt, id };
  }
  if (problems.length) throw new HttpError(400, 'invalid_request', problems.join('; '));
  return { status, health: health as InstanceListFilter['health'], after, limit };
}

/**
 * The reconcile request's one parameter: dryRun, true or false (absent: false). Anything else is refused, a
 * misspelt dryRun above all, which would otherwise start a run that acts.
 */
function dryRunOf(query: Record<string, string | string[] | undefined>): boolean {
  const unknown = Object.keys(query).filter((name) => name !== 'dryRun');
  if (unknown.length) throw new HttpError(400, 'invalid_request', `unknown query parameter ${unknown.join(', ')}: only dryRun (true or false)`);
  const value = query.dryRun;
  if (value === undefined) return false;
  if (value !== 'true' && value !== 'false') throw new HttpError(400, 'invalid_request', 'dryRun must be true or false, given once');
  return value === 'true';
}

/** A failed instance, to which an operator's `event` (a retry, abandoning it) can happen. */
async function failedInstance(instances: Instances, instanceId: string, event: InstanceEvent): Promise<InstanceWithCustomer> {
  const instance = UUID.test(instanceId) ? await instances.byId(instanceId) : undefined;
  if (!instance) throw new HttpError(404, 'not_found', 'no such instance');
  if (!canHappen(instance.status, event)) throw new HttpError(409, 'not_failed', `the instance is ${instance.status}, not failed`);
  return instance;
}
