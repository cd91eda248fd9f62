/**
 * rollout: a rollout's coordinator. Each run reads the rollout and its instances and takes one step: launch the next
 * batch (the canary first) once every earlier one is healthy, halt past maxFailures (one incident, its Slack post and
 * email), roll the changed instances back when halted or aborted, or finish (a completed rollout's target becomes the
 * current generation). Between runs it waits delayed, holding no worker slot; pause and abort are read at each run.
 */
import { DelayedError } from 'bullmq';
import { errorMessage, PermanentError } from '../../errors.ts';
import { isFinalFailure } from '../../operations/incidents.ts';
import { nextStep } from '../../fleet/batches.ts';
import type { Rollout, RolloutInstance } from '../../db/rollouts.ts';
import { JOB_IDS, QUEUES, type RolloutData } from '../../queues/catalogue.ts';
import { logger, maskSecrets } from '../../../core/logger.ts';
import type { JobContext, JobHandle } from '../context.ts';
import type { Outcome } from '../lifecycle/lockedInstance.ts';

const log = logger('rollout');
/** How often the coordinator looks at its rollout again while instances update. */
const POLL_MS = 500;
export const ROLLOUT_HALTED = 'rollout.halted';

export async function coordinateRollout(ctx: JobContext, job: JobHandle<RolloutData>, token?: string): Promise<Outcome> {
  try {
    return await coordinate(ctx, job, token);
  } catch (err) {
    if (err instanceof DelayedError || !isFinalFailure(job, err)) throw err;
    // The rollout stays as it is (no instance is left half-way: each one's own job finishes it); an operator is told
    // once, and pause, resume or abort takes the rollout up again.
    const reason = maskSecrets(errorMessage(err)).slice(0, 2000);
    const auditId = await ctx.audit.recordIncidentOnce(
      'rollout.failed',
      `rollout-${job.data.rolloutId}-failed`,
      { step: 'rollout', jobId: job.id!, title: `Rollout ${job.data.rolloutId}: its coordinator failed (abort or resume it to take it up again)`, reason },
      null,
    );
    if (auditId) await ctx.jobs.addAlerts(auditId, { queue: QUEUES.rollouts, jobId: job.id! });
    throw err;
  }
}

async function coordinate(ctx: JobContext, job: JobHandle<RolloutData>, token?: string): Promise<Outcome> {
  const rollout = await ctx.rollouts.byId(job.data.rolloutId);
  if (!rollout) throw new PermanentError(`rollout ${job.data.rolloutId} does not exist`);
  if (rollout.state === 'completed' || rollout.state === 'halted' || rollout.state === 'aborted') return { state: rollout.state };
  const rows = await ctx.rollouts.instances(rollout.id);
  const done = rows.filter((r) => !['pending', 'updating'].includes(r.state)).length;
  await job.updateProgress(rows.length ? Math.round((done / rows.length) * 100) : 100);

  await ensureJobs(ctx, rollout, rows);
  if (rollout.state === 'running') {
    const finished = await advance(ctx, job, rollout, rows);
    if (finished) return finished;
  } else if (rollout.state === 'rolling_back') {
    // Raised again at each run while it rolls back (once per rollout): a crash right after the halt loses no alert.
    if (rollout.ends_as === 'halted') await raiseHalt(ctx, job, rollout.id, rollout.halt_reason ?? 'halted');
    const finished = await rollBack(ctx, job, rollout, rows);
    if (finished) return finished;
  }
  // paused: in-flight instances finish; nothing new starts until resumed or aborted.
  await job.moveToDelayed(Date.now() + POLL_MS, token);
  throw new DelayedError();
}

/**
 * Every instance the rows say is moving has its job: adding one that exists adds nothing, so a coordinator that died
 * between marking instances and adding their jobs leaves none stranded; and one that failed without recording its
 * outcome (its worker died too often) runs again, so no row stays moving for ever.
 */
async function ensureJobs(ctx: JobContext, rollout: Rollout, rows: RolloutInstance[]): Promise<void> {
  for (const row of rows) {
    const direction = row.rollback === 'running' ? 'rollback' : row.state === 'updating' ? 'update' : undefined;
    if (!direction) continue;
    const data = { rolloutId: rollout.id, instanceId: row.instance_id, direction } as const;
    await ctx.jobs.addRolloutInstance(data);
    await ctx.jobs.retryFailed(QUEUES.rollouts, JOB_IDS.rolloutInstance(data));
  }
}

