/** The alert jobs: one Slack post or one email per failure incident, each retried on its own. */
import { PermanentError } from '../errors.ts';
import type { AlertData } from '../queues/catalogue.ts';
import type { JobContext, JobHandle } from './context.ts';
import type { Alert } from '../providers/alerter.ts';
import { RATE_LIMIT_INCIDENT } from '../operations/rateLimitAlert.ts';

export async function sendAlert(ctx: JobContext, job: JobHandle<AlertData>): Promise<{ sent: string }> {
  const { channel, queue, jobId } = job.data;
  const link = `${ctx.config.publicUrl}/admin/queues/queue/${encodeURIComponent(queue)}/${encodeURIComponent(jobId)}`;
  const alert = { ...(await describe(ctx, job.data)), link };
  if (channel === 'slack') await ctx.alerter.slack(alert);
  else await ctx.alerter.mail(alert, `<alert-${job.id}@clawdbot>`);
  return { sent: channel };
}

const TITLES: Record<string, (step: string) => string> = {
  'lifecycle.failed': (step) => `Lifecycle job ${step} failed`,
  'deployment.needs_approval': () => 'A deployment waits for an operator’s approval',
};

/** The incident as recorded when it happened: what failed, for whom, at which step, and why. */
async function describe(ctx: JobContext, data: AlertData): Promise<Omit<Alert, 'link'>> {
  const incident = await ctx.audit.incident(data.auditId);
  if (!incident) throw new PermanentError(`incident ${data.auditId} is not in the audit log`);
  const { detail } = incident;
  if (incident.action === 'stripe_event.failed') {
    return {
      title: 'Stripe event could not be acted on',
      customer: `${detail.stripeCustomer ?? 'unknown customer'} (event ${detail.eventId}, ${detail.eventType})`,
      customerRef: detail.stripeCustomer ?? null,
      step: 'stripe-intake',
      reason: detail.reason ?? 'unknown',
    };
  }
  const instance = incident.instanceId ? await ctx.instances.byId(incident.instanceId) : undefined;
  if (incident.action === 'provider.alert' || incident.action === RATE_LIMIT_INCIDENT) {
    return {
      title: detail.title ?? (incident.action === RATE_LIMIT_INCIDENT ? 'A provider keeps answering 429 (rate limited)' : 'A provider needs an operator'),
      customer: `none in particular (first seen provisioning ${instance ? `${instance.email ?? 'no email'}, ${instance.workspace_id}` : (incident.instanceId ?? 'unknown')})`,
      customerRef: null,
      step: detail.step ?? 'unknown',
      reason: detail.reason ?? 'unknown',
    };
  }
  return {
    // An incident that names itself (the health monitor's, the reconciler's) is told as it was recorded.
    title: detail.title ?? TITLES[incident.action]?.(detail.step ?? '') ?? 'Provisioning failed',
    customer: instance
      ? `${instance.email ?? 'no email'} (${instance.stripe_customer_id ?? 'comped'}, ${instance.workspace_id})`
      : (incident.instanceId ?? 'none in particular'),
    customerRef: instance?.customer_id ?? incident.instanceId,
    step: detail.step ?? 'unknown',
    reason: detail.reason ?? 'unknown',
  };
}
