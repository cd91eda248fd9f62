/**
 * Neon database provider (@neondatabase/api-client 2.7.3, pinned: 2.7.2 changed deleteProjectBranch to an object).
 *
 * One customer = one branch (named after the customer) holding one login role (same name) that owns one database,
 * `clawdbot`, served by one read-write endpoint. ensureDatabase never sleeps: it answers `pending` with what to look
 * at next time, and the step comes back after retryInMs holding no worker slot. A provision takes three calls of it
 * and seven Neon requests when nothing gets in the way:
 *
 *   1. create the branch, without an endpoint (operation create_branch)                       1 request
 *   2. its operation done: create the role, the database and the read-write endpoint          4 requests
 *      (no compute yet, so the role and database start no operation; the endpoint starts start_compute)
 *   3. that operation done: read the connection URI                                           2 requests
 *
 * Neon runs one operation at a time per project and answers 423 meanwhile, so each mutation waits for its turn,
 * booked in the control-plane database (NeonPlacements.book): concurrent sign-ups queue instead of polling Neon into
 * 423s, and the requests per provision stay the same however many sign up at once. Waits are as long as Neon's
 * operations are: learnt from the operations seen finishing (total_duration_ms, per action), doubling while one runs
 * longer, from `pollInitialMs` before anything was seen.
 *
 * Idempotent without looking first: every create is sent as is, and Neon's 409 (a branch name, role, database or
 * read-write endpoint that already exists: see neondatabase/neon-pkgs#307) means an earlier attempt made it, which is
 * then used. A crash or a lost answer never makes a second anything.
 *
 * Placement: a new customer goes to the project of NEON_PROJECT_IDS with the most room (NEON_BRANCH_LIMIT minus the
 * branches counted there), recorded before its branch is made, so a re-run creates (or finds) it in the same project.
 * A project refusing a branch for its limit (422 BRANCHES_LIMIT_EXCEEDED) is recounted (one request) and skipped, and
 * the customer placed elsewhere in the same call; only when every project is full does the step fail. Reaching 80 %
 * of a project's limit hands the step an alert to raise, once per project and crossing.
 *
 * Progress (kept in BullMQ job data) holds ids and counters only: `projectId`, `branchId`, `stage` (branch | setup |
 * uri), `ops` (operation ids still to check), `polls`, `firstMs` (the first wait for those operations), `turnAt` (a
 * booked turn) and `endpointId` (a read-write endpoint found rather than made, to see started). The role password
 * Neon returns on create is dropped on the spot; the URI is read with getConnectionUri at the end.
 *
 * Errors: 423 is a wait for the next turn, not an error; 429 → RateLimitedError (Retry-After, else 1 s);
 * 408/425/5xx, timeouts and network failures → TransientError; 401/403, 404 of the project and other 4xx →
 * PermanentError with Neon's message. Messages name ids and the call, never the API key or a URI; the AxiosError
 * (whose config carries the Authorization header) is never attached as a cause.
 */
import { performance } from 'node:perf_hooks';
import { createApiClient, EndpointType, type Api, type Branch, type Operation } from '@neondatabase/api-client';
import type { NeonConfig } from '../../config.ts';
import type { CapacityAlert, NeonPlacements, ProjectLoad } from '../../db/neonPlacements.ts';
import { PermanentError, RateLimitedError, TransientError, parseRetryAfter } from '../../errors.ts';
import { providerAxiosAdapter } from '../http.ts';
import type { DatabaseProgress, DatabaseProvider, DatabaseRef, EnsureDatabaseResult, ListedDatabase, ProviderAlert } from '../types.ts';

/** The database every customer's runtime uses, owned by the customer's role. */
export const NEON_DATABASE_NAME = 'clawdbot';

export interface NeonProviderOptions {
  /** The first wait for an operation before any was seen finishing (default 300 ms); waits double while one runs. */
  pollInitialMs?: number;
  /** The shortest wait (default 50 ms). */
  pollMinMs?: number;
  /** The longest wait between two looks at an operation (default 10 s). */
  pollMaxMs?: number;
  /** Learn the first wait from the operations seen finishing (default true). */
  learn?: boolean;
  /** Per-request timeout (default 15 s). */
  timeoutMs?: number;
}

