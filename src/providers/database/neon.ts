/**
 * Neon database provider (@neondatabase/api-client 2.7.3, pinned: 2.7.2 changed deleteProjectBranch to an object).
 *
 * One customer = one branch (named after the customer, with a read_write endpoint) holding one login role (same
 * name) that owns one database, `clawdbot`. ensureDatabase makes at most ONE mutation per call and never sleeps:
 * it answers `pending` with the operation ids to look at next time, and the step comes back after retryInMs
 * holding no worker slot. Every call starts by finding what exists (exact branch name, role, database), so a
 * repeat, a crash or a lost response never creates a second anything.
 *
 * Progress (kept in BullMQ job data) holds ids and counters only: `projectId`, `branchId`, `stage`
 * (branch | role | database | uri), `ops` (operation ids still to check) and `polls` (the backoff counter). The
 * role password Neon returns on create is dropped on the spot; the URI is read with getConnectionUri at the end.
 *
 * Placement: a name's project is chosen by rendezvous hashing (highest sha256(projectId, name) wins) over
 * config.projectIds: deterministic, independent of the list's order, and adding a project moves only the names
 * that now prefer it. Progress pins the project once chosen, and `ready.branchId` is `${projectId}/${branchId}`, so
 * deletes never depend on placement. Capacity-aware placement (5,000 branches and 20 active computes per project,
 * e.g. a placement table in Postgres filled by least-loaded project) is future work; until then a full project
 * surfaces as a PermanentError naming it (422 BRANCHES_LIMIT_EXCEEDED).
 *
 * Errors: 423 (project busy with another operation) is a `pending`, not an error; 429 → RateLimitedError
 * (Retry-After, else 1 s); 408/425/5xx, timeouts and network failures → TransientError; 401/403, 404 of the project
 * and other 4xx → PermanentError with Neon's message. Messages name ids and the call, never the API key or a URI;
 * the AxiosError (whose config carries the Authorization header) is never attached as a cause.
 */
import { createHash } from 'node:crypto';
import { createApiClient, EndpointType, type Api, type Branch, type Operation } from '@neondatabase/api-client';
import type { NeonConfig } from '../../config.ts';
import { PermanentError, RateLimitedError, TransientError, parseRetryAfter } from '../../errors.ts';
import type { DatabaseProgress, DatabaseProvider, DatabaseRef, EnsureDatabaseResult } from '../types.ts';

/** The database every customer's runtime uses, owned by the customer's role. */
export const NEON_DATABASE_NAME = 'clawdbot';

export interface NeonProviderOptions {
  /** First wait after a mutation or while the project is busy (default 1 s); doubles per poll. */
  pollInitialMs?: number;
  /** Ceiling of that wait (default 10 s). */
  pollMaxMs?: number;
  /** Per-request timeout (default 15 s). */
  timeoutMs?: number;
}

type Stage = 'branch' | 'role' | 'database' | 'uri';
const STAGES: readonly Stage[] = ['branch', 'role', 'database', 'uri'];

interface Progress {
  projectId: string;
  branchId: string | null;
  stage: Stage;
  /** Operation ids of our last mutation not yet seen finished. */
  ops: string[];
  /** Consecutive waits since the last mutation: the backoff exponent. */
  polls: number;
}

const SUCCEEDED = new Set<string>(['finished', 'skipped']);
const FAILED = new Set<string>(['failed', 'error', 'cancelled']);

/** Role names: what instanceResources() makes (claw_<hex>), within Postgres' 63 bytes and outside pg_/neon_. */
const NAME_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;
const MAX_BRANCH_PAGES = 50;

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

export class NeonDatabaseProvider implements DatabaseProvider {
  readonly kind = 'neon';
  /** Requests sent by this instance (for budgets and benchmarks). */
  apiCalls = 0;
  private readonly api: Api<unknown>;
  private readonly pollInitialMs: number;
  private readonly pollMaxMs: number;

