/**
 * build-workspace: renders the customer's workspace and seeds it into their database, where the runtime loads it
 * from, and issues the API key: its hash goes to both databases, the key itself stays sealed until the welcome
 * email carries it. Seeding adds only what is missing, so a re-run never overwrites what the customer changed.
 */
import { apiKeyLabel, generateApiKey, hashApiKey } from '../apiKey.ts';
import { withCustomerDb } from '../db/customerDb.ts';
import { updateInstance } from '../db/instances.ts';
import { PermanentError } from '../errors.ts';
import { planByName } from '../plans.ts';
import { fileSha256, renderWorkspace, workspaceChecksum } from '../workspace/render.ts';
import { INSTANCE_SECRETS, instanceOwner } from './context.ts';
import type { StepHandler } from './step.ts';

export const buildWorkspace: StepHandler = async (ctx, { instance, log, progress, done }) => {
  const plan = planByName(instance.plan ?? '');
  if (!plan) throw new PermanentError(`instance has no known plan (${instance.plan ?? 'none'})`);
  if (!instance.email) throw new PermanentError('customer has no email address to render the workspace for');
  const owner = instanceOwner(instance.id);
  const databaseUrl = await ctx.secrets.get(owner, INSTANCE_SECRETS.databaseUrl);
  if (!databaseUrl) throw new PermanentError('no database connection for this instance: create-branch has not completed');

  const files = renderWorkspace({
    workspaceId: instance.workspace_id,
    customer: { name: instance.customer_name, email: instance.email },
    plan,
    createdAt: instance.provision_started_at,
  });

  // A key made by an earlier attempt is reused until the welcome email has been sent.
  let keyHash = instance.api_key_hash;
  let keyLabel = instance.api_key_label;
  const pending = keyHash ? await ctx.secrets.get(owner, INSTANCE_SECRETS.pendingApiKey) : null;
  if (!keyHash || pending) {
    const key = await ctx.secrets.putIfAbsent(owner, INSTANCE_SECRETS.pendingApiKey, generateApiKey());
    keyHash = hashApiKey(key);
    keyLabel = apiKeyLabel(key);
    await updateInstance(ctx.db, instance.id, { api_key_hash: keyHash, api_key_label: keyLabel });
  }

  await withCustomerDb(databaseUrl, async (client) => {
    await client.query('BEGIN');
    for (const file of files) {
      await client.query(
        `INSERT INTO workspace_files (path, content, sha256) VALUES ($1, $2, $3)
         ON CONFLICT (path) DO NOTHING`,
        [file.path, file.content, fileSha256(file.content)],
      );
    }
    await client.query('INSERT INTO api_keys (key_hash, label) VALUES ($1, $2) ON CONFLICT (key_hash) DO NOTHING', [keyHash, keyLabel]);
    await client.query('COMMIT');
  });
  await log(`${files.length} workspace files and the API key hash seeded into the customer database`);
  await progress(70);
  return done({ files: files.length, checksum: workspaceChecksum(files) });
};
