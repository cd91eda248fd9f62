/**
 * build-workspace: applies the runtime's schema to the customer's database, renders their workspace and seeds it
 * there, where the runtime loads it from, and issues the API key: its hash goes to both databases, the key itself
 * stays sealed until the welcome email and the welcome page have had it (see src/db/keyHandovers.ts). Seeding adds
 * only what is missing, so a re-run never overwrites what the customer changed.
 */
import { apiKeyLabel, generateApiKey, hashApiKey } from '../../core/apiKey.ts';
import type { InstanceWithCustomer } from '../db/instances.ts';
import { PermanentError } from '../errors.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../instances/secrets.ts';
import { planByName } from '../../core/plans.ts';
import { renderWorkspace } from '../workspace/render.ts';
import { workspaceChecksum } from '../../core/workspace/files.ts';
import type { JobContext } from './context.ts';
import type { StepHandler } from './step.ts';

export const buildWorkspace: StepHandler = async (ctx, { instance, log, progress, done }) => {
  const plan = planByName(instance.plan ?? '');
  if (!plan) throw new PermanentError(`instance has no known plan (${instance.plan ?? 'none'})`);
  if (!instance.email) throw new PermanentError('customer has no email address to render the workspace for');
  if (!(await ctx.customerDbs.exists(instance.id))) {
    throw new PermanentError('no database connection for this instance: create-branch has not completed');
  }

  // Only a reactivation (a later generation) can have an archive to restore.
  if (instance.generation > 1) await restoreFromArchive(ctx, instance, log);

  const files = renderWorkspace({
    workspaceId: instance.workspace_id,
    customer: { name: instance.customer_name, email: instance.email },
    plan,
    createdAt: instance.provision_started_at,
  });

  // A key made by an earlier attempt is reused while it is still sealed.
  const owner = instanceOwner(instance.id);
  let keyHash = instance.api_key_hash;
  let keyLabel = instance.api_key_label;
  const pending = keyHash ? await ctx.secrets.get(owner, INSTANCE_SECRETS.pendingApiKey) : null;
  if (!keyHash || pending) {
    // A new key (a reactivation's): its email and its one reveal are still to come.
    if (!keyHash) await ctx.keyHandovers.forget(instance.id);
    const key = await ctx.secrets.putIfAbsent(owner, INSTANCE_SECRETS.pendingApiKey, generateApiKey());
    keyHash = hashApiKey(key);
    keyLabel = apiKeyLabel(key);
    await ctx.instances.update(instance.id, { api_key_hash: keyHash, api_key_label: keyLabel });
  }

  await ctx.customerDbs.seedWorkspace(instance.id, files, { hash: keyHash, label: keyLabel });
  await log(`runtime schema applied; ${files.length} workspace files and the API key hash seeded into the customer database`);
  await progress(70);
  return done({ files: files.length, checksum: workspaceChecksum(files) });
};

/**
 * A customer reactivated between archive and purge gets their archive back into the new database before anything
 * is seeded (so their own files win over fresh ones). The archive itself is deleted when the instance is active
 * again (finalize), not before: a reactivation that fails keeps it.
 */
async function restoreFromArchive(ctx: JobContext, instance: InstanceWithCustomer, log: (line: string) => Promise<void>): Promise<void> {
  const archive = await ctx.archiveRecords.current(instance.id);
  if (!archive) return;
  const counts = await ctx.customerDbs.restoreArchive(instance.id, () => ctx.archives.read(archive.location));
  await ctx.audit.record({ actor: 'worker', action: 'instance.restored', customerId: instance.customer_id, instanceId: instance.id, detail: { location: archive.location, rows: counts ?? null } });
  await log(`restored the archive ${archive.location}${counts ? `: ${JSON.stringify(counts)}` : ' (already restored)'}`);
}
