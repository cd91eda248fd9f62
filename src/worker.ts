/**
 * The workers: one BullMQ Worker per queue, each dispatching by job name. Waiting steps re-schedule themselves,
 * so a worker's concurrency bounds the steps doing work, not the provisions in flight.
 */
import { Worker, type Job, type Processor } from 'bullmq';
import { backoffDelay, PermanentError } from './errors.ts';
import { logger } from './logger.ts';
import { QUEUES, STEPS, type QueueName, type StepName } from './queues/names.ts';
import { redisConnection } from './queues/connection.ts';
import type { JobContext } from './jobs/context.ts';
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

const log = logger('worker');

const STEP_HANDLERS: Record<StepName, StepHandler<any>> = {
  [STEPS.createBranch]: createBranch,
  [STEPS.createService]: createService,
  [STEPS.buildWorkspace]: buildWorkspace,
  [STEPS.deploy]: deploy,
  [STEPS.healthCheck]: healthCheck,
  [STEPS.sendWelcomeEmail]: sendWelcomeEmail,
  [STEPS.finalize]: finalize,
};

/** Jobs that are not provisioning steps, by job name. */
const OTHER_JOBS: Record<string, (ctx: JobContext, job: Job) => Promise<unknown>> = {
  'alert-slack': sendAlert,
  'alert-email': sendAlert,
  abandon,
};

function processor(ctx: JobContext, queue: QueueName): Processor {
  return async (job: Job, token?: string) => {
    // Stripe event jobs are named after the event type.
    if (queue === QUEUES.stripeEvents) return handleStripeEvent(ctx, job);
    const step = STEP_HANDLERS[job.name as StepName];
    if (step) return runStep(ctx, job, token, step);
    const other = OTHER_JOBS[job.name];
    if (other) return other(ctx, job);
    throw new PermanentError(`no handler for job ${job.name} on ${queue}`);
  };
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
    worker.on('failed', (job, err) =>
      log.warn('job failed', { queue, job: job?.id, name: job?.name, attempt: job?.attemptsMade, reason: err.message }),
    );
    worker.on('error', (err) => log.error('worker error', { queue, error: err.message }));
    return worker;
  });
}

/** Steps that call a provider share that provider's global rate, whatever the number of workers. */
function limiterFor(ctx: JobContext, queue: QueueName): { max: number; duration: number } | undefined {
  const rate = queue === QUEUES.compute ? ctx.config.rateLimits.compute : queue === QUEUES.database ? ctx.config.rateLimits.database : null;
  return rate ? { max: rate.max, duration: rate.durationMs } : undefined;
}

export async function closeWorkers(workers: Worker[]): Promise<void> {
  // close() waits for the jobs in progress to finish: SIGTERM drains instead of dropping work.
  await Promise.all(workers.map((w) => w.close()));
}
