/** create-service: the service shell and its public address, found by its deterministic name on a re-run. */
import { instanceResources } from '../instances/resources.ts';
import type { StepHandler } from './step.ts';

export const createService: StepHandler = async (ctx, { instance, log, done }) => {
  const { serviceName } = instanceResources(instance.workspace_id);
  const service = await ctx.compute.findOrCreateService(serviceName);
  await ctx.instances.update(instance.id, { service_id: service.serviceId, access_url: service.accessUrl });
  await log(`service ${service.serviceId} at ${service.accessUrl} (${ctx.compute.kind})`);
  return done({ serviceId: service.serviceId, accessUrl: service.accessUrl });
};
