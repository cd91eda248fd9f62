/**
 * The current fleet generation, and the control plane's start-up comparison of its configuration with what the
 * fleet runs (one warning naming what changed, never a value, and the one request that applies it).
 */
import type { JobContext } from '../jobs/context.ts';
import type { Generation } from '../db/fleetGenerations.ts';
import { logger } from '../../core/logger.ts';
import { changedNames, valuesFromConfig } from './settings.ts';

const log = logger('fleet');

type FleetContext = Pick<JobContext, 'config' | 'fleet'>;

/** The current generation; the configuration's, made current, when there is none yet (before any worker started). */
export async function currentGeneration(ctx: FleetContext): Promise<Generation> {
  const current = await ctx.fleet.current();
  if (current) return current;
  const made = await ctx.fleet.ensure(valuesFromConfig(ctx.config), 'config');
  await ctx.fleet.setCurrent(made.id, null);
  return (await ctx.fleet.current())!;
}

/**
 * At a worker's start: the configuration's generation becomes current (new provisions get it at once). When active
 * instances run another one, one warning says what changed and how to apply it.
 */
export async function bootstrapFleetSettings(ctx: FleetContext): Promise<void> {
  const { current, replaced, behind, behindOn } = await ctx.fleet.bootstrap(valuesFromConfig(ctx.config));
  if (replaced) log.info('fleet settings changed in the configuration: new provisions get them now', { generation: current.id, previous: replaced.id });
  if (behind === 0) return;
  // What differs between what those instances run and the current generation, by name (an instance never
  // configured since generations began has no recorded one: it is just behind).
  const changed = [...new Set(behindOn.flatMap((b) => (b.generation ? changedNames(b.generation, current) : [])))].sort();
  log.warn(
    `${behind} instance(s) run other fleet settings than the configuration's${changed.length ? ` (changed: ${changed.join(', ')})` : ''}; ` +
      'apply them with POST /api/admin/rollouts and the body {}',
    { generation: current.id, behind, changed: changed.join(',') },
  );
}
