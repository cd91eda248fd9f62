/** Deleting what an instance is made of: by an archive (after its export) and by an abandoned provisioning. */
import { resourceRefs } from '../instances/resources.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../instances/secrets.ts';
import type { JobContext } from '../jobs/context.ts';

/**
 * Newest first: the running service, the workspace's pending key, the database under both, then the instance's
 * other secrets. Each deletion is idempotent (undoing what was never made is harmless), so a retry finishes the job.
 */
export async function teardownInstance(
  ctx: Pick<JobContext, 'compute' | 'database' | 'secrets' | 'instances'>,
  instance: Parameters<typeof resourceRefs>[0] & { id: string; service_requested_at: Date | null },
): Promise<{ serviceId: string | null; databaseName: string }> {
  const { serviceId, database } = resourceRefs(instance);
  const owner = instanceOwner(instance.id);
  // A service never asked for was never made: nothing to delete, and nothing to look for by name.
  const hadService = Boolean(instance.service_id || instance.service_requested_at);
  if (hadService) {
    await ctx.compute.deleteService(serviceId);
    // Gone: a reactivation makes a new one instead of using this id.
    await ctx.instances.update(instance.id, { service_id: null, service_requested_at: null });
  }
  await ctx.secrets.delete(owner, INSTANCE_SECRETS.pendingApiKey); // the workspace files go with the database
  await ctx.database.deleteDatabase(database);
  await ctx.secrets.delete(owner, INSTANCE_SECRETS.databaseUrl);
  await ctx.secrets.delete(owner, INSTANCE_SECRETS.runtimeSecret);
  await ctx.secrets.delete(owner, INSTANCE_SECRETS.connectionsKey);
  await ctx.secrets.delete(owner, INSTANCE_SECRETS.previousDatabaseUrl);
  return { serviceId: hadService ? serviceId : null, databaseName: database.databaseName };
}
