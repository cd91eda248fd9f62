/** finalize: the root of the flow. Marks the instance active and records how long each step took. */
import { transition } from '../instances/stateMachine.ts';
import type { StepHandler } from './step.ts';

export const finalize: StepHandler = async (ctx, { instance, log, done }) => {
  const { rows } = await ctx.db.query<{ name: string; ms: number }>(
    `SELECT name, (extract(epoch FROM finished_at - started_at) * 1000)::int AS ms
     FROM steps WHERE instance_id = $1 AND finished_at IS NOT NULL ORDER BY started_at`,
    [instance.id],
  );
  const timings = Object.fromEntries(rows.map((r) => [r.name, r.ms]));
  // A repeat (an operator re-ran finalize on an active instance) changes nothing and keeps its first active_at.
  const activeAt = instance.active_at ?? new Date();
  const totalMs = activeAt.getTime() - instance.provision_started_at.getTime();
  await transition(ctx.db, instance.id, 'provisioned', { actor: 'worker', set: { active_at: activeAt }, detail: { totalMs, timings } });
  // A reactivation restored the customer's archive into their new database: it has served its purpose.
  const { rows: restored } = await ctx.db.query<{ location: string }>(
    'SELECT location FROM archives WHERE instance_id = $1 AND deleted_at IS NULL',
    [instance.id],
  );
  for (const { location } of restored) {
    await ctx.archives.delete(location);
    await ctx.db.query('UPDATE archives SET deleted_at = now() WHERE instance_id = $1', [instance.id]);
  }
  await log(`active after ${totalMs} ms: ${JSON.stringify(timings)}`);
  return done({ accessUrl: instance.access_url, totalMs });
};