  constructor(
    private readonly config: NeonConfig,
    options: NeonProviderOptions = {},
  ) {
    if (config.projectIds.length === 0) throw new Error('NeonDatabaseProvider needs at least one project id');
    this.api = createApiClient({ apiKey: config.apiKey, baseURL: config.apiUrl, timeout: options.timeoutMs ?? 15_000 });
    this.pollInitialMs = options.pollInitialMs ?? 1_000;
    this.pollMaxMs = options.pollMaxMs ?? 10_000;
  }

  /** The project a name lives in: rendezvous hashing over the pool (deterministic, order-independent). */
  projectFor(name: string): string {
    let best = '';
    let bestScore = '';
    for (const projectId of this.config.projectIds) {
      const score = createHash('sha256').update(`${projectId}\0${name}`).digest('hex');
      if (score > bestScore) [best, bestScore] = [projectId, score];
    }
    return best;
  }

  async ensureDatabase(name: string, progress?: DatabaseProgress): Promise<EnsureDatabaseResult> {
    checkName(name);
    const start = readProgress(progress) ?? this.fresh(name);
    const state = { p: start };
    try {
      return await this.step(name, state, false);
    } catch (err) {
      // 423: the project runs another operation (ours after a lost response, or another customer's). Safe to retry.
      if (statusOf(err) === 423) return this.wait(state.p, `project ${state.p.projectId} is busy with another operation (423)`, (err as NeonCallError).retryAfterMs);
      // 503 is always safe to retry (Neon's spec): wait like for a busy project, without using up an attempt.
      if (statusOf(err) === 503) return this.wait(state.p, `Neon is unavailable (503)`, (err as NeonCallError).retryAfterMs);
      throw this.classify(err);
    }
  }

  async deleteDatabase(ref: DatabaseRef): Promise<void> {
    try {
      let projectId: string;
      let branchId: string;
      const slash = ref.branchId.indexOf('/');
      if (slash > 0) {
        projectId = ref.branchId.slice(0, slash);
        branchId = ref.branchId.slice(slash + 1);
      } else {
        // Not recorded (a step died before it could): the branch is named after the role, in its placed project.
        checkName(ref.roleName);
        projectId = this.projectFor(ref.roleName);
        const found = await this.findBranch(projectId, ref.roleName);
        if (!found) return;
        branchId = found.id;
      }
      try {
        await this.call(`delete branch ${branchId} in project ${projectId}`, () => this.api.deleteProjectBranch({ projectId, branchId }));
      } catch (err) {
        if (statusOf(err) === 404) return; // already gone (a 204 resolves normally)
        throw err;
      }
    } catch (err) {
      if (statusOf(err) === 423) {
        const e = err as NeonCallError;
        throw new TransientError(`Neon: ${e.what}: project busy with another operation (423)`, e.retryAfterMs ?? this.pollInitialMs);
      }
      throw this.classify(err);
    }
  }

  async close(): Promise<void> {}

  // ---------- the step ----------

  private fresh(name: string): Progress {
    return { projectId: this.projectFor(name), branchId: null, stage: 'branch', ops: [], polls: 0 };
  }

