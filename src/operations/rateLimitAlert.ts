/**
 * No silent loops. A step whose provider answers 429 pauses its queue and runs again without losing an attempt, for
 * as long as the provider refuses. Once a provider has been rate-limiting for RATE_LIMIT_ALERT_AFTER without a call
 * getting through, one incident names it and the jobs that wait: one per period of limiting, whichever worker sees
 * it (src/queues/rateLimits.ts keeps the periods).
 */
import { QUEUES, type QueueName } from '../queues/catalogue.ts';
import type { HeldJobs } from '../queues/jobQueue.ts';
import type { JobContext, JobHandle } from '../jobs/context.ts';

export const RATE_LIMIT_INCIDENT = 'provider.rate_limited';

/** The provider behind a queue: steps that call a provider sit on that provider's queue. */
export function providerOfQueue(ctx: Pick<JobContext, 'compute' | 'database'>, queue: string): string {
  if (queue === QUEUES.compute) return ctx.compute.kind;
  if (queue === QUEUES.database) return ctx.database.kind;
  return queue;
}

/**
 * A job saw its provider answer 429 at `now`, asking for a wait of `retryAfterMs`. The provider is its queue's
 * unless named (a job on another queue that calls a provider names it).
 */
export async function noteRateLimited(
  ctx: Pick<JobContext, 'config' | 'compute' | 'database' | 'rateLimitPeriods' | 'jobs' | 'audit'>,
  job: Pick<JobHandle, 'id' | 'name' | 'data' | 'queueName'>,
  retryAfterMs: number,
  now = Date.now(),
  provider = providerOfQueue(ctx, job.queueName),
): Promise<void> {
  const queue = job.queueName as QueueName;
  const period = await ctx.rateLimitPeriods.limited(provider, now, retryAfterMs);
  if (period.alerted || now - period.since < ctx.config.rateLimitAlertAfterMs) return;
  const held = await ctx.jobs.heldJobs(queue);
  const auditId = await ctx.audit.recordIncidentOnce(
    RATE_LIMIT_INCIDENT,
    `${RATE_LIMIT_INCIDENT}:${provider}:${period.since}`,
    {
      step: job.name,
      jobId: job.id!,
      title: `${provider} has answered 429 (rate limited) for ${span(now - period.since)}`,
      reason: rateLimitReason(provider, queue, period.since, held),
    },
    (job.data as { instanceId?: string }).instanceId ?? null,
  );
  if (auditId) await ctx.jobs.addAlerts(auditId, { queue, jobId: job.id! });
  await ctx.rateLimitPeriods.alerted(provider, period.since);
}

export function rateLimitReason(provider: string, queue: QueueName, since: number, held: HeldJobs): string {
  const setting = queue === QUEUES.compute ? 'COMPUTE_RATE_LIMIT' : queue === QUEUES.database ? 'DATABASE_RATE_LIMIT' : null;
  return (
    `${provider} has answered every call with 429 since ${new Date(since).toISOString()}. Queue ${queue} holds ` +
    `${held.active} running, ${held.waiting} waiting and ${held.delayed} delayed job(s)` +
    (held.ids.length ? `, such as ${held.ids.join(', ')}` : '') +
    `. They run again by themselves once ${provider} answers: raise the account's rate limit` +
    (setting ? `, or set a lower ${setting}.` : '.')
  );
}

/** A duration as an operator reads it: seconds, minutes or hours. */
function span(ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${Math.round(ms / 3_600_000)} h`;
}
