/**
 * create-service: the service shell and its public address. Each is recorded on the instance the moment it exists,
 * so a re-run starts from what is recorded and never looks anything up. The one gap, a service made but its id not
 * recorded (a crash, a lost answer), is covered by recording the request first: only a run that finds a request
 * but no id looks the service up by its deterministic name.
 */
import { PermanentError, RateLimitedError } from '../errors.ts';
import { instanceResources } from '../instances/resources.ts';
import type { StepHandler } from './step.ts';

export const createService: StepHandler = async (ctx, { instance, log, done }) => {
  const { serviceName } = instanceResources(instance.workspace_id);
  let serviceId = instance.service_id;
  let created = false;
  if (!serviceId) {
    const mayExist = instance.service_requested_at !== null;
    if (!mayExist) await ctx.instances.update(instance.id, { service_requested_at: new Date() });
    try {
      ({ serviceId, created } = await ctx.compute.createService(serviceName, { mayExist }));
    } catch (err) {
      // Refused or rate-limited: the provider made nothing, so the next run need not look for it.
      if (!mayExist && (err instanceof PermanentError || err instanceof RateLimitedError)) {
        await ctx.instances.update(instance.id, { service_requested_at: null });
      }
      throw err;
    }
    await ctx.instances.update(instance.id, { service_id: serviceId });
    await log(created ? `service ${serviceId} created` : `service ${serviceId} found by its name ${serviceName} (made by an earlier run)`);
  }
  let accessUrl = instance.access_url;
  if (!accessUrl) {
    accessUrl = await ctx.compute.accessUrl(serviceId, { fresh: created });
    await ctx.instances.update(instance.id, { access_url: accessUrl });
  }
  await log(`service ${serviceId} at ${accessUrl} (${ctx.compute.kind})`);
  return done({ serviceId, accessUrl });
};
