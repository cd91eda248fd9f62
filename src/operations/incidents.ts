/**
 * A provisioning's final failure: the instance is marked failed and one alert incident is raised. The incident is
 * an audit row (what failed, where, why, as it was then); its alerts are a Slack post and an email, each its own job
 * so a retry of one never repeats the other. A Stripe event that fails for good before any instance exists raises
 * its incident the same way.
 */
import { UnrecoverableError } from 'bullmq';
import { PermanentError } from '../errors.ts';
import { maskSecrets } from '../../core/logger.ts';
import { canHappen, IllegalTransitionError, type InstanceStatus } from '../instances/stateMachine.ts';
import { isJobName, JOB_IDS, JOBS, QUEUES, type QueueName } from '../queues/catalogue.ts';
import type { JobContext, JobHandle } from '../jobs/context.ts';
import type { ProviderAlert } from '../providers/types.ts';

type Where = { queue: QueueName; jobId: string };

export async function markFailed(ctx: Pick<JobContext, 'steps' | 'instances' | 'jobs'>, failure: { instanceId: string; step: string; reason: string } & Where): Promise<void> {
  const reason = maskSecrets(failure.reason).slice(0, 2000);
  // The ledger always shows a step's final failure, even when this instance's incident was raised by a sibling.
  await ctx.steps.failed(failure.instanceId, failure.step, reason);
  let failed;
  try {
    failed = await ctx.instances.transition(failure.instanceId, 'failed', {
      actor: 'worker',
      set: { failed_step: failure.step, failure_reason: reason, failed_job: `${failure.queue}/${failure.jobId}`, failure_alerted_at: new Date() },
      when: { failure_alerted_at: null },
      detail: { step: failure.step, reason },
    });
  } catch (err) {
    // Only a provisioning fails: a stray step of an instance that is running, ended or abandoned changes nothing.
    if (err instanceof IllegalTransitionError) return;
    throw err;
  }
  if (!failed) return; // this incident was already raised
  await ctx.jobs.addAlerts(failed.auditId, { queue: failure.queue, jobId: failure.jobId });
}

/** Whether this failure ends the job: a permanent error, or the last of its attempts. */
export function isFinalFailure(job: Pick<JobHandle, 'attemptsMade' | 'opts'>, err: unknown): boolean {
  return err instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
}

/** A failure that has already been recorded and alerted on; the job fails without a second incident. */
export class ReportedFailure extends PermanentError {}

/** A Stripe event that could not be acted on, and has no instance to carry the failure. */
export async function markEventFailed(ctx: Pick<JobContext, 'stripeEvents' | 'audit' | 'jobs'>, failure: { eventId: string; reason: string } & Where): Promise<void> {
  const event = await ctx.stripeEvents.markFailureAlerted(failure.eventId);
  if (!event) return;
  const auditId = await ctx.audit.record({
    actor: 'worker',
    action: 'stripe_event.failed',
    detail: { eventId: failure.eventId, eventType: event.type, stripeCustomer: event.customer, reason: maskSecrets(failure.reason).slice(0, 2000) },
  });
  await ctx.jobs.addAlerts(auditId, { queue: failure.queue, jobId: failure.jobId });
}

/**
 * An operator re-ran the step that failed: the instance is provisioning again, and a new failure is a new incident.
 * (A sibling step still running when another failed does not clear that failure.)
 */
export async function clearFailure(
  ctx: Pick<JobContext, 'steps' | 'instances' | 'jobs'>,
  instance: { id: string; status: InstanceStatus; failed_step: string | null; workspace_id: string; generation: number },
  step: string,
): Promise<void> {
  if (!canHappen(instance.status, 'retried') || instance.failed_step !== step) return;
  const cleared = await ctx.instances.transition(instance.id, 'retried', {
    actor: 'worker',
    set: { failed_step: null, failure_reason: null, failed_job: null, failure_alerted_at: null },
    when: { failed_step: step },
    detail: { step },
  });
  if (!cleared) return;
  // Another step that failed for good while this one's incident was open still blocks the flow: it is the next one.
  const blocked = await ctx.steps.otherFailed(instance.id, step);
  if (blocked) {
    await markFailed(ctx, {
      instanceId: instance.id,
      step: blocked.name,
      reason: blocked.error ?? 'failed',
      queue: JOBS[blocked.name].queue,
      jobId: JOB_IDS.step(instance.workspace_id, blocked.name, instance.generation),
    });
  }
}

/**
 * An incident about one job that leaves the instance's status as it is (a lifecycle job failed; a deployment waits
 * for an operator's approval): at most one per job and kind, however often it is reported.
 */
export async function raiseJobIncident(
  ctx: Pick<JobContext, 'audit' | 'jobs'>,
  job: Pick<JobHandle, 'id' | 'name' | 'data' | 'queueName'>,
  action: 'lifecycle.failed' | 'deployment.needs_approval',
  reason: string,
): Promise<void> {
  const instanceId = (job.data as { instanceId?: string }).instanceId;
  if (!instanceId) return;
  const auditId = await ctx.audit.recordJobIncident(instanceId, action, { step: job.name, jobId: job.id!, reason: maskSecrets(reason).slice(0, 2000) });
  if (auditId) await ctx.jobs.addAlerts(auditId, { queue: job.queueName as QueueName, jobId: job.id! });
}

/**
 * What a provider asked operators to be told (say, a Neon project at 80 % of its branch limit): one incident per
 * alert key, whichever job reports it and however often, with its Slack post and email.
 */
export async function raiseProviderAlert(
  ctx: Pick<JobContext, 'audit' | 'jobs'>,
  job: Pick<JobHandle, 'id' | 'name' | 'data' | 'queueName'>,
  alert: ProviderAlert,
): Promise<void> {
  const instanceId = (job.data as { instanceId?: string }).instanceId ?? null;
  const auditId = await ctx.audit.recordIncidentOnce(
    'provider.alert',
    alert.key,
    { step: job.name, jobId: job.id!, title: alert.title, reason: maskSecrets(alert.reason).slice(0, 2000) },
    instanceId,
  );
  if (auditId) await ctx.jobs.addAlerts(auditId, { queue: job.queueName as QueueName, jobId: job.id! });
}

/**
 * Called by the workers for every job that ended failed, however it got there (including a job failed by BullMQ
 * itself after stalling, which no handler saw): the failure is recorded and alerted once, as the catalogue says.
 */
export async function recordFinalFailure(ctx: JobContext, job: Pick<JobHandle, 'id' | 'name' | 'data' | 'queueName'>, reason: string): Promise<void> {
  const where = { queue: job.queueName as QueueName, jobId: job.id! };
  if (job.queueName === QUEUES.stripeEvents) {
    await markEventFailed(ctx, { eventId: (job.data as { eventId: string }).eventId, reason, ...where });
    return;
  }
  if (!isJobName(job.name)) return;
  const { finalFailure } = JOBS[job.name];
  const instanceId = (job.data as { instanceId?: string }).instanceId;
  if (finalFailure === 'raise-incident') await raiseJobIncident(ctx, job, 'lifecycle.failed', reason);
  else if (finalFailure === 'fail-instance' && instanceId) await markFailed(ctx, { instanceId, step: job.name, reason, ...where });
}
