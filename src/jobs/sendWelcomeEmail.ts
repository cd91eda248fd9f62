/**
 * send-welcome-email: the customer's access URL, workspace id and API key (or, with KEY_IN_EMAIL=false, a link to the
 * welcome page that shows the key once). The sealed key is deleted once the email has gone and the welcome page has
 * revealed it; a key never revealed is deleted by the sweep when KEY_REVEAL_WINDOW has passed after the email.
 */
import { welcomeEmail } from '../emails/customerEmails.ts';
import { PermanentError } from '../errors.ts';
import { planByName } from '../../core/plans.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../instances/secrets.ts';
import { welcomeUrl } from '../instances/welcomeLink.ts';
import type { StepHandler } from './step.ts';

export const sendWelcomeEmail: StepHandler = async (ctx, { instance, log, done }) => {
  const owner = instanceOwner(instance.id);
  const apiKey = await ctx.secrets.get(owner, INSTANCE_SECRETS.pendingApiKey);
  const messageId = `<welcome-${instance.workspace_id}@clawdbot>`;
  if (!apiKey) {
    // An earlier run sent the email and the key was deleted since, then it stopped before recording it.
    if (instance.api_key_hash) return done({ messageId, alreadySent: true });
    throw new PermanentError('no API key was issued: build-workspace has not completed');
  }
  // A re-run after the email went (the key stays sealed for the welcome page) sends nothing again.
  if ((await ctx.keyHandovers.state(instance.id))?.emailed) return done({ messageId, alreadySent: true });
  if (!instance.email || !instance.access_url) throw new PermanentError('customer email or access URL missing');
  const { publicUrl, secretsKey, welcome } = ctx.config;
  const { subject, text, html } = welcomeEmail({
    name: instance.customer_name,
    accessUrl: instance.access_url,
    workspaceId: instance.workspace_id,
    apiKey: welcome.keyInEmail ? apiKey : null,
    planTitle: planByName(instance.plan ?? '')?.title ?? instance.plan ?? '',
    welcomeUrl: welcomeUrl(publicUrl, secretsKey, instance.id),
    accountUrl: `${publicUrl}/account`,
  });
  await ctx.mailer.send({ to: instance.email, subject, text, html, messageId });
  const { revealed } = await ctx.keyHandovers.emailed(instance.id);
  if (revealed) {
    await ctx.secrets.delete(owner, INSTANCE_SECRETS.pendingApiKey);
    await log('welcome email sent; the page had shown the key, which is now held only as a hash');
  } else {
    await log('welcome email sent; the key stays sealed until the welcome page shows it once or the reveal window ends');
  }
  return done({ messageId });
};
