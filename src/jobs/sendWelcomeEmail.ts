/**
 * send-welcome-email: the customer's access URL, workspace id and API key. The key is read from the sealed store,
 * sent, and then deleted: from here on only its hash exists.
 */
import { welcomeEmail } from '../emails/customerEmails.ts';
import { PermanentError } from '../errors.ts';
import { planByName } from '../../core/plans.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../instances/secrets.ts';
import type { StepHandler } from './step.ts';

export const sendWelcomeEmail: StepHandler = async (ctx, { instance, log, done }) => {
  const owner = instanceOwner(instance.id);
  const apiKey = await ctx.secrets.get(owner, INSTANCE_SECRETS.pendingApiKey);
  const messageId = `<welcome-${instance.workspace_id}@clawdbot>`;
  if (!apiKey) {
    // An earlier run sent the email and deleted the key, then stopped before recording it.
    if (instance.api_key_hash) return done({ messageId, alreadySent: true });
    throw new PermanentError('no API key was issued: build-workspace has not completed');
  }
  if (!instance.email || !instance.access_url) throw new PermanentError('customer email or access URL missing');
  const { subject, text } = welcomeEmail({
    name: instance.customer_name,
    accessUrl: instance.access_url,
    workspaceId: instance.workspace_id,
    apiKey,
    planTitle: planByName(instance.plan ?? '')?.title ?? instance.plan ?? '',
  });
  await ctx.mailer.send({ to: instance.email, subject, text, messageId });
  await ctx.secrets.delete(owner, INSTANCE_SECRETS.pendingApiKey);
  await log('welcome email sent; the key is now held only as a hash');
  return done({ messageId });
};
