/**
 * The operators' rollout API (Authorization: Bearer ADMIN_TOKEN): start a rollout of a runtime version and/or fleet
 * settings, follow it instance by instance, pause, resume or abort it. The work is done by the rollout jobs.
 */
import Router from '@koa/router';
import type { Config } from '../config.ts';
import type { AuditLog } from '../db/audit.ts';
import type { FleetGenerations, Generation } from '../db/fleetGenerations.ts';
import type { Rollout, Rollouts, RolloutState } from '../db/rollouts.ts';
import { planBatches } from '../fleet/batches.ts';
import { currentGeneration } from '../fleet/generations.ts';
import { releaseEntry } from '../fleet/releases.ts';
import { parseRolloutRequest, type RolloutRequest } from '../fleet/rolloutRequest.ts';
import { BUILTIN_VERSION, withOverrides } from '../fleet/settings.ts';
import { JOB_IDS, QUEUES } from '../queues/catalogue.ts';
import type { JobQueue } from '../queues/jobQueue.ts';
import { HttpError } from '../../core/http/httpError.ts';
import { readJsonBody } from '../../core/http/rawBody.ts';
import { requireAdminToken } from './auth.ts';

export interface RolloutsApiDeps {
  config: Config;
  fleet: FleetGenerations;
  rollouts: Rollouts;
  audit: AuditLog;
  jobs: JobQueue;
}

const ACTOR = 'admin-api';

const OPEN_STATES: readonly string[] = ['running', 'paused', 'rolling_back'];

function rolloutOpen(): HttpError {
  return new HttpError(409, 'rollout_open', 'another rollout is running, paused or rolling back: wait for it, or abort it');
}

export function rolloutsApi(deps: RolloutsApiDeps): Router {
  const router = new Router({ prefix: '/api/admin/rollouts' });
  router.use(requireAdminToken(deps.config.admin.token));

  /** Starts a rollout: 202 with its id; 400 for a bad body (secrets above all), 409 while another one is open. */
  router.post('/', async (ctx) => {
    const parsed = parseRolloutRequest(await readJsonBody(ctx.req));
    if ('problems' in parsed) throw new HttpError(400, 'invalid_request', parsed.problems.join('; '));
    const request = parsed.request;
    const current = await currentGeneration(deps);
    if (request.version !== undefined && request.version !== current.runtimeVersion) checkVersion(deps.config, request.version);
    const candidates = await deps.rollouts.candidates(request.selector);
    if (request.selector.instanceIds) {
      const found = new Set(candidates.map((c) => c.id));
      const missing = request.selector.instanceIds.filter((id) => !found.has(id));
      if (missing.length) throw new HttpError(400, 'invalid_request', `not active instances (with a service${request.selector.plan ? ` on ${request.selector.plan}` : ''}): ${missing.join(', ')}`);
    }
    // Refused before anything is written (create refuses it again, should two requests race).
    if ((await deps.rollouts.list(1)).some((r) => OPEN_STATES.includes(r.state))) throw rolloutOpen(); // only the newest can be open
    const target = await deps.fleet.ensure(withOverrides(current, request), 'rollout');
    // Instances already on the target are left out; the others go in their order, the canary first.
    const toChange = candidates.filter((c) => c.settings_generation !== target.id || c.runtime_version !== target.runtimeVersion);
    const byId = new Map(toChange.map((c) => [c.id, c]));
    const plan = planBatches(toChange.map((c) => c.id), request.canary, request.batchSize).map((p) => ({ ...p, from: byId.get(p.instanceId)!, skipped: false }));
    const rollout = await deps.rollouts.create({
      target: target.id,
      previous: current.id,
      selector: request.selector,
      batchSize: request.batchSize,
      canary: request.canary,
      maxFailures: request.maxFailures,
      createdBy: ACTOR,
      plan,
    });
    if (!rollout) throw rolloutOpen();
    const jobId = await deps.jobs.addRollout(rollout.id);
    ctx.status = 202;
    ctx.body = {
      id: rollout.id,
      state: rollout.state,
      targetGeneration: target.id,
      previousGeneration: current.id,
      version: target.runtimeVersion,
      instances: plan.length,
      alreadyOnTarget: candidates.length - toChange.length,
      batches: plan.length ? Math.max(...plan.map((p) => p.batch)) : 0,
      job: `${QUEUES.rollouts}/${jobId}`,
    };
  });

  /** The current generation, how many active instances run another one, and the newest rollouts. */
  router.get('/', async (ctx) => {
    const current = await currentGeneration(deps);
    const [behind, rollouts] = await Promise.all([deps.fleet.behind(current.id), deps.rollouts.list(50)]);
    ctx.body = { current: generationView(current), behind, rollouts: rollouts.map(view) };
  });

  router.get('/:id', async (ctx) => {
    const rollout = await rolloutOf(deps.rollouts, ctx.params.id!);
    const [rows, target, previous] = await Promise.all([
      deps.rollouts.instances(rollout.id),
      deps.fleet.byId(rollout.target_generation),
      deps.fleet.byId(rollout.previous_generation),
    ]);
    const counts: Record<string, number> = {};
    for (const row of rows) counts[row.state] = (counts[row.state] ?? 0) + 1;
    ctx.body = {
      ...view(rollout),
      target: target && generationView(target),
      previous: previous && generationView(previous),
      counts,
      instances: rows.map((r) => ({
        instanceId: r.instance_id,
        workspaceId: r.workspace_id,
        batch: r.batch,
        position: r.position,
        state: r.state,
        rollback: r.rollback,
        fromGeneration: r.from_generation,
        fromVersion: r.from_version,
        startedAt: r.started_at,
        finishedAt: r.finished_at,
        detail: r.detail,
      })),
    };
  });

  const action = (name: 'pause' | 'resume' | 'abort', from: readonly RolloutState[], to: RolloutState) =>
    router.post(`/:id/${name}`, async (ctx) => {
      const rollout = await rolloutOf(deps.rollouts, ctx.params.id!);
      const moved = await deps.rollouts.setState(rollout.id, from, to, name === 'abort' ? { ends_as: 'aborted', halt_reason: 'aborted by an operator' } : {});
      if (!moved) throw new HttpError(409, 'wrong_state', `the rollout is ${rollout.state}; ${name} needs it ${from.join(' or ')}`);
      await deps.audit.record({ actor: ACTOR, action: `rollout.${name}_requested`, detail: { rolloutId: rollout.id, from: rollout.state } });
      // A coordinator that failed for good (its failure is in its log) takes the rollout up again.
      await deps.jobs.retryFailed(QUEUES.rollouts, JOB_IDS.rollout(rollout.id));
      ctx.status = 202;
      ctx.body = { id: rollout.id, state: to };
    });
  action('pause', ['running'], 'paused');
  action('resume', ['paused'], 'running');
  // Stops launching and rolls every changed instance back (the coordinator does it).
  action('abort', ['running', 'paused'], 'rolling_back');

  return router;
}

