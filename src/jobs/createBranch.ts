/**
 * create-branch: the customer's own database and login role, registered (sealed) for the steps after it. The runtime's
 * schema is applied by build-workspace, in the one connection a provision opens to the new database.
 */
import { instanceResources } from '../instances/resources.ts';
import type { StepHandler } from './step.ts';
import { PermanentError } from '../errors.ts';
import { raiseProviderAlert } from '../operations/incidents.ts';
import type { ProvisionData } from '../queues/catalogue.ts';
import type { DatabaseProgress } from '../providers/types.ts';

export interface CreateBranchData extends ProvisionData {
  database?: DatabaseProgress;
  polls?: number;
  waitingSince?: number;
}

export const createBranch: StepHandler<CreateBranchData> = async (ctx, { job, instance, log, progress, done, waitFor }) => {
  const { databaseName } = instanceResources(instance.workspace_id);
  const result = await ctx.database.ensureDatabase(databaseName, job.data.database);
  // Before the progress is saved: a crash here makes the provider hand the alerts back on the re-run.
  for (const alert of result.alerts ?? []) await raiseProviderAlert(ctx, job, alert);
  if ('pending' in result) {
    const waitingSince = job.data.waitingSince ?? Date.now();
    if (Date.now() - waitingSince > ctx.config.databaseReadyTimeoutMs) {
      throw new PermanentError(`the ${ctx.database.kind} database was not ready within ${Math.round(ctx.config.databaseReadyTimeoutMs / 1000)} s: ${result.detail}`);
    }
    const polls = (job.data.polls ?? 0) + 1;
    if (polls === 1 || polls % 10 === 0) await log(`waiting for ${ctx.database.kind}: ${result.detail}`);
    await progress(Math.min(50, polls * 5));
    return waitFor(result.retryInMs, { ...job.data, database: result.pending, polls, waitingSince });
  }
  const ref = result.ready;
  await ctx.customerDbs.register(instance.id, ref.connectionUrl);
  await ctx.instances.update(instance.id, { branch_id: ref.branchId, database_name: ref.databaseName, database_role: ref.roleName });
  await log(`database ${ref.databaseName} and role ${ref.roleName} ready (${ctx.database.kind})`);
  await progress(60);
  return done({ branchId: ref.branchId, databaseName: ref.databaseName });
};