async function advance(ctx: JobContext, job: JobHandle<RolloutData>, rollout: Rollout, rows: RolloutInstance[]): Promise<Outcome | undefined> {
  const step = nextStep(
    rows.map((r) => ({ instanceId: r.instance_id, batch: r.batch, state: r.state })),
    rollout.max_failures,
  );
  if (step.kind === 'launch') {
    const launched = await ctx.rollouts.setInstances(rollout.id, step.instanceIds, ['pending'], 'updating');
    for (const instanceId of launched) await ctx.jobs.addRolloutInstance({ rolloutId: rollout.id, instanceId, direction: 'update' });
    await job.log(`${step.batch === 0 ? 'canary' : `batch ${step.batch}`}: updating ${launched.length} instance(s) to generation ${rollout.target_generation}`);
    return undefined;
  }
  if (step.kind === 'halt') {
    const failed = rows.filter((r) => r.state === 'failed');
    const reason = `${failed.length} instance(s) failed (maxFailures ${rollout.max_failures}): ${failed
      .slice(0, 3)
      .map((r) => `${r.workspace_id}: ${r.detail ?? 'failed'}`)
      .join('; ')}`.slice(0, 2000);
    if (await ctx.rollouts.setState(rollout.id, ['running'], 'rolling_back', { ends_as: 'halted', halt_reason: reason, failures: failed.length })) {
      await job.log(`halted: ${reason}; rolling back the changed instances`);
      log.warn('rollout halted', { rollout: rollout.id, failures: failed.length });
      await raiseHalt(ctx, job, rollout.id, reason);
    }
    return undefined;
  }
  if (step.kind === 'complete') {
    // The target becomes current only now: new provisions never got an untested generation. If the current one
    // changed meanwhile (a control plane started with other settings), that one stays current.
    // Completed first: an abort that came in between wins, and then the target never becomes current.
    if (!(await ctx.rollouts.setState(rollout.id, ['running'], 'completed', { failures: rows.filter((r) => r.state === 'failed').length }))) return undefined;
    const madeCurrent = await ctx.fleet.setCurrent(rollout.target_generation, rollout.previous_generation);
    await ctx.audit.record({ actor: 'worker', action: 'rollout.completed', detail: { rolloutId: rollout.id, generation: rollout.target_generation, madeCurrent } });
    await job.log(`completed: generation ${rollout.target_generation} ${madeCurrent ? 'is current' : 'is not made current (the current generation changed meanwhile)'}`);
    return { state: 'completed', generation: rollout.target_generation };
  }
  return undefined;
}

/** The halt's one incident (its Slack post and email): recorded once per rollout, however often it is raised. */
async function raiseHalt(ctx: JobContext, job: JobHandle<RolloutData>, rolloutId: number, reason: string): Promise<void> {
  const auditId = await ctx.audit.recordIncidentOnce(
    ROLLOUT_HALTED,
    `rollout-${rolloutId}-halted`,
    { step: 'rollout', jobId: job.id!, title: `Rollout ${rolloutId} halted and is rolling back`, reason },
    null,
  );
  if (auditId) await ctx.jobs.addAlerts(auditId, { queue: QUEUES.rollouts, jobId: job.id! });
}

/** Halted or aborted: once nothing updates any more, every changed instance goes back; then the rollout ends. */
async function rollBack(ctx: JobContext, job: JobHandle<RolloutData>, rollout: Rollout, rows: RolloutInstance[]): Promise<Outcome | undefined> {
  if (rows.some((r) => r.state === 'updating')) return undefined;
  const changed = rows.filter((r) => (r.state === 'healthy' || r.state === 'failed') && r.rollback === null).map((r) => r.instance_id);
  if (changed.length) {
    const started = await ctx.rollouts.setRollback(rollout.id, changed, 'running');
    for (const instanceId of started) await ctx.jobs.addRolloutInstance({ rolloutId: rollout.id, instanceId, direction: 'rollback' });
    await job.log(`rolling back ${started.length} instance(s)`);
    return undefined;
  }
  if (rows.some((r) => r.rollback === 'running')) return undefined;
  const endsAs = rollout.ends_as ?? 'halted';
  await ctx.rollouts.setState(rollout.id, ['rolling_back'], endsAs);
  const notBack = rows.filter((r) => r.rollback === 'failed').length;
  await ctx.audit.record({ actor: 'worker', action: 'rollout.rolled_back', detail: { rolloutId: rollout.id, endsAs, rolledBack: rows.filter((r) => r.rollback === 'done').length, notRolledBack: notBack } });
  await job.log(`${endsAs}: changed instances rolled back${notBack ? ` (${notBack} could not be: see their rows)` : ''}`);
  return { state: endsAs, notRolledBack: notBack };
}