type Stage = 'branch' | 'setup' | 'uri';
const STAGES: readonly Stage[] = ['branch', 'setup', 'uri'];
/** Progress written by the provider before it made role, database and endpoint in one go. */
const OLD_STAGES: Record<string, Stage> = { role: 'setup', database: 'setup' };

interface Progress {
  projectId: string;
  branchId: string | null;
  stage: Stage;
  /** Operation ids of our last mutation not yet seen finished. */
  ops: string[];
  /** Looks at them so far (the backoff exponent). */
  polls: number;
  /** The first wait for them, which later waits double. */
  firstMs: number;
  /** When our booked turn to send the next mutation comes (epoch ms). */
  turnAt: number | null;
  /** A read-write endpoint found rather than made (its start_compute unknown): seen started before the URI. */
  endpointId: string | null;
}

const SUCCEEDED = new Set<string>(['finished', 'skipped']);
const FAILED = new Set<string>(['failed', 'error', 'cancelled']);
/** What OperationTimes calls the requests of the setup stage, sent before its endpoint's operation starts. */
const SETUP_REQUESTS = 'setup requests';
/** A booked turn this close is taken now. */
const TURN_SLACK_MS = 25;

/** Role names: what instanceResources() makes (claw_<hex>), within Postgres' 63 bytes and outside pg_/neon_. */
const NAME_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;
const MAX_BRANCH_PAGES = 50;
/** Branches a listing asks for at once. */
const LIST_PAGE = 100;

/** A failed API call, before it is classified (kept internal: it is never thrown out of the provider). */
class NeonCallError extends Error {
  constructor(
    readonly what: string,
    readonly status: number | undefined,
    readonly code: string,
    readonly neonMessage: string,
    readonly retryAfterMs: number | undefined,
  ) {
    super(`Neon: ${what} failed (${status ?? code})`);
    this.name = 'NeonCallError';
  }
}

const statusOf = (err: unknown): number | undefined => (err instanceof NeonCallError ? err.status : undefined);
const isBranchLimit = (err: unknown): boolean =>
  err instanceof NeonCallError &&
  (/BRANCHES_LIMIT_EXCEEDED/.test(err.code) || (err.status === 422 && /branch/i.test(err.neonMessage) && /limit/i.test(err.neonMessage)));

/**
 * How long Neon's operations take, per action: a moving average of the durations seen. An operation Neon reports as
 * taking 0 ms (done as soon as it started) counts too: its next wait is the shortest look.
 */
export class OperationTimes {
  private readonly seen = new Map<string, number>();
  constructor(
    private readonly initialMs: number,
    private readonly learn: boolean,
  ) {}

  expected(action: string): number {
    return this.seen.get(action) ?? (action === SETUP_REQUESTS ? 100 : this.initialMs);
  }

  observe(action: string, ms: number): void {
    if (!this.learn || !Number.isFinite(ms) || ms < 0) return;
    const before = this.seen.get(action);
    this.seen.set(action, before === undefined ? ms : before * 0.7 + ms * 0.3);
  }
}

interface StepState {
  p: Progress;
  alerts: CapacityAlert[];
}

export class NeonDatabaseProvider implements DatabaseProvider {
  readonly kind = 'neon';
  /** Requests sent by this instance, and the time spent waiting for their answers (for budgets and benchmarks). */
  apiCalls = 0;
  apiMs = 0;
  private readonly api: Api<unknown>;
  private readonly pollMinMs: number;
  private readonly pollMaxMs: number;
  private readonly times: OperationTimes;
  /** Every project of the pool has its first count (once per process). */
  private counting: Promise<void> | undefined;

  constructor(
    private readonly config: NeonConfig,
    private readonly placements: NeonPlacements,
    options: NeonProviderOptions = {},
  ) {
    if (config.projectIds.length === 0) throw new Error('NeonDatabaseProvider needs at least one project id');
    this.api = createApiClient({ apiKey: config.apiKey, baseURL: config.apiUrl, timeout: options.timeoutMs ?? 15_000, adapter: providerAxiosAdapter('neon') });
    this.pollMinMs = options.pollMinMs ?? 50;
    this.pollMaxMs = options.pollMaxMs ?? 10_000;
    this.times = new OperationTimes(options.pollInitialMs ?? 300, options.learn ?? true);
  }