/** A version other than the current one must exist where the compute provider takes it from. */
function checkVersion(config: Config, version: string): void {
  if (config.railway) {
    if (!('image' in config.railway.source)) {
      throw new HttpError(400, 'invalid_request', 'runtime versions are image tags: set CLAWDBOT_IMAGE (the services are built from CLAWDBOT_REPO now)');
    }
    return;
  }
  if (config.docker) return; // an image tag: a missing one fails the canary's deploy, which halts and rolls back
  if (version === BUILTIN_VERSION) return;
  if (!releaseEntry(config.fleet.releasesDir, version)) {
    throw new HttpError(400, 'invalid_request', config.fleet.releasesDir
      ? `version ${version} is not on disk: no ${version}/main.ts or main.js in RUNTIME_RELEASES_DIR`
      : `version ${version} is not on disk: RUNTIME_RELEASES_DIR is not set (only ${BUILTIN_VERSION} runs)`);
  }
}

async function rolloutOf(rollouts: Rollouts, idText: string): Promise<Rollout> {
  const id = /^\d{1,9}$/.test(idText) ? Number(idText) : NaN;
  const rollout = Number.isNaN(id) ? undefined : await rollouts.byId(id);
  if (!rollout) throw new HttpError(404, 'not_found', 'no such rollout');
  return rollout;
}

function view(r: Rollout) {
  return {
    id: r.id,
    state: r.state,
    endsAs: r.ends_as,
    targetGeneration: r.target_generation,
    previousGeneration: r.previous_generation,
    selector: r.selector,
    batchSize: r.batch_size,
    canary: r.canary,
    maxFailures: r.max_failures,
    failures: r.failures,
    createdBy: r.created_by,
    haltReason: r.halt_reason,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    finishedAt: r.finished_at,
  };
}

/** A generation as operators see it: its values, and its secrets by name only. */
function generationView(g: Generation) {
  return { id: g.id, version: g.runtimeVersion, settings: g.settings, secrets: Object.keys(g.secrets).sort(), source: g.source, createdAt: g.createdAt };
}

