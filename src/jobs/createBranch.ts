/** create-branch: the customer's own database and login role, with the runtime's schema applied. */
import { applyRuntimeSchema } from '../../runtime/src/schema.ts';
import { withCustomerDb } from '../db/customerDb.ts';
import { updateInstance } from '../db/instances.ts';
import { resourceNames } from '../provisioning.ts';
import { INSTANCE_SECRETS, instanceOwner } from './context.ts';
import type { StepHandler } from './step.ts';

export const createBranch: StepHandler = async (ctx, { instance, log, progress, done }) => {
  const { databaseName } = resourceNames(instance.stripe_subscription_id);
  const ref = await ctx.database.findOrCreateDatabase(databaseName);
  await ctx.secrets.put(instanceOwner(instance.id), INSTANCE_SECRETS.databaseUrl, ref.connectionUrl);
  await updateInstance(ctx.db, instance.id, { branch_id: ref.branchId, database_name: ref.databaseName, database_role: ref.roleName });
  await log(`database ${ref.databaseName} and role ${ref.roleName} ready (${ctx.database.kind})`);
  await progress(60);
  await withCustomerDb(ref.connectionUrl, (client) => applyRuntimeSchema(client));
  await log('runtime schema applied');
  return done({ branchId: ref.branchId, databaseName: ref.databaseName });
};
