/** finalize: the root of the flow. Marks the instance active and records how long each step took. */
import type { StepHandler } from './step.ts';

export const finalize: StepHandler = async (ctx, { instance, log, done }) => {
  const timings = await ctx.steps.timings(instance.id);
  // A repeat (an operator re-ran finalize on an active instance) changes nothing and keeps its first active_at.
  const activeAt = instance.active_at ?? new Date();
  const totalMs = activeAt.getTime() - instance.provision_started_at.getTime();
  await ctx.instances.transition(instance.id, 'provisioned', { actor: 'worker', set: { active_at: activeAt }, detail: { totalMs, timings } });
  // A reactivation (a later generation) restored the customer's archive into their new database: it has served its
  // purpose.
  const restored = instance.generation > 1 ? await ctx.archiveRecords.current(instance.id) : undefined;
  if (restored) {
    await ctx.archives.delete(restored.location);
    await ctx.archiveRecords.markDeleted(instance.id);
  }
  await log(`active after ${totalMs} ms: ${JSON.stringify(timings)}`);
  return done({ accessUrl: instance.access_url, totalMs });
};
