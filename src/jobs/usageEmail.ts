/** The usage-email job: tells a customer their assistant used 80 % or all of the month's messages. */
import { usageEmail } from '../emails/customerEmails.ts';
import { PermanentError } from '../errors.ts';
import type { UsageEmailData } from '../queues/catalogue.ts';
import type { JobContext, JobHandle } from './context.ts';

export async function sendUsageEmail(ctx: JobContext, job: JobHandle<UsageEmailData>): Promise<{ sent: string }> {
  const { instanceId, month, threshold } = job.data;
  const instance = await ctx.instances.byId(instanceId);
  const notice = await ctx.usageNotices.find(instanceId, month, threshold);
  if (!instance?.email || !notice) throw new PermanentError('no customer email or usage notice for this instance');
  const [year, m] = month.split('-').map(Number) as [number, number];
  const resetsOn = new Date(Date.UTC(year, m, 1)).toISOString().slice(0, 10);
  const { subject, text } = usageEmail({ name: instance.customer_name, month, threshold, used: notice.used, limit: notice.limit, resetsOn });
  await ctx.mailer.send({ to: instance.email, subject, text, messageId: `<usage-${instance.workspace_id}-${month}-${threshold}@clawdbot>` });
  return { sent: `${threshold}%` };
}