  /** One idempotent step. `state.p` is kept current, so a 423 mid-way resumes from where it got to. */
  private async step(name: string, state: { p: Progress }, restarted: boolean): Promise<EnsureDatabaseResult> {
    let p = state.p;
    const set = (next: Progress): Progress => (state.p = p = next);
    const { projectId } = p;

    // 1. Operations of our last mutation: all must have succeeded before the next mutation.
    if (p.ops.length > 0) {
      const remaining = [...p.ops];
      while (remaining.length > 0) {
        const id = remaining[0]!;
        let op: Operation | undefined;
        try {
          op = (await this.call(`read operation ${id} in project ${projectId}`, () => this.api.getProjectOperation(projectId, id))).data.operation;
        } catch (err) {
          if (statusOf(err) !== 404) throw err;
          // Gone (Neon deletes old operations): nothing to wait for; a still-running conflict would answer 423 anyway.
        }
        if (op && FAILED.has(op.status)) {
          throw new PermanentError(
            `Neon operation ${op.action} (${op.id}) on branch ${op.branch_id ?? p.branchId ?? '?'} in project ${projectId} ended ${op.status}: ${this.clean(op.error ?? 'no error given')}`,
          );
        }
        if (op && !SUCCEEDED.has(op.status)) {
          // scheduling, running, cancelling (or a status this client does not know yet): look again later.
          set({ ...p, ops: remaining });
          return this.wait(p, `Neon operation ${op.action} on branch ${op.branch_id ?? p.branchId ?? '?'} is ${op.status}`);
        }
        remaining.shift();
      }
      set({ ...p, ops: [], polls: 0 });
    }

    // 2. The branch, by exact name.
    let branchSeen: Branch | undefined;
    if (p.stage === 'branch' || !p.branchId) {
      branchSeen = await this.findBranch(projectId, name);
      if (!branchSeen) {
        try {
          const { data } = await this.call(`create branch ${name} in project ${projectId}`, () =>
            this.api.createProjectBranch(projectId, {
              branch: { name },
              endpoints: [{ type: EndpointType.ReadWrite }],
              annotation_value: { clawdbot: name },
            }),
          );
          // data.connection_uris (when the parent has one role and database) is not ours: ignored, never kept.
          return this.afterMutation(set({ ...p, branchId: data.branch.id, stage: 'role' }), data.operations, `creating branch ${data.branch.id}`);
        } catch (err) {
          if (statusOf(err) !== 409) throw err;
          // Created concurrently (another attempt of this step): use that one.
          branchSeen = await this.findBranch(projectId, name);
          if (!branchSeen) throw new TransientError(`Neon answered 409 for branch ${name} in project ${projectId}, but it is not listed yet`);
        }
      }
      set({ ...p, branchId: branchSeen.id, stage: 'role' });
    }
    const branchId = p.branchId!;

    try {
      // 3. The role.
      if (p.stage === 'role') {
        const { roles } = (await this.call(`list roles of branch ${branchId}`, () => this.api.listProjectBranchRoles(projectId, branchId))).data;
        if (!roles.some((r) => r.name === name)) {
          try {
            const { data } = await this.call(`create role ${name} on branch ${branchId}`, () =>
              this.api.createProjectBranchRole(projectId, branchId, { role: { name } }),
            );
            // data.role.password is deliberately not kept: the URI is fetched with getConnectionUri when ready.
            return this.afterMutation(set({ ...p, stage: 'database' }), data.operations, `creating role ${name} on branch ${branchId}`);
          } catch (err) {
            if (statusOf(err) !== 409) throw err; // 409: it exists after all
          }
        }
        set({ ...p, stage: 'database' });
      }

      // 4. The database, owned by the role.
      if (p.stage === 'database') {
        const { databases } = (await this.call(`list databases of branch ${branchId}`, () => this.api.listProjectBranchDatabases(projectId, branchId))).data;
        const existing = databases.find((d) => d.name === NEON_DATABASE_NAME);
        if (existing && existing.owner_name !== name) {
          throw new PermanentError(`Neon database ${NEON_DATABASE_NAME} on branch ${branchId} in project ${projectId} is owned by ${existing.owner_name}, not ${name}`);
        }
        if (!existing) {
          try {
            const { data } = await this.call(`create database ${NEON_DATABASE_NAME} on branch ${branchId}`, () =>
              this.api.createProjectBranchDatabase(projectId, branchId, { database: { name: NEON_DATABASE_NAME, owner_name: name } }),
            );
            return this.afterMutation(set({ ...p, stage: 'uri' }), data.operations, `creating database ${NEON_DATABASE_NAME} on branch ${branchId}`);
          } catch (err) {
            if (statusOf(err) !== 409) throw err;
          }
        }
        set({ ...p, stage: 'uri' });
      }

      // 5. Everything exists and no operation of ours runs. A branch found (not made) in this call may still be
      // initialising (an earlier attempt made it and lost track of its operations): wait for it.
      if (branchSeen && branchSeen.current_state === 'init') {
        return this.wait(p, `branch ${branchId} is still initialising`);
      }
      const { uri } = (
        await this.call(`read the connection URI of branch ${branchId}`, () =>
          this.api.getConnectionUri({ projectId, branch_id: branchId, database_name: NEON_DATABASE_NAME, role_name: name }),
        )
      ).data;
      if (typeof uri !== 'string' || uri === '') throw new TransientError(`Neon returned no connection URI for branch ${branchId} in project ${projectId}`);
      return { ready: { branchId: `${projectId}/${branchId}`, databaseName: NEON_DATABASE_NAME, roleName: name, connectionUrl: uri } };
    } catch (err) {
      // The branch we remembered is gone (deleted by hand?): start over from the name, once per call.
      if (statusOf(err) === 404 && !branchSeen && !restarted) {
        state.p = { ...this.fresh(name), projectId, polls: p.polls };
        return this.step(name, state, true);
      }
      throw err;
    }
  }

