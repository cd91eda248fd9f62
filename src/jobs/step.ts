/**
 * Runs one provisioning step: keeps the steps ledger, reports progress, turns a wait into a delayed re-run that
 * holds no worker slot, and turns a final failure into a failed instance with one alert.
 */
import { DelayedError, Worker } from 'bullmq';
import type { ProvisionData, QueueName, StepName } from '../queues/catalogue.ts';
import type { InstanceWithCustomer } from '../db/instances.ts';
import { errorMessage, PermanentError, RateLimitedError } from '../errors.ts';
import { stepsMayRun } from '../instances/stateMachine.ts';
import { addLogContext, logger, maskError } from '../../core/logger.ts';
import { clearFailure, isFinalFailure, markFailed } from '../operations/incidents.ts';
import { noteRateLimited } from '../operations/rateLimitAlert.ts';
import type { JobContext, JobHandle } from './context.ts';

/**
 * How long a run goes unwritten in the ledger before it is written as started: most runs end (or wait) sooner and
 * are written once, in one statement, even on a loaded worker.
 */
export const LEDGER_START_AFTER_MS = 1_000;

const log = logger('step');

export type StepResult = Record<string, string | number | boolean | null>;

export type StepOutcome<D> = { done: StepResult } | { waitMs: number; data: D };

export interface StepTools<D extends ProvisionData> {
  job: JobHandle<D>;
  instance: InstanceWithCustomer;
  log(line: string): Promise<void>;
  progress(percent: number): Promise<void>;
  done(result?: StepResult): StepOutcome<D>;
  /** Comes back to this step after ms, with data saved in the job (ids and counters, never secrets). */
  waitFor(ms: number, data: D): StepOutcome<D>;
}

export type StepHandler<D extends ProvisionData = ProvisionData> = (ctx: JobContext, tools: StepTools<D>) => Promise<StepOutcome<D>>;

/** How soon a step that found its instance's lock taken (a lifecycle job works on it) comes back. */
const LOCK_RETRY_MS = 500;

/**
 * Runs the step holding its instance's lock, the one lifecycle jobs take: a cancellation, an abandon or a repair never
 * works on the instance while a step is half-way through making it. Steps hold it shared, so the flow's siblings
 * (create-service beside build-workspace) still run side by side. A step that finds the lock taken comes back a
 * moment later without holding a worker slot (and then sees what the other job did, a cancellation say).
 */
export async function runStep<D extends ProvisionData>(
  ctx: JobContext,
  job: JobHandle<D>,
  token: string | undefined,
  handler: StepHandler<D>,
): Promise<StepResult> {
  const locked = await ctx.locks.withLock(job.data.instanceId, () => runLockedStep(ctx, job, token, handler), { shared: true });
  if (locked.ran) return locked.value;
  await job.moveToDelayed(Date.now() + LOCK_RETRY_MS, token);
  throw new DelayedError();
}

async function runLockedStep<D extends ProvisionData>(
  ctx: JobContext,
  job: JobHandle<D>,
  token: string | undefined,
  handler: StepHandler<D>,
): Promise<StepResult> {
  const step = job.name as StepName;
  const { instanceId } = job.data;
  const instance = await ctx.instances.byId(instanceId);
  if (!instance) throw new PermanentError(`instance ${instanceId} does not exist`);
  addLogContext({ customer: instance.customer_id });
  // A stray job of an abandoned or ended provisioning (say, retried by hand in Bull Board) must not rebuild anything.
  if (!stepsMayRun(instance.status)) return { skipped: `the instance is ${instance.status}` };
  // A cancellation waits for the step running now; the steps after it do nothing (they deploy or send no key).
  if (instance.cancel_requested_at) return { skipped: 'the subscription is being cancelled' };
  await clearFailure(ctx, instance, step);
  const attempt = job.attemptsMade + 1;
  // A re-run after a wait of the same attempt is the same run in the ledger: it is already there, waiting.
  const resumed = job.data.waitingAttempt === attempt;
  // A run that ends (or waits) at once is written to the ledger once, when it does; one still running after a moment
  // is written as started then, so operators see it (and a run that fails is written as started first).
  const startedAt = new Date();
  let started: Promise<void> | undefined = resumed ? Promise.resolve() : undefined;
  const markStarted = () => {
    if (!started) {
      started = ctx.steps.started(instanceId, step, attempt, startedAt);
      started.catch(() => undefined); // written from a timer: its failure surfaces where the run awaits it, not unhandled
    }
    return started;
  };
  const startTimer = resumed ? undefined : setTimeout(markStarted, LEDGER_START_AFTER_MS);
  // Log lines and progress are kept and written once at the end of the run: one Redis call, not one per line.
  const lines: string[] = [];
  let progress: number | undefined;
  const flushLog = async () => {
    if (lines.length) await job.log(lines.splice(0).join('\n'));
  };
  const tools: StepTools<D> = {
    job,
    instance,
    log: async (line) => void lines.push(`${new Date().toISOString()} ${line}`),
    progress: async (percent) => void (progress = percent),
    done: (result = {}) => ({ done: result }),
    waitFor: (waitMs, data) => ({ waitMs, data }),
  };

  let outcome: StepOutcome<D>;
  try {
    outcome = await handler(ctx, tools);
  } catch (err) {
    clearTimeout(startTimer);
    await markStarted();
    if (err instanceof RateLimitedError) {
      await tools.log(`${err.message}: pausing ${job.queueName} for ${err.retryAfterMs} ms`);
      await flushLog();
      await ctx.jobs.pause(job.queueName as QueueName, err.retryAfterMs);
      // Limiting without end must reach an operator; the pause stands even if that bookkeeping fails.
      await noteRateLimited(ctx, job, err.retryAfterMs).catch((e: Error) => log.warn('could not record a rate limit', { job: job.id, error: e.message }));
      throw Worker.RateLimitError();
    }
    maskError(err); // what BullMQ keeps (failedReason, stacktrace) is shown in Bull Board
    const final = isFinalFailure(job, err);
    const reason = errorMessage(err);
    await tools.log(`${final ? 'failed for good' : 'failed, will retry'}: ${reason}`);
    await flushLog();
    if (final) {
      // A re-run by an operator starts the step afresh (a new deployment, a new deadline), not from stale wait state.
      await job.updateData({ instanceId, workspaceId: job.data.workspaceId, generation: job.data.generation } as D);
      await markFailed(ctx, { instanceId, step, reason, queue: job.queueName as QueueName, jobId: job.id! });
    } else {
      await ctx.steps.retrying(instanceId, step, reason);
    }
    throw err;
  }

  clearTimeout(startTimer);
  const unwritten = started === undefined;
  await started;
  const run = unwritten ? { attempt, startedAt } : undefined;
  if ('waitMs' in outcome) {
    await Promise.all([
      job.updateData({ ...outcome.data, waitingAttempt: attempt }),
      resumed ? undefined : ctx.steps.waiting(instanceId, step, run),
      progress === undefined ? undefined : job.updateProgress(progress),
      flushLog(),
    ]);
    await job.moveToDelayed(Date.now() + outcome.waitMs, token);
    throw new DelayedError();
  }
  await Promise.all([ctx.steps.completed(instanceId, step, outcome.done, run), flushLog()]);
  return outcome.done;
}
