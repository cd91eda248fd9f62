/** finalize: the root of the flow. Marks the instance active and records how long each step took. */
import { audit } from '../db/instances.ts';
import type { StepHandler } from './step.ts';

export const finalize: StepHandler = async (ctx, { instance, log, done }) => {
  const { rows } = await ctx.db.query<{ name: string; ms: number }>(
    `SELECT name, (extract(epoch FROM finished_at - started_at) * 1000)::int AS ms
     FROM steps WHERE instance_id = $1 AND finished_at IS NOT NULL ORDER BY started_at`,
    [instance.id],
  );
  const updated = await ctx.db.query<{ total_ms: number }>(
    `UPDATE instances SET status = 'active', active_at = COALESCE(active_at, now()), updated_at = now()
     WHERE id = $1 AND status IN ('provisioning', 'active')
     RETURNING (extract(epoch FROM active_at - provision_started_at) * 1000)::int AS total_ms`,
    [instance.id],
  );
  const totalMs = updated.rows[0]?.total_ms ?? 0;
  // A reactivation restored the customer's archive into their new database: it has served its purpose.
  const { rows: restored } = await ctx.db.query<{ location: string }>(
    'SELECT location FROM archives WHERE instance_id = $1 AND deleted_at IS NULL',
    [instance.id],
  );
  for (const { location } of restored) {
    await ctx.archives.delete(location);
    await ctx.db.query('UPDATE archives SET deleted_at = now() WHERE instance_id = $1', [instance.id]);
  }
  const timings = Object.fromEntries(rows.map((r) => [r.name, r.ms]));
  if (!instance.active_at) {
    await audit(ctx.db, {
      actor: 'worker',
      action: 'instance.active',
      customerId: instance.customer_id,
      instanceId: instance.id,
      detail: { totalMs, timings },
    });
  }
  await log(`active after ${totalMs} ms: ${JSON.stringify(timings)}`);
  return done({ accessUrl: instance.access_url, totalMs });
};