  /** After a mutation: come back once its operations had time to run. */
  private afterMutation(p: Progress, operations: Operation[] | undefined, what: string): EnsureDatabaseResult {
    const ops = (operations ?? []).filter((op) => !SUCCEEDED.has(op.status)).map((op) => op.id);
    return this.wait({ ...p, ops, polls: 0 }, `${what} (${ops.length} operation${ops.length === 1 ? '' : 's'})`);
  }

  /** A pending answer: ~1 s doubling to 10 s (with a little jitter, so busy projects do not retry in lockstep). */
  private wait(p: Progress, detail: string, atLeastMs?: number): EnsureDatabaseResult {
    const base = Math.min(this.pollInitialMs * 2 ** Math.min(p.polls, 30), this.pollMaxMs);
    const retryInMs = Math.max(Math.round(base * (0.8 + 0.2 * Math.random())), Math.min(atLeastMs ?? 0, 60_000));
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
    if (/BRANCHES_LIMIT_EXCEEDED/.test(code) || (status === 422 && /branch/i.test(neonMessage) && /limit/i.test(neonMessage))) {
      return new PermanentError(
        `Neon project ${/project (\S+)/.exec(what)?.[1] ?? '?'} has reached its branch limit (HTTP ${status}${coded})${said}; free branches there or ` +
          `move customers (capacity-aware placement over NEON_PROJECT_IDS is not implemented yet)`,
      );
    }
    if (status === 404 && what.startsWith('list branches of project')) {
      return new PermanentError(`Neon project ${what.slice('list branches of project '.length)} not found (HTTP 404)${said}; check NEON_PROJECT_IDS`);
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

function checkName(name: string): void {
  if (!NAME_PATTERN.test(name)) throw new PermanentError(`invalid Neon role/branch name ${JSON.stringify(name)}`);
}

/** Progress from job data, or undefined when it is missing or not ours (starting over is always safe). */
function readProgress(raw: DatabaseProgress | undefined): Progress | undefined {
  if (!raw) return undefined;
  const { projectId, branchId, stage, ops, polls } = raw;
  if (typeof projectId !== 'string' || !projectId) return undefined;
  if (typeof stage !== 'string' || !(STAGES as readonly string[]).includes(stage)) return undefined;
  return {
    projectId,
    branchId: typeof branchId === 'string' && branchId ? branchId : null,
    stage: stage as Stage,
    ops: Array.isArray(ops) ? ops.filter((id): id is string => typeof id === 'string') : [],
    polls: typeof polls === 'number' && Number.isFinite(polls) && polls >= 0 ? polls : 0,
  };
}

function writeProgress(p: Progress): DatabaseProgress {
  return { projectId: p.projectId, ...(p.branchId ? { branchId: p.branchId } : {}), stage: p.stage, ops: p.ops, polls: p.polls };
}
