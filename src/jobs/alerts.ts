/** The alert jobs: one Slack post or one email per failure incident, each retried on its own. */
import type { Job } from 'bullmq';
import { instanceById } from '../db/instances.ts';
import type { JobContext } from './context.ts';
import type { AlertData } from './failure.ts';

export async function sendAlert(ctx: JobContext, job: Job<AlertData>): Promise<{ sent: string }> {
  const { instanceId, channel, queue, jobId } = job.data;
  const instance = await instanceById(ctx.db, instanceId);
  const alert = {
    title: 'Provisioning failed',
    customer: instance
      ? `${instance.email ?? 'no email'} (${instance.stripe_customer_id ?? 'comped'}, ${instance.workspace_id})`
      : instanceId,
    step: instance?.failed_step ?? 'unknown',
    reason: instance?.failure_reason ?? 'unknown',
    link: `${ctx.config.publicUrl}/admin/queues/queue/${encodeURIComponent(queue)}/${encodeURIComponent(jobId)}`,
  };
  if (channel === 'slack') await ctx.alerter.slack(alert);
  else await ctx.alerter.mail(alert, `<alert-${job.id}@clawdbot>`);
  return { sent: channel };
}