  async ensureDatabase(name: string, progress?: DatabaseProgress): Promise<EnsureDatabaseResult> {
    checkName(name);
    const state: { p: Progress | undefined; alerts: CapacityAlert[] } = { p: readProgress(progress), alerts: [] };
    try {
      if (!state.p) {
        const placed = await this.place(name);
        state.alerts.push(...placed.alerts);
        state.p = this.fresh(placed.projectId);
      }
      return this.withAlerts(await this.step(name, state as StepState, false), state.alerts);
    } catch (err) {
      // 423: the project runs another operation (another customer's, or one we lost track of): wait for a new turn.
      if (statusOf(err) === 423 && state.p) {
        const p = state.p;
        const booked = await this.placements.book(p.projectId, this.turnSpan(p.stage));
        const waitMs = Math.max(booked, (err as NeonCallError).retryAfterMs ?? 0, this.backoff(this.times.expected('start_compute'), p.polls));
        const waiting = { ...p, turnAt: Date.now() + waitMs };
        return this.withAlerts(this.turnWait(waiting, `project ${p.projectId} is busy with another operation (423)`), state.alerts);
      }
      // 503 is always safe to retry (Neon's spec): wait like for a busy project, without using up an attempt.
      if (statusOf(err) === 503 && state.p) {
        const p = state.p;
        const waitMs = Math.max((err as NeonCallError).retryAfterMs ?? 0, this.backoff(this.times.expected('start_compute'), p.polls));
        return this.withAlerts(this.pollWait({ ...p, turnAt: null }, waitMs, 'Neon is unavailable (503)'), state.alerts);
      }
      throw this.classify(err);
    }
  }

  async deleteDatabase(ref: DatabaseRef): Promise<void> {
    const limit = this.config.branchLimit;
    try {
      let projectId: string;
      let branchId: string;
      const slash = ref.branchId.indexOf('/');
      if (slash > 0) {
        projectId = ref.branchId.slice(0, slash);
        branchId = ref.branchId.slice(slash + 1);
      } else {
        // Not recorded (a step died before it could): the branch is named after the role, in its placed project
        // (or, placed before placements were recorded, in one of the pool's).
        checkName(ref.roleName);
        const placed = await this.placements.projectOf(ref.roleName);
        let found: { projectId: string; branch: Branch } | undefined;
        for (const candidate of placed ? [placed] : this.config.projectIds) {
          const branch = await this.findBranch(candidate, ref.roleName);
          if (branch) {
            found = { projectId: candidate, branch };
            break;
          }
        }
        if (!found) return await this.placements.release(ref.roleName, placed, false, limit);
        projectId = found.projectId;
        branchId = found.branch.id;
      }
      let deleted: boolean;
      try {
        const { status } = await this.call(`delete branch ${branchId} in project ${projectId}`, () => this.api.deleteProjectBranch({ projectId, branchId }));
        deleted = status !== 204; // 200: deleted now; 204: it was gone already
      } catch (err) {
        if (statusOf(err) !== 404) throw err;
        deleted = false;
      }
      await this.placements.release(ref.roleName, projectId, deleted, limit);
    } catch (err) {
      if (statusOf(err) === 423) {
        const e = err as NeonCallError;
        throw new TransientError(`Neon: ${e.what}: project busy with another operation (423)`, e.retryAfterMs ?? this.times.expected('delete_timeline'));
      }
      throw this.classify(err);
    }
  }

  /**
   * Every branch of every project in NEON_PROJECT_IDS, 100 a request. A project holding more pages than its branch
   * limit allows fails the listing rather than answer part of it.
   */
  async listDatabases(): Promise<ListedDatabase[]> {
    const listed: ListedDatabase[] = [];
    const maxPages = Math.ceil(this.config.branchLimit / LIST_PAGE) + 1;
    try {
      for (const projectId of this.config.projectIds) {
        let cursor: string | undefined;
        for (let page = 0; ; page++) {
          if (page >= maxPages) throw new TransientError(`Neon: project ${projectId} lists more than ${maxPages} pages of branches`);
          const { data } = await this.call(`list branches of project ${projectId}`, () =>
            this.api.listProjectBranches({ projectId, limit: LIST_PAGE, ...(cursor ? { cursor } : {}) }),
          );
          for (const branch of data.branches) {
            listed.push({ branchId: `${projectId}/${branch.id}`, databaseName: NEON_DATABASE_NAME, roleName: branch.name, name: branch.name, missing: [] });
          }
          const next = data.pagination?.next;
          if (!next || next === cursor || data.branches.length === 0) break;
          cursor = next;
        }
      }
    } catch (err) {
      throw this.classify(err);
    }
    return listed;
  }

