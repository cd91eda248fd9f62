/** The alert jobs: one Slack post or one email per failure incident, each retried on its own. */
import type { Job } from 'bullmq';
import { instanceById } from '../db/instances.ts';
import type { JobContext } from './context.ts';
import type { AlertData } from './failure.ts';
import type { Alert } from '../providers/alerter.ts';

export async function sendAlert(ctx: JobContext, job: Job<AlertData>): Promise<{ sent: string }> {
  const { channel, queue, jobId } = job.data;
  const link = `${ctx.config.publicUrl}/admin/queues/queue/${encodeURIComponent(queue)}/${encodeURIComponent(jobId)}`;
  const alert = { ...(await describe(ctx, job.data)), link };
  if (channel === 'slack') await ctx.alerter.slack(alert);
  else await ctx.alerter.mail(alert, `<alert-${job.id}@clawdbot>`);
  return { sent: channel };
}

async function describe(ctx: JobContext, data: AlertData): Promise<Omit<Alert, 'link'>> {
  if (data.eventId) {
    const { rows } = await ctx.db.query<{ type: string; customer: string | null; failure_reason: string | null }>(
      `SELECT type, payload->'data'->'object'->>'customer' AS customer, failure_reason FROM stripe_events WHERE id = $1`,
      [data.eventId],
    );
    return {
      title: 'Stripe event could not be acted on',
      customer: `${rows[0]?.customer ?? 'unknown customer'} (event ${data.eventId}, ${rows[0]?.type ?? 'unknown type'})`,
      step: 'stripe-intake',
      reason: rows[0]?.failure_reason ?? 'unknown',
    };
  }
  const instance = await instanceById(ctx.db, data.instanceId!);
  return {
    title: 'Provisioning failed',
    customer: instance
      ? `${instance.email ?? 'no email'} (${instance.stripe_customer_id ?? 'comped'}, ${instance.workspace_id})`
      : data.instanceId!,
    step: instance?.failed_step ?? 'unknown',
    reason: instance?.failure_reason ?? 'unknown',
  };
}
