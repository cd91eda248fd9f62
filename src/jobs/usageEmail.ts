/** The usage-email job: tells a customer their assistant used 80 % or all of the month's messages. */
import { PermanentError } from '../errors.ts';
import type { UsageEmailData } from '../queues/catalogue.ts';
import type { JobContext, JobHandle } from './context.ts';

export function usageEmail(input: { name: string | null; month: string; threshold: number; used: number; limit: number; resetsOn: string }) {
  const greeting = input.name ? `Hello ${input.name},` : 'Hello,';
  const limit = input.limit.toLocaleString('en-US');
  const lines =
    input.threshold >= 100
      ? [
          `Your Clawdbot has used all ${limit} messages of your plan for ${input.month}.`,
          `It will answer again when the count resets on ${input.resetsOn}, or as soon as you move to a larger plan.`,
        ]
      : [
          `Your Clawdbot has used ${input.used.toLocaleString('en-US')} of the ${limit} messages of your plan for ${input.month} (${input.threshold} %).`,
          `The count resets on ${input.resetsOn}. A larger plan raises the limit at once.`,
        ];
  return {
    subject: input.threshold >= 100 ? 'Your Clawdbot has reached its monthly limit' : 'Your Clawdbot has used 80 % of its messages',
    text: [greeting, '', ...lines, '', 'The Clawdbot team', ''].join('\n'),
  };
}

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