  async close(): Promise<void> {}

  // ---------- placement ----------

  /** The name's project: placed before, else the one with the most room. Every project is counted once, first. */
  private async place(name: string): Promise<{ projectId: string; alerts: CapacityAlert[] }> {
    this.counting ??= this.countProjects().catch((err: unknown) => {
      this.counting = undefined;
      throw err;
    });
    await this.counting;
    const placed = await this.placements.place(name, this.config.projectIds, this.config.branchLimit);
    if ('full' in placed) throw this.allFull(placed.full);
    return placed;
  }

  private async countProjects(): Promise<void> {
    for (const projectId of await this.placements.uncounted(this.config.projectIds)) {
      const { data } = await this.call(`count branches of project ${projectId}`, () => this.api.countProjectBranches({ projectId }));
      await this.placements.counted(projectId, data.count);
    }
  }

  private allFull(loads: ProjectLoad[]): PermanentError {
    const each = loads.map((l) => `${l.projectId} holds ${l.branches} of ${l.limit} branches`).join(', ');
    return new PermanentError(
      `every Neon project in NEON_PROJECT_IDS has reached its branch limit (${each || 'no project could be counted'}); ` +
        'add a project to NEON_PROJECT_IDS, or free branches',
    );
  }

  private withAlerts(result: EnsureDatabaseResult, alerts: CapacityAlert[]): EnsureDatabaseResult {
    if (alerts.length === 0) return result;
    const unique = [...new Map(alerts.map((a) => [a.key, a])).values()];
    return { ...result, alerts: unique.map(capacityAlert) };
  }

  // ---------- the step ----------

  private fresh(projectId: string): Progress {
    return { projectId, branchId: null, stage: 'branch', ops: [], polls: 0, firstMs: 0, turnAt: null, endpointId: null };
  }

