/**
 * rotate-key: an operator replaces a customer's API key. The new key is sealed while pending, becomes the only live
 * key in the customer's database (the runtime refuses the others within its 2-second cache), is recorded with its
 * audit row, and is emailed to the customer; then only its hash is kept. Every step can run again: a retry reuses
 * the sealed key (never a second one), records no second audit row, and once the email has gone sends none.
 */
import { apiKeyLabel, generateApiKey, hashApiKey } from '../../../core/apiKey.ts';
import { keyRotatedEmail } from '../../emails/customerEmails.ts';
import { PermanentError } from '../../errors.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../instances/secrets.ts';
import type { RotateKeyData } from '../../queues/catalogue.ts';
import type { JobContext, JobHandle } from '../context.ts';
import { withLockedInstance, type Outcome } from './lockedInstance.ts';

/** Statuses whose key can be rotated: the customer's database and runtime are there (a suspended one just stopped). */
export const KEY_ROTATION_STATUSES: readonly string[] = ['active', 'suspended'];

export async function rotateKey(ctx: JobContext, job: JobHandle<RotateKeyData>, token?: string): Promise<Outcome> {
  return withLockedInstance(ctx, job, token, async (instance): Promise<Outcome> => {
    const owner = instanceOwner(instance.id);
    if (job.data.emailed) {
      await ctx.secrets.delete(owner, INSTANCE_SECRETS.rotatedApiKey);
      return { rotated: instance.api_key_label ?? '', alreadySent: 'yes' };
    }
    if (!KEY_ROTATION_STATUSES.includes(instance.status)) {
      await ctx.secrets.delete(owner, INSTANCE_SECRETS.rotatedApiKey); // a key sealed by an earlier attempt goes too
      return { skipped: `instance is ${instance.status}` };
    }
    if (!instance.email) throw new PermanentError('the customer has no email address to send the new key to');

    const key = await ctx.secrets.putIfAbsent(owner, INSTANCE_SECRETS.rotatedApiKey, generateApiKey());
    const rotated = { hash: hashApiKey(key), label: apiKeyLabel(key) };
    await ctx.customerDbs.replaceKeys(instance.id, rotated);
    await ctx.instances.recordKeyRotation(instance.id, rotated, { actor: 'admin-api', detail: { via: 'operator', jobId: job.id ?? null } });

    const { subject, text } = keyRotatedEmail({ name: instance.customer_name, accessUrl: instance.access_url, workspaceId: instance.workspace_id, apiKey: key });
    await ctx.mailer.send({ to: instance.email, subject, text, messageId: `<key-rotated-${instance.workspace_id}-${job.id}@clawdbot>` });
    await job.updateData({ ...job.data, emailed: true });
    await ctx.secrets.delete(owner, INSTANCE_SECRETS.rotatedApiKey);
    return { rotated: rotated.label };
  });
}
