/**
 * The workers: one BullMQ Worker per queue, each dispatching by job name through the catalogue. Waiting steps re-schedule themselves,
 * so a worker's concurrency bounds the steps doing work, not the provisions in flight.
 */
import { Job, Worker, type Processor } from 'bullmq';
import { backoffDelay, PermanentError } from './errors.ts';
import { logger, withLogContext, type LogFields } from '../core/logger.ts';
import { isJobName, JOB_IDS, QUEUES, STEPS, type JobData, type JobName, type ProvisionData, type QueueName } from './queues/catalogue.ts';
import { redisConnection } from './queues/connection.ts';
import type { JobContext, JobHandle } from './jobs/context.ts';
import { runStep, type StepHandler } from './jobs/step.ts';
import { createBranch } from './jobs/createBranch.ts';
import { createService } from './jobs/createService.ts';
import { buildWorkspace } from './jobs/buildWorkspace.ts';
import { deploy } from './jobs/deploy.ts';
import { healthCheck } from './jobs/healthCheck.ts';
import { sendWelcomeEmail } from './jobs/sendWelcomeEmail.ts';
import { finalize } from './jobs/finalize.ts';
import { sendAlert } from './jobs/alerts.ts';
import { handleStripeEvent } from './jobs/stripeEvent.ts';
import { abandon } from './jobs/abandon.ts';
import { sendUsageEmail } from './jobs/usageEmail.ts';
import { archive, cancel, purge } from './jobs/lifecycle/cancellation.ts';
import { reactivate } from './jobs/lifecycle/reactivation.ts';
import { resize } from './jobs/lifecycle/resize.ts';
import { dunningEmail, resume, suspend } from './jobs/lifecycle/billing.ts';
import { rotateKey } from './jobs/lifecycle/rotateKey.ts';
import { recordFinalFailure, ReportedFailure } from './operations/incidents.ts';
import { monitor } from './jobs/fleet/monitor.ts';
import { reconcile } from './jobs/fleet/reconcile.ts';
import { recordFleetRun, type FleetJob } from './metrics/recorder.ts';
import { coordinateRollout } from './jobs/rollouts/coordinator.ts';
import { rolloutInstance } from './jobs/rollouts/rolloutInstance.ts';
import { backupSweep } from './jobs/backups/sweep.ts';
import { backup } from './jobs/backups/backup.ts';
import { restore } from './jobs/backups/restore.ts';

const log = logger('worker');

type Handler<D> = (ctx: JobContext, job: JobHandle<D>, token?: string) => Promise<unknown>;

/** A provisioning step runs inside runStep (its ledger, waits and failures); its own data extends ProvisionData. */
const step =
  (handler: StepHandler<any>): Handler<ProvisionData> =>
  (ctx, job, token) =>
    runStep(ctx, job, token, handler);

/** A fleet job's runs are timed for the metrics, however they end. */
const timed =
  <D>(name: FleetJob, handler: Handler<D>): Handler<D> =>
  async (ctx, job, token) => {
    const started = performance.now();
    try {
      return await handler(ctx, job, token);
    } finally {
      recordFleetRun(name, performance.now() - started);
    }
  };

/** The handler of every job in the catalogue (Stripe event jobs, named after their event type, go to handleStripeEvent). */
const HANDLERS: { [N in JobName]: Handler<JobData[N]> } = {
  'create-branch': step(createBranch),
  'create-service': step(createService),
  'build-workspace': step(buildWorkspace),
  deploy: step(deploy),
  'health-check': step(healthCheck),
  'send-welcome-email': step(sendWelcomeEmail),
  finalize: step(finalize),
  abandon,
  cancel,
  archive,
  purge,
  resize,
  reactivate,
  suspend,
  resume,
  'dunning-email': dunningEmail,
  'rotate-key': rotateKey,
  'usage-email': sendUsageEmail,
  'alert-slack': sendAlert,
  'alert-email': sendAlert,
  monitor: timed('monitor', monitor),
  reconcile: timed('reconcile', reconcile),
  rollout: coordinateRollout,
  'rollout-instance': rolloutInstance,
  'backup-sweep': backupSweep,
  backup,
  restore,
};