  /** One idempotent step. `state.p` is kept current, so a 423 mid-way resumes from where it got to. */
  private async step(name: string, state: StepState, restarted: boolean): Promise<EnsureDatabaseResult> {
    let p = state.p;
    const set = (next: Progress): Progress => (state.p = p = next);

    // 1. Operations of our last mutation: all must have succeeded before the next mutation.
    if (p.ops.length > 0) {
      const remaining = [...p.ops];
      while (remaining.length > 0) {
        const id = remaining[0]!;
        let op: Operation | undefined;
        try {
          op = (await this.call(`read operation ${id} in project ${p.projectId}`, () => this.api.getProjectOperation(p.projectId, id))).data.operation;
        } catch (err) {
          if (statusOf(err) !== 404) throw err;
          // Gone (Neon deletes old operations): nothing to wait for; a still-running conflict would answer 423 anyway.
        }
        if (op && FAILED.has(op.status)) {
          throw new PermanentError(
            `Neon operation ${op.action} (${op.id}) on branch ${op.branch_id ?? p.branchId ?? '?'} in project ${p.projectId} ended ${op.status}: ${this.clean(op.error ?? 'no error given')}`,
          );
        }
        if (op && !SUCCEEDED.has(op.status)) {
          // scheduling, running, cancelling (or a status this client does not know yet): look again later.
          set({ ...p, ops: remaining });
          return this.pollWait(p, this.backoff(p.firstMs || this.times.expected(op.action), p.polls), `Neon operation ${op.action} on branch ${op.branch_id ?? p.branchId ?? '?'} is ${op.status}`);
        }
        if (op) this.times.observe(op.action, op.total_duration_ms);
        remaining.shift();
      }
      // Our operations are done: the next turn, booked within our own span, may begin now.
      set({ ...p, ops: [], polls: 0, firstMs: 0, turnAt: p.turnAt === null ? null : Math.min(p.turnAt, Date.now()) });
    }

    // 2. The branch, by exact name, in the placed project.
    if (p.stage === 'branch' || !p.branchId) {
      set({ ...p, stage: 'branch' });
      for (let refusals = 0; p.stage === 'branch'; refusals++) {
        // One booking for both of this provision's turns, back to back: the branch's, then the endpoint's.
        const turn = await this.turn(set, p, this.turnSpan('branch'));
        if (turn) return turn;
        const { projectId } = p;
        const nextTurnAt = p.turnAt! + this.turnMs('create_branch');
        try {
          const { data } = await this.call(`create branch ${name} in project ${projectId}`, () =>
            this.api.createProjectBranch(projectId, { branch: { name }, annotation_value: { clawdbot: name } }),
          );
          set({ ...p, branchId: data.branch.id, stage: 'setup' });
          const waiting = this.afterMutation(set, p, data.operations, `creating branch ${data.branch.id}`, nextTurnAt);
          if (waiting) return this.doneAlready(p) ? this.step(name, state, restarted) : waiting;
          break;
        } catch (err) {
          if (statusOf(err) === 409) {
            // Made by an earlier attempt (Neon's branch names are unique in a project): use it. Its operations may still
            // run; the next mutation then answers 423 and waits.
            const found = await this.findBranch(projectId, name);
            if (!found) throw new TransientError(`Neon answered 409 for branch ${name} in project ${projectId}, but it is not listed yet`);
            set({ ...p, branchId: found.id, stage: 'setup' }); // no operation started: the turn is still ours
            break;
          }
          if (!isBranchLimit(err) || refusals >= this.config.projectIds.length) throw err;
          set(await this.refused(name, p, state));
        }
      }
    }
    const branchId = p.branchId!;
    const { projectId } = p;

    try {
      // 3. Role, database and read-write endpoint, in one turn: without a compute the role and database start no
      // operation, so nothing waits between them; the endpoint's start_compute is the one to wait for.
      if (p.stage === 'setup') {
        const turn = await this.turn(set, p, this.turnSpan('setup'));
        if (turn) return turn;
        const started = Date.now();
        await this.createRole(projectId, branchId, name);
        await this.createDatabase(projectId, branchId, name);
        try {
          const { data } = await this.call(`create the read-write endpoint of branch ${branchId}`, () =>
            this.api.createProjectEndpoint(projectId, { endpoint: { branch_id: branchId, type: EndpointType.ReadWrite } }),
          );
          this.times.observe(SETUP_REQUESTS, Date.now() - started);
          set({ ...p, stage: 'uri' });
          const waiting = this.afterMutation(set, p, data.operations, `starting endpoint ${data.endpoint.id} of branch ${branchId}`);
          if (waiting) return this.doneAlready(p) ? this.step(name, state, restarted) : waiting;
        } catch (err) {
          // One read-write endpoint per branch: Neon refuses a second (409). Use the one an earlier attempt made.
          if (statusOf(err) !== 409 && statusOf(err) !== 422 && statusOf(err) !== 400) throw err;
          const { endpoints } = (await this.call(`list endpoints of branch ${branchId}`, () => this.api.listProjectBranchEndpoints(projectId, branchId))).data;
          const readWrite = endpoints.find((e) => e.type === EndpointType.ReadWrite);
          if (!readWrite) throw err;
          set({ ...p, stage: 'uri', turnAt: null, endpointId: readWrite.id });
        }
      }

      // 4. Everything exists and no operation of ours runs. An endpoint found (not made) may still be starting.
      if (p.endpointId) {
        const endpointId = p.endpointId;
        const { endpoint } = (await this.call(`read endpoint ${endpointId}`, () => this.api.getProjectEndpoint(projectId, endpointId))).data;
        if (endpoint.current_state === 'init') {
          return this.pollWait(p, this.backoff(this.times.expected('start_compute'), p.polls), `endpoint ${endpointId} of branch ${branchId} is still starting`);
        }
        set({ ...p, endpointId: null, polls: 0 });
      }
      const { uri } = (
        await this.call(`read the connection URI of branch ${branchId}`, () =>
          this.api.getConnectionUri({ projectId, branch_id: branchId, database_name: NEON_DATABASE_NAME, role_name: name }),
        )
      ).data;
      if (typeof uri !== 'string' || uri === '') throw new TransientError(`Neon returned no connection URI for branch ${branchId} in project ${projectId}`);
      return { ready: { branchId: `${projectId}/${branchId}`, databaseName: NEON_DATABASE_NAME, roleName: name, connectionUrl: uri } };
    } catch (err) {
      // The branch we remembered is gone (deleted by hand?): start over from the name, in the same project, once per call.
      if (statusOf(err) === 404 && !restarted) {
        state.p = { ...this.fresh(projectId), polls: p.polls };
        return this.step(name, state, true);
      }
      throw err;
    }
  }

  private async createRole(projectId: string, branchId: string, name: string): Promise<void> {
    try {
      // data.role.password is deliberately not kept: the URI is fetched with getConnectionUri when ready.
      await this.call(`create role ${name} on branch ${branchId}`, () => this.api.createProjectBranchRole(projectId, branchId, { role: { name } }));
    } catch (err) {
      if (statusOf(err) !== 409) throw err; // made by an earlier attempt
    }
  }

  private async createDatabase(projectId: string, branchId: string, name: string): Promise<void> {
    try {
      await this.call(`create database ${NEON_DATABASE_NAME} on branch ${branchId}`, () =>
        this.api.createProjectBranchDatabase(projectId, branchId, { database: { name: NEON_DATABASE_NAME, owner_name: name } }),
      );
    } catch (err) {
      if (statusOf(err) !== 409) throw err;
      // It exists: made by an earlier attempt, unless someone else's (then it is not this customer's database).
      const { database } = (
        await this.call(`read database ${NEON_DATABASE_NAME} of branch ${branchId}`, () => this.api.getProjectBranchDatabase(projectId, branchId, NEON_DATABASE_NAME))
      ).data;
      if (database.owner_name !== name) {
        throw new PermanentError(`Neon database ${NEON_DATABASE_NAME} on branch ${branchId} in project ${projectId} is owned by ${database.owner_name}, not ${name}`);
      }
    }
  }

  /**
   * Neon refused a branch for its project's branch limit. Made there by an earlier attempt after all? Then that one.
   * Else the project is recounted (its count and limit from now on) and the name placed where there is room.
   */
  private async refused(name: string, p: Progress, state: StepState): Promise<Progress> {
    const { projectId } = p;
    const found = await this.findBranch(projectId, name);
    if (found) return { ...p, branchId: found.id, stage: 'setup' };
    const { data } = await this.call(`count branches of project ${projectId}`, () => this.api.countProjectBranches({ projectId }));
    const placed = await this.placements.refused(name, projectId, data.count, this.config.projectIds, this.config.branchLimit);
    state.alerts.push(...placed.alerts);
    if ('full' in placed) throw this.allFull(placed.full);
    return this.fresh(placed.projectId);
  }

  /**
   * Our turn to send a mutation to the project: now (undefined, with `turnAt` set to when it began), or a wait for it.
   * A turn booked earlier is waited for; else one lasting `spanMs` is booked after the turns booked so far.
   */
  private async turn(set: (p: Progress) => Progress, p: Progress, spanMs: number): Promise<EnsureDatabaseResult | undefined> {
    let { turnAt } = p;
    if (turnAt === null) {
      turnAt = Date.now() + (await this.placements.book(p.projectId, spanMs));
      set({ ...p, turnAt });
    }
    if (turnAt - Date.now() <= TURN_SLACK_MS) return undefined;
    return this.turnWait({ ...p, turnAt }, `waiting for a turn in project ${p.projectId} (Neon runs one operation at a time per project)`);
  }

  /** How long the project is ours for a mutation starting `action`: its operation, with a margin. */
  private turnMs(action: string): number {
    return Math.round(this.times.expected(action) * 1.2) + 30;
  }

  /** The turns a provision still needs from this stage on. */
  private turnSpan(stage: Stage): number {
    return (stage === 'branch' ? this.turnMs('create_branch') : 0) + this.times.expected(SETUP_REQUESTS) + this.turnMs('start_compute');
  }