const STEP_NAMES: readonly string[] = Object.values(STEPS);

/**
 * The ids on every line a job logs, however deep: its queue, id and name, the provisioning flow it belongs to (the
 * flow's root job), its instance and workspace. The job adds the customer once it has read its instance.
 */
function jobBindings(queue: QueueName, job: Job): LogFields {
  const { instanceId, workspaceId, generation } = (job.data ?? {}) as Partial<ProvisionData>;
  const flow = workspaceId && STEP_NAMES.includes(job.name) ? JOB_IDS.step(workspaceId, STEPS.finalize, generation) : undefined;
  return { queue, job: job.id, jobName: job.name, flow, instance: instanceId, workspace: workspaceId };
}

function processor(ctx: JobContext, queue: QueueName): Processor {
  return (job: Job, token?: string) =>
    withLogContext(jobBindings(queue, job), async () => {
      if (queue === QUEUES.stripeEvents) return handleStripeEvent(ctx, job);
      if (isJobName(job.name)) return (HANDLERS[job.name] as Handler<unknown>)(ctx, job, token);
      throw new PermanentError(`no handler for job ${job.name} on ${queue}`);
    });
}

export function startWorkers(ctx: JobContext): Worker[] {
  const connection = redisConnection(ctx.config.redisUrl);
  return Object.values(QUEUES).map((queue) => {
    const limiter = limiterFor(ctx, queue);
    const worker = new Worker(queue, processor(ctx, queue), {
      connection,
      prefix: ctx.config.queuePrefix,
      concurrency: ctx.config.worker.concurrency,
      ...(limiter && { limiter }),
      settings: {
        backoffStrategy: (attemptsMade: number, _type?: string, err?: Error) =>
          backoffDelay(attemptsMade, ctx.config.worker.backoffMs, err),
      },
    });
    worker.on('failed', (job, err) => {
      if (!job) return log.warn('job failed', { queue, reason: err.message });
      withLogContext(jobBindings(queue, job), () => {
        log.warn('job failed', { attempt: job.attemptsMade, reason: err.message });
        if (!(err instanceof ReportedFailure)) void onFailed(ctx, job, err.message);
      });
    });
    // A job whose worker died mid-step is failed by BullMQ itself once it has stalled too often; no handler saw it.
    worker.on('stalled', (id) => {
      Job.fromId(worker, id)
        .then((job) => job && withLogContext(jobBindings(queue, job), () => onFailed(ctx, job, job.failedReason || 'the job stalled too often (its worker died)')))
        .catch((err: Error) => log.error('could not read a stalled job', { queue, job: id, error: err.message }));
    });
    worker.on('error', (err) => log.error('worker error', { queue, error: err.message }));
    return worker;
  });
}

/**
 * Steps that call a provider share that provider's global rate, whatever the number of workers. Those queues always
 * have a limiter (unlimited unless configured): BullMQ honours a queue-wide pause after a 429 (`queue.rateLimit`)
 * only on queues with one.
 */
function limiterFor(ctx: JobContext, queue: QueueName): { max: number; duration: number } | undefined {
  if (queue !== QUEUES.compute && queue !== QUEUES.database) return undefined;
  const rate = queue === QUEUES.compute ? ctx.config.rateLimits.compute : ctx.config.rateLimits.database;
  return rate ? { max: rate.max, duration: rate.durationMs } : { max: 1_000_000, duration: 1_000 };
}

/** A job that ended failed (not one about to be retried) is recorded and alerted once. */
async function onFailed(ctx: JobContext, job: Job, reason: string): Promise<void> {
  try {
    if ((await job.getState()) === 'failed') await recordFinalFailure(ctx, job, reason);
  } catch (err) {
    log.error('could not record a final failure', { error: (err as Error).message });
  }
}

export async function closeWorkers(workers: Worker[]): Promise<void> {
  // close() waits for the jobs in progress to finish: SIGTERM drains instead of dropping work.
  await Promise.all(workers.map((w) => w.close()));
}