  /**
   * After a mutation: done already, or a wait for its operations, about as long as they usually take (and until the
   * next turn, `nextTurnAt`, booked with this one).
   */
  private afterMutation(
    set: (p: Progress) => Progress,
    p: Progress,
    operations: Operation[] | undefined,
    what: string,
    nextTurnAt: number | null = null,
  ): EnsureDatabaseResult | undefined {
    const pending = (operations ?? []).filter((op) => !SUCCEEDED.has(op.status));
    const ops = pending.map((op) => op.id);
    const firstMs = Math.max(0, ...pending.map((op) => Math.round(this.times.expected(op.action) * 1.1) + 10));
    const next = set({ ...p, ops, polls: 0, firstMs, turnAt: nextTurnAt });
    if (ops.length === 0) return undefined;
    return this.pollWait(next, Math.max(firstMs, (nextTurnAt ?? 0) - Date.now()), `${what} (${ops.length} operation${ops.length === 1 ? '' : 's'})`);
  }

  /**
   * Whether the operations just started usually end before the shortest wait (as learned): then they are looked at
   * in the same run, and a wait (a job round trip) comes only if they still run. Once per mutation: the look that
   * finds them running waits as usual.
   */
  private doneAlready(p: Progress): boolean {
    return p.firstMs <= this.pollMinMs && (p.turnAt === null || p.turnAt - Date.now() <= TURN_SLACK_MS);
  }

  /** `firstMs` doubled per look so far, within the bounds. */
  private backoff(firstMs: number, polls: number): number {
    return Math.min(Math.max(firstMs * 2 ** Math.min(polls, 30), this.pollMinMs), this.pollMaxMs);
  }

  /** A pending answer to look again after about `ms` (a little jitter, so waiting steps do not move in lockstep). */
  private pollWait(p: Progress, ms: number, detail: string): EnsureDatabaseResult {
    const retryInMs = Math.max(this.pollMinMs, Math.round(ms * (0.95 + 0.1 * Math.random())));
    return { pending: writeProgress({ ...p, polls: p.polls + 1 }), retryInMs, detail };
  }

  /** A pending answer to come back when the booked turn (`p.turnAt`) comes. */
  private turnWait(p: Progress, detail: string): EnsureDatabaseResult {
    const retryInMs = Math.max(this.pollMinMs, Math.round((p.turnAt ?? 0) - Date.now()));
    return { pending: writeProgress({ ...p, polls: p.polls + 1 }), retryInMs, detail };
  }

  /** The branch with exactly this name (search matches partially), following pagination. */
  private async findBranch(projectId: string, name: string): Promise<Branch | undefined> {
    let cursor: string | undefined;
    for (let page = 0; page < MAX_BRANCH_PAGES; page++) {
      const { data } = await this.call(`list branches of project ${projectId}`, () =>
        this.api.listProjectBranches({ projectId, search: name, limit: 100, ...(cursor ? { cursor } : {}) }),
      );
      const match = data.branches.find((b) => b.name === name);
      if (match) return match;
      const next = data.pagination?.next;
      if (!next || next === cursor || data.branches.length === 0) return undefined;
      cursor = next;
    }
    throw new TransientError(`Neon: more than ${MAX_BRANCH_PAGES} pages of branches match ${name} in project ${projectId}`);
  }

  // ---------- calls and errors ----------

  private async call<T>(what: string, request: () => Promise<T>): Promise<T> {
    this.apiCalls++;
    const started = performance.now();
    try {
      return await request();
    } catch (err) {
      const e = err as {
        isAxiosError?: boolean;
        code?: string;
        response?: { status: number; data?: unknown; headers?: Record<string, unknown> & { get?: (name: string) => unknown } };
      };
      if (!e || e.isAxiosError !== true) throw err;
      const response = e.response;
      if (!response) throw new NeonCallError(what, undefined, e.code ?? 'network error', '', undefined);
      const body = (typeof response.data === 'object' && response.data !== null ? response.data : {}) as { code?: unknown; message?: unknown };
      const header = typeof response.headers?.get === 'function' ? response.headers.get('retry-after') : response.headers?.['retry-after'];
      throw new NeonCallError(
        what,
        response.status,
        typeof body.code === 'string' ? body.code : '',
        typeof body.message === 'string' ? this.clean(body.message) : '',
        parseRetryAfter(typeof header === 'string' ? header : header === undefined || header === null ? undefined : String(header)),
      );
    } finally {
      this.apiMs += performance.now() - started;
    }
  }

  /** The error a job should see: PermanentError, TransientError or RateLimitedError. */
  private classify(err: unknown): Error {
    if (!(err instanceof NeonCallError)) return err instanceof Error ? err : new Error(String(err));
    const { what, status, code, neonMessage, retryAfterMs } = err;
    const said = neonMessage ? `: ${neonMessage}` : '';
    const coded = code ? ` ${code}` : '';
    if (status === undefined) return new TransientError(`Neon API did not answer (${code}) while trying to ${what}`);
    if (status === 429) return new RateLimitedError(`Neon rate limit (429) while trying to ${what}`, retryAfterMs ?? 1_000);
    if (status === 408 || status === 423 || status === 425 || status >= 500) {
      return new TransientError(`Neon answered HTTP ${status} while trying to ${what}${said}`, retryAfterMs);
    }
    if (status === 401 || status === 403) {
      return new PermanentError(`Neon rejected the API key (HTTP ${status}) while trying to ${what}${said}; check NEON_API_KEY and its access to the project`);
    }
    if (isBranchLimit(err)) {
      return new PermanentError(`Neon refused a branch for its branch limit (HTTP ${status}${coded}) while trying to ${what}${said}; add a project to NEON_PROJECT_IDS`);
    }
    const project = /(?:count|list) branches of project (\S+)/.exec(what)?.[1];
    if (status === 404 && project) {
      return new PermanentError(`Neon project ${project} not found (HTTP 404)${said}; check NEON_PROJECT_IDS`);
    }
    return new PermanentError(`Neon answered HTTP ${status}${coded} while trying to ${what}${said}`);
  }

  /** Neon's own text, bounded, with anything that could be a credential removed. */
  private clean(text: string): string {
    let out = text.replace(/[a-z][a-z0-9+.-]*:\/\/\S+/gi, '[uri]');
    if (this.config.apiKey) out = out.split(this.config.apiKey).join('[api key]');
    return out.length > 300 ? `${out.slice(0, 300)}…` : out;
  }
}

/** What operators are told when a project reaches 80 % of its branch limit (or Neon refuses a branch there). */
function capacityAlert(alert: CapacityAlert): ProviderAlert {
  const percent = Math.floor((alert.branches / Math.max(alert.limit, 1)) * 100);
  return {
    key: alert.key,
    title: `Neon project ${alert.projectId} reached ${percent >= 100 ? 'its' : '80 % of its'} branch limit`,
    reason:
      `Neon project ${alert.projectId} holds ${alert.branches} of ${alert.limit} branches (${percent} %). New customers go to the projects ` +
      'of NEON_PROJECT_IDS with the most room; add a project there before they are all full.',
  };
}

function checkName(name: string): void {
  if (!NAME_PATTERN.test(name)) throw new PermanentError(`invalid Neon role/branch name ${JSON.stringify(name)}`);
}

/** Progress from job data, or undefined when it is missing or not ours (starting over is always safe). */
function readProgress(raw: DatabaseProgress | undefined): Progress | undefined {
  if (!raw) return undefined;
  const { projectId, branchId, ops, polls, firstMs, turnAt, endpointId } = raw;
  const stage = typeof raw.stage === 'string' ? (OLD_STAGES[raw.stage] ?? raw.stage) : undefined;
  if (typeof projectId !== 'string' || !projectId) return undefined;
  if (typeof stage !== 'string' || !(STAGES as readonly string[]).includes(stage)) return undefined;
  const count = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);
  return {
    projectId,
    branchId: typeof branchId === 'string' && branchId ? branchId : null,
    stage: stage as Stage,
    ops: Array.isArray(ops) ? ops.filter((id): id is string => typeof id === 'string') : [],
    polls: count(polls),
    firstMs: count(firstMs),
    turnAt: typeof turnAt === 'number' && Number.isFinite(turnAt) ? turnAt : null,
    endpointId: typeof endpointId === 'string' && endpointId ? endpointId : null,
  };
}

function writeProgress(p: Progress): DatabaseProgress {
  return {
    projectId: p.projectId,
    ...(p.branchId ? { branchId: p.branchId } : {}),
    stage: p.stage,
    ops: p.ops,
    polls: p.polls,
    ...(p.firstMs ? { firstMs: p.firstMs } : {}),
    ...(p.turnAt !== null ? { turnAt: p.turnAt } : {}),
    ...(p.endpointId ? { endpointId: p.endpointId } : {}),
  };
}
