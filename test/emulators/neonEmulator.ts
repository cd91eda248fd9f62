// A Neon management API (v2) emulator speaking the real wire protocol, so the official
// `@neondatabase/api-client` can be pointed at it with `createApiClient({ apiKey, baseURL: emulator.url })` and
// exercised for real. Paths, bodies and status codes follow the OpenAPI spec that client ships
// (node_modules/@neondatabase/api-client/public-v2-for-users.gen.yaml) for the calls a provisioner makes (branches,
// endpoints, roles, databases, connection URIs, operations).
//
// Backed by REAL objects on the local PostgreSQL (default postgres://postgres@127.0.0.1:5432/postgres, trust auth):
// - every (branch, database) pair is a real database, every (branch, role) pair a real LOGIN role. Neon scopes role
//   and database names to a branch, Postgres scopes them to the cluster, so the real names are namespaced and
//   deterministic: `<prefix>_<project id>_<branch id>_<name>` with `-` turned into `_` (e.g.
//   `neon_shiny_wind_028834_br_aged_salad_637688_app`). A name that needs sanitizing, or a result longer than 63
//   bytes, is cut to 54 characters and gets `_<8 hex of sha1>` appended. `realDatabaseName()` / `realRoleName()`
//   compute them.
// - roles get a SCRAM-SHA-256 verifier of the generated password (so the password would also work under scram
//   auth; trust auth ignores it). Databases are created `TEMPLATE template0 OWNER <owner role>`, CONNECT and TEMPORARY
//   are revoked from PUBLIC and granted to the roles of the same branch only, so another branch's role cannot connect.
// - connection URIs (`getConnectionUri` and a create-branch response's `connection_uris`) are
//   `postgresql://<real role>:<password>@127.0.0.1:5432/<real database>` and open with `pg` as they are. So
//   `current_user` / `current_database()` are the REAL names, not the Neon names; treat the URI as opaque, as with
//   real Neon. Real Neon URIs point at `ep-<name>-<id>.<region>.aws.neon.tech` (`-pooler` added when pooled=true) and
//   carry `?sslmode=require` (sometimes `&channel_binding=require`); here `pooled` changes nothing and there is no
//   sslmode (the local server has no TLS). `endpoint.host` looks like a real Neon host but does not resolve: use URIs.
// - deleting a branch (or a role or database) drops the real objects straight away, before the response; `close()`
//   drops every database and role this instance created.
// - a project's default branch `main` has no roles or databases unless `createProject({ defaultDatabase })` asks for
//   them (like Neon's `neondb_owner`/`neondb`); a new branch inherits its parent's roles (same passwords, as Neon) and
//   databases, but inherited databases are created EMPTY (no data is copied; real Neon copies the data).
//
// Operations: every mutation returns operations (create branch: `create_branch` + `start_compute` when an endpoint is
// asked for; create endpoint: `start_compute`; roles and databases: `apply_config` when the branch has an endpoint,
// none without one; delete branch: `suspend_compute` + `delete_timeline`). The first is `running`, the others
// `scheduling` until half of `operationMs`; all end `finished` after `operationMs` (default 150 ms; timers unref'd).
// While any operation of a project is not terminal, every further mutating request on that project (creating or
// deleting a branch, endpoint, role or database) answers 423 with Neon's message, as Neon runs one operation at a time
// per project. GETs never answer 423. Requests are validated (400/404/409) before the 423 check. The real SQL runs
// before the response, so objects exist (and accept connections) as soon as the 201 arrives; real Neon only accepts
// connections once `start_compute` has finished, so clients must wait for operations anyway.
//
// Branch limit: a project holds at most `maxBranchesPerProject` live branches, its default branch included (or its
// own `createProject({ maxBranches })`); one more answers 422 `BRANCHES_LIMIT_EXCEEDED` (a guess: the spec does not
// document the cap), after the name check (a duplicate name is a 409 even in a full project).
//
// Fault injection is consumed in request-arrival order: failNext (answered instead of handled), slowNext (handled,
// then the answer is held back: the mutation HAS happened when a client times out, as in real life),
// failNextOperation (the operations of the next mutation end failed/error/cancelled), ratePerMinute (429 with
// Retry-After); holdOperations keeps every operation unfinished until releaseOperations, so a test gets its 423
// however slow the machine. Statuses / codes the spec leaves open are documented at each `fail()` below as guesses.
import { createHash, pbkdf2Sync, createHmac, randomBytes, randomInt, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';

export const NEON_EMULATOR_API_KEY = 'neon-emulator-key';
export const NEON_LOCKED_MESSAGE = 'project already has running conflicting operations, scheduling of new ones is prohibited';
const DEFAULT_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const REGION = 'aws-us-east-2';
const REGION_HOST = 'us-east-2.aws.neon.tech';

export type OperationStatus = 'scheduling' | 'running' | 'finished' | 'failed' | 'error' | 'cancelling' | 'cancelled' | 'skipped';
export type OperationAction = 'create_branch' | 'start_compute' | 'suspend_compute' | 'apply_config' | 'delete_timeline';
const TERMINAL: ReadonlySet<OperationStatus> = new Set(['finished', 'failed', 'error', 'cancelled', 'skipped']);

export interface NeonOperation {
  id: string;
  project_id: string;
  branch_id?: string;
  endpoint_id?: string;
  action: OperationAction;
  status: OperationStatus;
  error?: string;
  failures_count: number;
  created_at: string;
  updated_at: string;
  total_duration_ms: number;
}

export interface NeonBranch {
  id: string;
  project_id: string;
  parent_id?: string;
  parent_lsn?: string;
  parent_timestamp?: string;
  name: string;
  current_state: 'init' | 'ready';
  pending_state?: 'ready';
  state_changed_at: string;
  logical_size: number;
  creation_source: string;
  primary: boolean;
  default: boolean;
  protected: boolean;
  cpu_used_sec: number;
  compute_time_seconds: number;
  active_time_seconds: number;
  written_data_bytes: number;
  data_transfer_bytes: number;
  created_at: string;
  updated_at: string;
  init_source: string;
}

export interface NeonEndpoint {
  host: string;
  id: string;
  project_id: string;
  branch_id: string;
  autoscaling_limit_min_cu: number;
  autoscaling_limit_max_cu: number;
  region_id: string;
  type: 'read_write' | 'read_only';
  current_state: 'init' | 'active' | 'idle';
  pending_state?: 'active';
  settings: Record<string, unknown>;
  pooler_enabled: boolean;
  pooler_mode: 'transaction';
  disabled: boolean;
  passwordless_access: boolean;
  creation_source: string;
  created_at: string;
  updated_at: string;
  started_at?: string;
  proxy_host: string;
  suspend_timeout_seconds: number;
  provisioner: string;
}

export interface NeonRole { branch_id: string; name: string; protected: boolean; created_at: string; updated_at: string }
export interface NeonDatabase { id: number; branch_id: string; name: string; owner_name: string; created_at: string; updated_at: string }

/** What `branches(projectId)` returns: copies of the emulator's state, with the real local names. */
export interface NeonBranchSnapshot {
  branch: NeonBranch;
  endpoints: NeonEndpoint[];
  roles: (NeonRole & { password: string; realName: string })[];
  databases: (NeonDatabase & { realName: string })[];
  annotation: Record<string, string>;
}

export interface NeonEmulatorCall {
  method: string;
  /** Full request path without the query string, e.g. `/api/v2/projects/p/branches`. */
  path: string;
  /** The spec's path template relative to `/api/v2`, e.g. `/projects/{project_id}/branches` (raw path if unrouted). */
  template: string;
  query: string;
  /** HTTP status answered; `null` while in flight. */
  status: number | null;
  requestId: string;
  /** True when the answer came from failNext or the rate limit. */
  injected: boolean;
  receivedAt: number;
}

export interface NeonEmulatorOptions {
  /** Bearer token the emulator accepts. Default `neon-emulator-key`. */
  apiKey?: string;
  /** How long every operation takes, in ms. Default 150. */
  operationMs?: number;
  /** Answer 429 once more than this many requests arrived within `rateWindowMs`. Default: no limit (real Neon: 700/min). */
  ratePerMinute?: number;
  /** The rate limit's window in ms (default 60 000; shorten it in tests). */
  rateWindowMs?: number;
  /** Prefix of real database and role names, `[a-z][a-z0-9_]*`. Default `neon`. */
  prefix?: string;
  /** Admin (superuser) connection string for the local Postgres. Default postgres://postgres@127.0.0.1:5432/postgres. */
  pgAdminUrl?: string;
  /** Branch cap per project (live branches, default branch included). Default 5000, as Neon's paid plans; a project can set its own. */
  maxBranchesPerProject?: number;
  /** When false, reveal_password answers 412 like a project without `store_passwords`. Default true. */
  storePasswords?: boolean;
  /**
   * A database of the local Postgres that every branch's connection URI opens (as the admin user), instead of a real
   * database and role per branch: a stand-in that answers at once, for benchmarks of a thousand sign-ups, where
   * creating a thousand real databases would measure the Postgres server. Isolation is not emulated. Default unset.
   */
  sharedDatabase?: string;
}

export interface CreateProjectOptions {
  /** Project id (`^[a-z0-9-]{1,60}$`); generated like `shiny-wind-028834` when omitted. */
  projectId?: string;
  name?: string;
  /** Give the default branch a real role + database that new branches inherit, like Neon's neondb_owner/neondb. */
  defaultDatabase?: boolean | { role: string; database: string };
  /** This project's branch cap (default: the emulator's maxBranchesPerProject). */
  maxBranches?: number;
  /** Branches it already has besides the default one (`existing-1`, ...: ready, no endpoint), as if made earlier. */
  existingBranches?: number;
}

export interface FailOptions {
  /** Only requests this returns true for consume the fault (default: every request). */
  match?: (request: { method: string; path: string; template: string }) => boolean;
  message?: string;
  code?: string;
}

export interface NeonEmulator {
  /** The client's baseURL, e.g. `http://127.0.0.1:PORT/api/v2`. */
  url: string;
  port: number;
  apiKey: string;
  calls: NeonEmulatorCall[];
  /** Number of calls by `METHOD /template`, e.g. `{ 'POST /projects/{project_id}/branches': 2 }`. */
  counts(): Record<string, number>;
  createProject(options?: CreateProjectOptions): Promise<{ projectId: string; defaultBranchId: string }>;
  /** Live (not deleted) branches of a project, oldest first. */
  branches(projectId: string): NeonBranchSnapshot[];
  operations(projectId: string): NeonOperation[];
  /** Resolves when no operation of the project (or of any project) is still running. */
  idle(projectId?: string): Promise<void>;
  realDatabaseName(projectId: string, branchId: string, database: string): string;
  realRoleName(projectId: string, branchId: string, role: string): string;
  /** Every real database / role this instance created and has not dropped. */
  realObjects(): { databases: string[]; roles: string[] };
  /** The next `n` requests (that `match`) are answered with `status` and a GeneralError body instead of being handled. 429 gets `Retry-After: 1` unless headers say otherwise. */
  failNext(n: number, status: number, headers?: Record<string, string>, options?: FailOptions): void;
  /** The next `n` requests are handled, then their answer is held back `ms`. */
  slowNext(n: number, ms: number): void;
  /** The operations of the next mutation end with this status (with an `error` text) instead of `finished`. */
  failNextOperation(status: 'failed' | 'error' | 'cancelled', error?: string): void;
  /** Operations stay unfinished (so mutations answer 423) until `releaseOperations()`, however slow the test is. */
  holdOperations(): void;
  /** Ends the operations that came due while held, and lets later ones end on time again. */
  releaseOperations(): void;
  /** Changes the rate limit (`undefined` = none). */
  setRateLimit(perWindow: number | undefined, windowMs?: number): void;
  /** Stops the server, clears timers, drops every database and role it created. */
  close(): Promise<void>;
}

interface RoleState { role: NeonRole; password: string; verifier: string; realName: string }
interface DatabaseState { database: NeonDatabase; realName: string }
interface BranchState {
  branch: NeonBranch;
  createdMs: number;
  updatedMs: number;
  seq: number;
  endpoints: NeonEndpoint[];
  roles: Map<string, RoleState>;
  databases: Map<string, DatabaseState>;
  annotation: Record<string, string>;
  annotationAt: string;
}
interface ProjectState {
  id: string;
  name: string;
  defaultBranchId: string;
  branches: Map<string, BranchState>;
  deletedBranchIds: Set<string>;
  operations: NeonOperation[];
  lock: Promise<unknown>;
  maxBranches: number;
}

interface Reply { status: number; body?: unknown; headers?: OutgoingHttpHeaders }

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly code = '', readonly headers: OutgoingHttpHeaders = {}) {
    super(message);
  }
}
const fail = (status: number, message: string, code = ''): never => {
  throw new HttpError(status, message, code);
};

const ADJECTIVES = ['aged', 'shiny', 'small', 'sweet', 'raspy', 'icy', 'noisy', 'soft', 'little', 'cool', 'bold', 'calm', 'dry', 'late', 'wild', 'young'];
const NOUNS = ['salad', 'wind', 'term', 'breeze', 'hill', 'dream', 'sunset', 'violet', 'smoke', 'pine', 'darkness', 'river', 'field', 'snow', 'moon', 'leaf'];
const pick = (list: readonly string[]): string => list[randomInt(list.length)]!;
const neonId = (prefix: string): string =>
  `${prefix}${pick(ADJECTIVES)}-${pick(NOUNS)}-${String(randomInt(1_000_000)).padStart(6, '0')}`;
/** Neon prints timestamps with second precision: `2022-11-30T20:09:48Z`. */
const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const ID_PATTERN = /^[a-z0-9-]{1,60}$/;
const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`;
const quoteLiteral = (value: string): string => `'${value.replace(/'/g, "''")}'`;

/** Neon-style generated password (`npg_` + 12 alphanumerics). */
function generatePassword(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let out = 'npg_';
  for (let i = 0; i < 12; i++) out += alphabet[randomInt(alphabet.length)];
  return out;
}

/** A SCRAM-SHA-256 verifier as Postgres stores it, so the plain password never reaches the server. */
function scramVerifier(password: string): string {
  const salt = randomBytes(16);
  const iterations = 4096;
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

type Handler = (ctx: RequestContext) => Promise<Reply> | Reply;
interface RequestContext {
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
}
interface Route { method: string; template: string; regex: RegExp; names: string[]; handler: Handler; mutating: boolean }

export async function startNeonEmulator(opts: NeonEmulatorOptions = {}): Promise<NeonEmulator> {
  const apiKey = opts.apiKey ?? NEON_EMULATOR_API_KEY;
  const operationMs = opts.operationMs ?? 150;
  const prefix = opts.prefix ?? 'neon';
  if (!/^[a-z][a-z0-9_]*$/.test(prefix) || prefix.length > 20) throw new Error(`neonEmulator: bad prefix ${prefix}`);
  const adminUrl = opts.pgAdminUrl ?? DEFAULT_ADMIN_URL;
  const admin = new URL(adminUrl);
  const pgHost = admin.hostname || '127.0.0.1';
  const pgPort = admin.port || '5432';
  const maxBranches = opts.maxBranchesPerProject ?? 5000;
  const storePasswords = opts.storePasswords ?? true;
  let ratePerWindow = opts.ratePerMinute;
  let rateWindowMs = opts.rateWindowMs ?? 60_000;
  const accepted: number[] = [];

  let pool: pg.Pool | undefined;
  const sql = async (text: string): Promise<void> => {
    if (!pool) {
      pool = new pg.Pool({ connectionString: adminUrl, max: 4 });
      pool.on('error', () => {});
    }
    await pool.query(text);
  };
  const realDatabases = new Set<string>();
  const realRoles = new Set<string>();

  const projects = new Map<string, ProjectState>();
  const calls: NeonEmulatorCall[] = [];
  const failQueue: { status: number; headers: Record<string, string>; options: FailOptions }[] = [];
  const slowQueue: number[] = [];
  const operationFailQueue: { status: 'failed' | 'error' | 'cancelled'; error: string }[] = [];
  /** While operations are held: the endings that came due, in order. */
  let heldEndings: (() => void)[] | null = null;
  const timers = new Set<NodeJS.Timeout>();
  const idleWaiters: { projectId?: string; resolve: () => void }[] = [];
  let seq = 0;
  let databaseIds = 3_000_000 + randomInt(1_000_000);
  let lsn = 0x1de2850;
  let closed = false;

  const realName = (projectId: string, branchId: string, name: string): string => {
    const base = `${prefix}_${projectId}_${branchId}`.replace(/-/g, '_');
    const safe = name.replace(/[^a-z0-9_]/g, '_');
    let full = `${base}_${safe}`;
    if (safe !== name || Buffer.byteLength(full) > 63) {
      const hash = createHash('sha1').update(`${projectId}\0${branchId}\0${name}`).digest('hex').slice(0, 8);
      full = `${full.slice(0, 54)}_${hash}`;
    }
    return full;
  };

  // ---------- operations ----------
  const running = (project: ProjectState): boolean => project.operations.some((op) => !TERMINAL.has(op.status));
  const notifyIdle = (): void => {
    for (const waiter of [...idleWaiters]) {
      const done = waiter.projectId
        ? !running(projects.get(waiter.projectId)!)
        : [...projects.values()].every((p) => !running(p));
      if (done) {
        idleWaiters.splice(idleWaiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  };
  const later = (ms: number, fn: () => void): void => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timer.unref();
    timers.add(timer);
  };

  /** Starts operations for one mutation; `onDone(ok)` runs when they end. */
  const startOperations = (
    project: ProjectState,
    specs: { action: OperationAction; branch_id?: string; endpoint_id?: string }[],
    onDone?: (ok: boolean) => void,
  ): NeonOperation[] => {
    if (specs.length === 0) return [];
    const start = Date.now();
    const outcome = operationFailQueue.shift();
    const ops = specs.map((spec, index): NeonOperation => ({
      id: randomUUID(),
      project_id: project.id,
      ...(spec.branch_id ? { branch_id: spec.branch_id } : {}),
      ...(spec.endpoint_id ? { endpoint_id: spec.endpoint_id } : {}),
      action: spec.action,
      status: index === 0 ? 'running' : 'scheduling',
      failures_count: 0,
      created_at: iso(start),
      updated_at: iso(start),
      total_duration_ms: 0,
    }));
    project.operations.push(...ops);
    if (ops.length > 1) {
      later(operationMs / 2, () => {
        for (const op of ops) if (op.status === 'scheduling') Object.assign(op, { status: 'running', updated_at: iso(Date.now()) });
      });
    }
    const end = () => {
      const now = Date.now();
      for (const op of ops) {
        op.status = outcome ? outcome.status : 'finished';
        op.updated_at = iso(now);
        op.total_duration_ms = now - start;
        if (outcome) {
          op.error = outcome.error;
          if (outcome.status !== 'cancelled') op.failures_count = 1;
        }
      }
      onDone?.(!outcome);
      notifyIdle();
    };
    later(operationMs, () => (heldEndings ? heldEndings.push(end) : end()));
    return ops;
  };

  // ---------- state helpers ----------
  const getProject = (projectId: string): ProjectState => projects.get(projectId) ?? fail(404, 'project not found');
  const getBranch = (project: ProjectState, branchId: string): BranchState =>
    project.branches.get(branchId) ?? fail(404, 'branch not found');
  const readWrite = (branch: BranchState): NeonEndpoint | undefined => branch.endpoints.find((e) => e.type === 'read_write');
  const touch = (branch: BranchState): void => {
    branch.updatedMs = Date.now();
    branch.branch.updated_at = iso(branch.updatedMs);
  };
  const shared = opts.sharedDatabase;
  const uriFor = (role: RoleState, database: DatabaseState): string =>
    shared ? `postgresql://${admin.username || 'postgres'}@${pgHost}:${pgPort}/${encodeURIComponent(shared)}` : `postgresql://${encodeURIComponent(role.realName)}:${encodeURIComponent(role.password)}@${pgHost}:${pgPort}/${encodeURIComponent(database.realName)}`;

  const createRealRole = async (realRole: string, verifier: string, grantOn: string[]): Promise<void> => {
    if (shared) return;
    await sql(`CREATE ROLE ${quoteIdent(realRole)} LOGIN PASSWORD ${quoteLiteral(verifier)}`);
    realRoles.add(realRole);
    for (const db of grantOn) await sql(`GRANT CONNECT, TEMPORARY ON DATABASE ${quoteIdent(db)} TO ${quoteIdent(realRole)}`);
  };
  const createRealDatabase = async (realDb: string, owner: string, branchRoles: string[]): Promise<void> => {
    if (shared) return;
    await sql(`CREATE DATABASE ${quoteIdent(realDb)} OWNER ${quoteIdent(owner)} TEMPLATE template0 ENCODING 'UTF8'`);
    realDatabases.add(realDb);
    await sql(`REVOKE CONNECT, TEMPORARY ON DATABASE ${quoteIdent(realDb)} FROM PUBLIC`);
    for (const role of branchRoles) await sql(`GRANT CONNECT, TEMPORARY ON DATABASE ${quoteIdent(realDb)} TO ${quoteIdent(role)}`);
  };
  const dropRealDatabase = async (realDb: string): Promise<void> => {
    if (shared) return;
    await sql(`DROP DATABASE IF EXISTS ${quoteIdent(realDb)} WITH (FORCE)`);
    realDatabases.delete(realDb);
  };
  const dropRealRole = async (realRole: string): Promise<void> => {
    if (shared) return;
    await sql(`DROP ROLE IF EXISTS ${quoteIdent(realRole)}`);
    realRoles.delete(realRole);
  };

  const addRole = async (project: ProjectState, branch: BranchState, name: string, password: string): Promise<RoleState> => {
    const now = Date.now();
    const state: RoleState = {
      role: { branch_id: branch.branch.id, name, protected: false, created_at: iso(now), updated_at: iso(now) },
      password,
      verifier: scramVerifier(password),
      realName: realName(project.id, branch.branch.id, name),
    };
    await createRealRole(state.realName, state.verifier, [...branch.databases.values()].map((d) => d.realName));
    branch.roles.set(name, state);
    return state;
  };
  const addDatabase = async (project: ProjectState, branch: BranchState, name: string, ownerName: string): Promise<DatabaseState> => {
    const owner = branch.roles.get(ownerName)!;
    const now = Date.now();
    const state: DatabaseState = {
      database: { id: databaseIds++, branch_id: branch.branch.id, name, owner_name: ownerName, created_at: iso(now), updated_at: iso(now) },
      realName: realName(project.id, branch.branch.id, name),
    };
    await createRealDatabase(state.realName, owner.realName, [...branch.roles.values()].map((r) => r.realName));
    branch.databases.set(name, state);
    return state;
  };

  const newBranchState = (project: ProjectState, name: string | undefined, parent: BranchState | undefined, isDefault: boolean): BranchState => {
    let id = neonId('br-');
    while (project.branches.has(id) || project.deletedBranchIds.has(id)) id = neonId('br-');
    const now = Date.now();
    lsn += 0x1000 + randomInt(0x10000);
    return {
      branch: {
        id,
        project_id: project.id,
        ...(parent ? { parent_id: parent.branch.id, parent_lsn: `0/${lsn.toString(16).toUpperCase()}`, parent_timestamp: iso(now) } : {}),
        name: name ?? id,
        current_state: isDefault ? 'ready' : 'init',
        ...(isDefault ? {} : { pending_state: 'ready' as const }),
        state_changed_at: iso(now),
        logical_size: 0,
        creation_source: 'console',
        primary: isDefault,
        default: isDefault,
        protected: false,
        cpu_used_sec: 0,
        compute_time_seconds: 0,
        active_time_seconds: 0,
        written_data_bytes: 0,
        data_transfer_bytes: 0,
        created_at: iso(now),
        updated_at: iso(now),
        init_source: 'parent-data',
      },
      createdMs: now,
      updatedMs: now,
      seq: seq++,
      endpoints: [],
      roles: new Map(),
      databases: new Map(),
      annotation: {},
      annotationAt: iso(now),
    };
  };
  const newEndpoint = (project: ProjectState, branch: BranchState, request: Record<string, unknown>, active: boolean): NeonEndpoint => {
    const id = neonId('ep-');
    const now = iso(Date.now());
    const min = typeof request.autoscaling_limit_min_cu === 'number' ? request.autoscaling_limit_min_cu : 0.25;
    const max = typeof request.autoscaling_limit_max_cu === 'number' ? request.autoscaling_limit_max_cu : Math.max(min, 2);
    return {
      host: `${id}.${REGION_HOST}`,
      id,
      project_id: project.id,
      branch_id: branch.branch.id,
      autoscaling_limit_min_cu: min,
      autoscaling_limit_max_cu: max,
      region_id: REGION,
      type: request.type as 'read_write' | 'read_only',
      current_state: active ? 'active' : 'init',
      ...(active ? { started_at: now } : { pending_state: 'active' as const }),
      settings: (request.settings as Record<string, unknown> | undefined) ?? {},
      pooler_enabled: false,
      pooler_mode: 'transaction',
      disabled: false,
      passwordless_access: true,
      creation_source: 'console',
      created_at: now,
      updated_at: now,
      proxy_host: REGION_HOST,
      suspend_timeout_seconds: typeof request.suspend_timeout_seconds === 'number' ? request.suspend_timeout_seconds : 0,
      provisioner: typeof request.provisioner === 'string' ? request.provisioner : 'k8s-neonvm',
    };
  };

  const withLock = async <T>(project: ProjectState, fn: () => Promise<T>): Promise<T> => {
    const result = project.lock.then(fn);
    project.lock = result.catch(() => undefined);
    return result;
  };
  /** Inside the project lock: a mutation that would schedule operations while others run answers 423. */
  const assertUnlocked = (project: ProjectState): void => {
    if (running(project)) fail(423, NEON_LOCKED_MESSAGE);
  };

  const roleJson = (state: RoleState): NeonRole => ({ ...state.role });
  const databaseJson = (state: DatabaseState): NeonDatabase => ({ ...state.database });
  const annotationJson = (branch: BranchState) => ({
    object: { type: 'console/branch', id: branch.branch.id },
    value: { ...branch.annotation },
    created_at: branch.annotationAt,
    updated_at: branch.annotationAt,
  });
  const objectBody = (ctx: RequestContext, key: string): Record<string, unknown> => {
    const body = (ctx.body ?? {}) as Record<string, unknown>;
    const inner = body[key];
    if (typeof inner !== 'object' || inner === null || Array.isArray(inner)) fail(400, `request body must contain a "${key}" object`);
    return inner as Record<string, unknown>;
  };

  // ---------- handlers ----------
  const createBranch: Handler = async (ctx) => {
    const project = getProject(ctx.params.project_id!);
    if (ctx.body !== undefined && (typeof ctx.body !== 'object' || ctx.body === null || Array.isArray(ctx.body))) fail(400, 'request body must be an object');
    const body = (ctx.body ?? {}) as Record<string, unknown>;
    const request = (body.branch ?? {}) as Record<string, unknown>;
    const endpoints = (body.endpoints ?? []) as unknown;
    if (!Array.isArray(endpoints)) fail(400, 'endpoints must be an array');
    const endpointRequests = endpoints as Record<string, unknown>[];
    for (const endpoint of endpointRequests) {
      if (endpoint?.type !== 'read_write' && endpoint?.type !== 'read_only') fail(400, 'endpoint type must be read_write or read_only');
    }
    if (endpointRequests.filter((e) => e.type === 'read_write').length > 1) fail(409, 'read-write endpoint already exists');
    const name = request.name;
    if (name !== undefined && (typeof name !== 'string' || name.length < 1 || name.length > 256)) fail(400, 'branch name must be 1 to 256 characters');
    const annotation = (body.annotation_value ?? {}) as Record<string, unknown>;
    if (typeof annotation !== 'object' || Array.isArray(annotation) || Object.keys(annotation).length > 50) fail(400, 'annotation_value must be an object with at most 50 keys');

    return withLock(project, async () => {
      const parentId = typeof request.parent_id === 'string' ? request.parent_id : project.defaultBranchId;
      const parent = project.branches.get(parentId) ?? fail(404, 'parent branch not found');
      if (typeof name === 'string' && [...project.branches.values()].some((b) => b.branch.name === name)) fail(409, 'branch already exists');
      // Guess: the spec does not document the branch cap; CI code reports 422 with this code.
      if (project.branches.size >= project.maxBranches) fail(422, `number of branches exceeds the limit of ${project.maxBranches}`, 'BRANCHES_LIMIT_EXCEEDED');
      assertUnlocked(project);

      const state = newBranchState(project, name as string | undefined, parent, false);
      state.annotation = Object.fromEntries(Object.entries(annotation).map(([k, v]) => [k, String(v)]));
      // Inherit the parent's roles (same passwords, as Neon) and databases (empty here: no data is copied).
      try {
        for (const role of parent.roles.values()) await addRole(project, state, role.role.name, role.password);
        for (const db of parent.databases.values()) await addDatabase(project, state, db.database.name, db.database.owner_name);
      } catch (error) {
        for (const db of state.databases.values()) await dropRealDatabase(db.realName).catch(() => {});
        for (const role of state.roles.values()) await dropRealRole(role.realName).catch(() => {});
        throw error;
      }
      state.endpoints = endpointRequests.map((e) => newEndpoint(project, state, e, false));
      project.branches.set(state.branch.id, state);

      const endpoint = readWrite(state) ?? state.endpoints[0];
      const ops = startOperations(
        project,
        [{ action: 'create_branch', branch_id: state.branch.id }, ...state.endpoints.map((e) => ({ action: 'start_compute' as const, branch_id: state.branch.id, endpoint_id: e.id }))],
        (ok) => {
          if (!ok) return;
          const now = Date.now();
          Object.assign(state.branch, { current_state: 'ready', state_changed_at: iso(now) });
          delete state.branch.pending_state;
          touch(state);
          for (const e of state.endpoints) {
            Object.assign(e, { current_state: 'active', started_at: iso(now), updated_at: iso(now) });
            delete e.pending_state;
          }
        },
      );
      const [onlyRole] = state.roles.values();
      const [onlyDatabase] = state.databases.values();
      const connectionUris =
        endpoint && state.roles.size === 1 && state.databases.size === 1 && onlyRole && onlyDatabase
          ? [{
              connection_uri: uriFor(onlyRole, onlyDatabase),
              connection_parameters: { database: onlyDatabase.realName, password: onlyRole.password, role: onlyRole.realName, host: pgHost, pooler_host: pgHost },
            }]
          : undefined;
      return {
        status: 201,
        body: {
          branch: state.branch,
          endpoints: state.endpoints,
          operations: ops,
          roles: [...state.roles.values()].map(roleJson),
          databases: [...state.databases.values()].map(databaseJson),
          ...(connectionUris ? { connection_uris: connectionUris } : {}),
        },
      };
    });
  };

  const SORT_FIELDS = ['name', 'created_at', 'updated_at'] as const;
  type SortField = (typeof SORT_FIELDS)[number];
  const sortValue = (b: BranchState, field: SortField): string | number =>
    field === 'name' ? b.branch.name : field === 'created_at' ? b.createdMs : b.updatedMs;
  const compareKeys = (a: [string | number, number], b: [string | number, number]): number =>
    a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1];

  const listBranches: Handler = (ctx) => {
    const project = getProject(ctx.params.project_id!);
    const search = ctx.query.get('search')?.toLowerCase() ?? '';
    const sortBy = (ctx.query.get('sort_by') ?? 'updated_at') as SortField;
    if (!SORT_FIELDS.includes(sortBy)) fail(400, 'sort_by must be one of name, created_at, updated_at');
    const sortOrder = ctx.query.get('sort_order') ?? 'desc';
    if (sortOrder !== 'asc' && sortOrder !== 'desc') fail(400, 'sort_order must be asc or desc');
    const limitText = ctx.query.get('limit');
    const limit = limitText === null ? Infinity : Number(limitText);
    if (limitText !== null && (!Number.isInteger(limit) || limit < 1 || limit > 10000)) fail(400, 'limit must be an integer from 1 to 10000');
    const direction = sortOrder === 'asc' ? 1 : -1;

    let items = [...project.branches.values()]
      .filter((b) => !search || b.branch.name.toLowerCase().includes(search) || b.branch.id.includes(search))
      .map((b) => ({ b, key: [sortValue(b, sortBy), b.seq] as [string | number, number] }))
      .sort((x, y) => direction * compareKeys(x.key, y.key));
    const cursor = ctx.query.get('cursor');
    if (cursor) {
      let after: [string | number, number];
      try {
        const decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { k: [string | number, number]; s: string };
        if (decoded.s !== sortBy || !Array.isArray(decoded.k)) throw new Error('mismatch');
        after = decoded.k;
      } catch {
        return fail(400, 'invalid cursor');
      }
      items = items.filter((item) => direction * compareKeys(item.key, after) > 0);
    }
    const page = items.slice(0, limit);
    const last = page[page.length - 1];
    const more = items.length > page.length && last;
    return {
      status: 200,
      body: {
        branches: page.map((item) => item.b.branch),
        annotations: Object.fromEntries(page.filter((i) => Object.keys(i.b.annotation).length > 0).map((i) => [i.b.branch.id, annotationJson(i.b)])),
        pagination: {
          ...(more ? { next: Buffer.from(JSON.stringify({ k: last.key, s: sortBy })).toString('base64url') } : {}),
          sort_by: sortBy,
          sort_order: sortOrder,
        },
      },
    };
  };

  const countBranches: Handler = (ctx) => {
    const project = getProject(ctx.params.project_id!);
    const search = ctx.query.get('search')?.toLowerCase() ?? '';
    const count = [...project.branches.values()].filter((b) => !search || b.branch.name.toLowerCase().includes(search) || b.branch.id.includes(search)).length;
    return { status: 200, body: { count } };
  };

  const getBranchHandler: Handler = (ctx) => {
    const branch = getBranch(getProject(ctx.params.project_id!), ctx.params.branch_id!);
    return { status: 200, body: { branch: branch.branch, annotation: annotationJson(branch) } };
  };

  const deleteBranch: Handler = async (ctx) => {
    const project = getProject(ctx.params.project_id!);
    if (!project.branches.has(ctx.params.branch_id!)) return { status: 204 };
    return withLock(project, async () => {
      const branch = project.branches.get(ctx.params.branch_id!);
      if (!branch) return { status: 204 };
      // Guesses: the spec forbids these deletions without naming a status; 400 with a GeneralError.
      if (branch.branch.id === project.defaultBranchId) fail(400, 'cannot delete the project default branch');
      if ([...project.branches.values()].some((b) => b.branch.parent_id === branch.branch.id)) fail(400, 'cannot delete a branch that has child branches');
      if (branch.branch.protected) fail(400, 'cannot delete a protected branch');
      assertUnlocked(project);
      for (const db of branch.databases.values()) await dropRealDatabase(db.realName);
      for (const role of branch.roles.values()) await dropRealRole(role.realName);
      project.branches.delete(branch.branch.id);
      project.deletedBranchIds.add(branch.branch.id);
      touch(branch);
      const ops = startOperations(project, [
        ...branch.endpoints.map((e) => ({ action: 'suspend_compute' as const, branch_id: branch.branch.id, endpoint_id: e.id })),
        { action: 'delete_timeline', branch_id: branch.branch.id },
      ]);
      return { status: 200, body: { branch: branch.branch, operations: ops } };
    });
  };

  const listEndpoints: Handler = (ctx) => {
    const branch = getBranch(getProject(ctx.params.project_id!), ctx.params.branch_id!);
    return { status: 200, body: { endpoints: branch.endpoints } };
  };
  const createEndpoint: Handler = async (ctx) => {
    const project = getProject(ctx.params.project_id!);
    const request = objectBody(ctx, 'endpoint');
    if (typeof request.branch_id !== 'string' || !ID_PATTERN.test(request.branch_id)) fail(400, 'endpoint branch_id is required');
    if (request.type !== 'read_write' && request.type !== 'read_only') fail(400, 'endpoint type must be read_write or read_only');
    return withLock(project, async () => {
      const branch = getBranch(project, request.branch_id as string);
      // The spec: "If the specified branch already has a read-write compute endpoint, the operation fails."
      if (request.type === 'read_write' && readWrite(branch)) fail(409, 'read-write endpoint already exists');
      assertUnlocked(project);
      const endpoint = newEndpoint(project, branch, request, false);
      branch.endpoints.push(endpoint);
      const operations = startOperations(project, [{ action: 'start_compute', branch_id: branch.branch.id, endpoint_id: endpoint.id }], (ok) => {
        if (!ok) return;
        const now = iso(Date.now());
        Object.assign(endpoint, { current_state: 'active', started_at: now, updated_at: now });
        delete endpoint.pending_state;
      });
      return { status: 201, body: { endpoint, operations } };
    });
  };
  const getEndpoint: Handler = (ctx) => {
    const project = getProject(ctx.params.project_id!);
    for (const branch of project.branches.values()) {
      const endpoint = branch.endpoints.find((e) => e.id === ctx.params.endpoint_id);
      if (endpoint) return { status: 200, body: { endpoint } };
    }
    return fail(404, 'endpoint not found');
  };

  /** Operations of a role/database change: `apply_config` on the branch's endpoints (none without a compute). */
  const configOperations = (project: ProjectState, branch: BranchState): NeonOperation[] =>
    startOperations(project, branch.endpoints.map((e) => ({ action: 'apply_config' as const, branch_id: branch.branch.id, endpoint_id: e.id })), () => touch(branch));

  const createRole: Handler = async (ctx) => {
    const project = getProject(ctx.params.project_id!);
    const request = objectBody(ctx, 'role');
    const name = request.name;
    if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > 63) fail(400, 'role name must be 1 to 63 bytes');
    if (/^(pg_|neon_)/.test(name as string)) fail(400, `role name "${name}" is reserved`);
    return withLock(project, async () => {
      const branch = getBranch(project, ctx.params.branch_id!);
      if (branch.roles.has(name as string)) fail(409, `role "${name}" already exists`);
      if (branch.roles.size >= 500) fail(422, 'number of roles exceeds the limit of 500', 'ROLES_LIMIT_EXCEEDED');
      assertUnlocked(project);
      const state = await addRole(project, branch, name as string, generatePassword());
      if (request.no_login === true) await sql(`ALTER ROLE ${quoteIdent(state.realName)} NOLOGIN`);
      return { status: 201, body: { role: { ...roleJson(state), password: state.password }, operations: configOperations(project, branch) } };
    });
  };
  const listRoles: Handler = (ctx) => {
    const branch = getBranch(getProject(ctx.params.project_id!), ctx.params.branch_id!);
    return { status: 200, body: { roles: [...branch.roles.values()].map(roleJson) } };
  };
  const getRole: Handler = (ctx) => {
    const branch = getBranch(getProject(ctx.params.project_id!), ctx.params.branch_id!);
    const role = branch.roles.get(ctx.params.role_name!) ?? fail(404, 'role not found');
    return { status: 200, body: { role: roleJson(role) } };
  };
  const revealPassword: Handler = (ctx) => {
    const branch = getBranch(getProject(ctx.params.project_id!), ctx.params.branch_id!);
    const role = branch.roles.get(ctx.params.role_name!) ?? fail(404, 'role not found');
    if (!storePasswords) fail(412, 'storing passwords is disabled for this project');
    return { status: 200, body: { password: role.password } };
  };
  const deleteRole: Handler = async (ctx) => {
    const project = getProject(ctx.params.project_id!);
    return withLock(project, async () => {
      const branch = getBranch(project, ctx.params.branch_id!);
      const role = branch.roles.get(ctx.params.role_name!);
      if (!role) return { status: 204 };
      const owned = [...branch.databases.values()].find((d) => d.database.owner_name === role.role.name);
      if (owned) fail(400, `role "${role.role.name}" owns database "${owned.database.name}"`);
      assertUnlocked(project);
      for (const db of branch.databases.values()) await sql(`REVOKE ALL ON DATABASE ${quoteIdent(db.realName)} FROM ${quoteIdent(role.realName)}`);
      await dropRealRole(role.realName);
      branch.roles.delete(role.role.name);
      return { status: 200, body: { role: roleJson(role), operations: configOperations(project, branch) } };
    });
  };

  const createDatabase: Handler = async (ctx) => {
    const project = getProject(ctx.params.project_id!);
    const request = objectBody(ctx, 'database');
    const { name, owner_name: ownerName } = request;
    if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > 63) fail(400, 'database name must be 1 to 63 bytes');
    if (typeof ownerName !== 'string' || ownerName.length === 0) fail(400, 'database owner_name is required');
    return withLock(project, async () => {
      const branch = getBranch(project, ctx.params.branch_id!);
      if (branch.databases.has(name as string)) fail(409, `database "${name}" already exists`);
      if (!branch.roles.has(ownerName as string)) fail(404, `role "${ownerName}" not found`);
      if (branch.databases.size >= 500) fail(422, 'number of databases exceeds the limit of 500', 'DATABASES_LIMIT_EXCEEDED');
      assertUnlocked(project);
      const state = await addDatabase(project, branch, name as string, ownerName as string);
      return { status: 201, body: { database: databaseJson(state), operations: configOperations(project, branch) } };
    });
  };
  const listDatabases: Handler = (ctx) => {
    const branch = getBranch(getProject(ctx.params.project_id!), ctx.params.branch_id!);
    return { status: 200, body: { databases: [...branch.databases.values()].map(databaseJson) } };
  };
  const getDatabase: Handler = (ctx) => {
    const branch = getBranch(getProject(ctx.params.project_id!), ctx.params.branch_id!);
    const db = branch.databases.get(ctx.params.database_name!) ?? fail(404, 'database not found');
    return { status: 200, body: { database: databaseJson(db) } };
  };
  const deleteDatabase: Handler = async (ctx) => {
    const project = getProject(ctx.params.project_id!);
    return withLock(project, async () => {
      const branch = getBranch(project, ctx.params.branch_id!);
      const db = branch.databases.get(ctx.params.database_name!);
      if (!db) return { status: 204 };
      assertUnlocked(project);
      await dropRealDatabase(db.realName);
      branch.databases.delete(db.database.name);
      return { status: 200, body: { database: databaseJson(db), operations: configOperations(project, branch) } };
    });
  };

  const connectionUri: Handler = (ctx) => {
    const project = getProject(ctx.params.project_id!);
    const databaseName = ctx.query.get('database_name');
    const roleName = ctx.query.get('role_name');
    if (!databaseName) fail(400, 'database_name is required');
    if (!roleName) fail(400, 'role_name is required');
    const branchId = ctx.query.get('branch_id') ?? project.defaultBranchId;
    const branch = getBranch(project, branchId);
    const endpointId = ctx.query.get('endpoint_id');
    const endpoint = endpointId ? branch.endpoints.find((e) => e.id === endpointId) : readWrite(branch);
    if (!endpoint) fail(404, endpointId ? 'endpoint not found' : 'read_write endpoint not found for the branch');
    const db = branch.databases.get(databaseName!) ?? fail(404, 'database not found');
    const role = branch.roles.get(roleName!) ?? fail(404, 'role not found');
    // `pooled=true` adds `-pooler` to the real host; locally there is one host, so the URI is the same.
    return { status: 200, body: { uri: uriFor(role, db) } };
  };

  const getOperation: Handler = (ctx) => {
    const project = getProject(ctx.params.project_id!);
    const op = project.operations.find((o) => o.id === ctx.params.operation_id) ?? fail(404, 'operation not found');
    return { status: 200, body: { operation: op } };
  };
  const listOperations: Handler = (ctx) => {
    const project = getProject(ctx.params.project_id!);
    const limitText = ctx.query.get('limit');
    const limit = limitText === null ? 1000 : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) fail(400, 'limit must be an integer from 1 to 1000');
    // Newest first; the cursor is the position of the last operation returned.
    const newestFirst = [...project.operations].reverse();
    const cursor = ctx.query.get('cursor');
    let start = 0;
    if (cursor) {
      const index = newestFirst.findIndex((o) => o.id === cursor);
      if (index < 0) fail(400, 'invalid cursor');
      start = index + 1;
    }
    const page = newestFirst.slice(start, start + limit);
    const last = page[page.length - 1];
    return { status: 200, body: { operations: page, ...(last ? { pagination: { cursor: last.id } } : {}) } };
  };

  // ---------- routing ----------
  const routes: Route[] = [];
  const route = (method: string, template: string, handler: Handler): void => {
    const names: string[] = [];
    const regex = new RegExp(`^${template.replace(/\{(\w+)\}/g, (_m, name: string) => (names.push(name), '([^/]+)'))}$`);
    routes.push({ method, template, regex, names, handler, mutating: method !== 'GET' });
  };
  route('POST', '/projects/{project_id}/branches', createBranch);
  route('GET', '/projects/{project_id}/branches', listBranches);
  route('GET', '/projects/{project_id}/branches/count', countBranches);
  route('GET', '/projects/{project_id}/branches/{branch_id}', getBranchHandler);
  route('DELETE', '/projects/{project_id}/branches/{branch_id}', deleteBranch);
  route('GET', '/projects/{project_id}/branches/{branch_id}/endpoints', listEndpoints);
  route('POST', '/projects/{project_id}/endpoints', createEndpoint);
  route('GET', '/projects/{project_id}/endpoints/{endpoint_id}', getEndpoint);
  route('POST', '/projects/{project_id}/branches/{branch_id}/roles', createRole);
  route('GET', '/projects/{project_id}/branches/{branch_id}/roles', listRoles);
  route('GET', '/projects/{project_id}/branches/{branch_id}/roles/{role_name}', getRole);
  route('DELETE', '/projects/{project_id}/branches/{branch_id}/roles/{role_name}', deleteRole);
  route('GET', '/projects/{project_id}/branches/{branch_id}/roles/{role_name}/reveal_password', revealPassword);
  route('POST', '/projects/{project_id}/branches/{branch_id}/databases', createDatabase);
  route('GET', '/projects/{project_id}/branches/{branch_id}/databases', listDatabases);
  route('GET', '/projects/{project_id}/branches/{branch_id}/databases/{database_name}', getDatabase);
  route('DELETE', '/projects/{project_id}/branches/{branch_id}/databases/{database_name}', deleteDatabase);
  route('GET', '/projects/{project_id}/connection_uri', connectionUri);
  route('GET', '/projects/{project_id}/operations', listOperations);
  route('GET', '/projects/{project_id}/operations/{operation_id}', getOperation);

  const resolve = (method: string, path: string): { route?: Route; params: Record<string, string>; template: string; methodMismatch: boolean } => {
    let methodMismatch = false;
    for (const r of routes) {
      const match = r.regex.exec(path);
      if (!match) continue;
      if (r.method !== method) {
        methodMismatch = true;
        continue;
      }
      const params: Record<string, string> = {};
      r.names.forEach((name, i) => (params[name] = decodeURIComponent(match[i + 1]!)));
      return { route: r, params, template: r.template, methodMismatch: false };
    }
    return { params: {}, template: path, methodMismatch };
  };

  const readBody = (req: IncomingMessage): Promise<string> =>
    new Promise((resolveBody, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => resolveBody(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const method = req.method ?? 'GET';
    const requestIdHeader = req.headers['x-request-id'];
    const requestId = (Array.isArray(requestIdHeader) ? requestIdHeader[0] : requestIdHeader) || randomUUID();
    const apiPath = url.pathname.startsWith('/api/v2/') ? url.pathname.slice('/api/v2'.length) : undefined;
    const resolved = apiPath ? resolve(method, apiPath) : { params: {}, template: url.pathname, methodMismatch: false };
    const call: NeonEmulatorCall = {
      method,
      path: url.pathname,
      template: resolved.template,
      query: url.search,
      status: null,
      requestId,
      injected: false,
      receivedAt: Date.now(),
    };
    calls.push(call);
    const slowMs = slowQueue.length > 0 ? slowQueue.shift()! : 0;
    const rawBody = await readBody(req);

    let reply: Reply;
    try {
      reply = await dispatch(method, call, resolved, url, rawBody, req);
    } catch (error) {
      if (error instanceof HttpError) {
        reply = { status: error.status, body: { code: error.code, message: error.message, request_id: requestId }, headers: error.headers };
      } else {
        const message = error instanceof Error ? error.message : String(error);
        reply = { status: 500, body: { code: '', message: `internal error: ${message}`, request_id: requestId } };
      }
    }
    if (reply.body && typeof reply.body === 'object' && 'message' in reply.body && 'code' in reply.body && !('request_id' in reply.body)) {
      reply.body = { ...(reply.body as object), request_id: requestId };
    }
    const payload = reply.status === 204 || reply.body === undefined ? '' : JSON.stringify(reply.body);
    if (slowMs > 0) await new Promise((r) => setTimeout(r, slowMs));
    call.status = reply.status;
    if (res.destroyed) return;
    res.writeHead(reply.status, {
      ...(payload ? { 'content-type': 'application/json' } : {}),
      'x-neon-ret-request-id': requestId,
      ...reply.headers,
    });
    res.end(payload);
  };

  const dispatch = async (
    method: string,
    call: NeonEmulatorCall,
    resolved: ReturnType<typeof resolve>,
    url: URL,
    rawBody: string,
    req: IncomingMessage,
  ): Promise<Reply> => {
    const faultIndex = failQueue.findIndex((f) => !f.options.match || f.options.match({ method, path: call.path, template: call.template }));
    if (faultIndex >= 0) {
      const [fault] = failQueue.splice(faultIndex, 1);
      call.injected = true;
      const defaults: Record<number, string> = {
        423: NEON_LOCKED_MESSAGE,
        429: 'too many requests',
        500: 'internal server error',
        502: 'bad gateway',
        503: 'service unavailable, please retry',
        504: 'gateway timeout',
      };
      const headers: Record<string, string> = fault!.status === 429 && !Object.keys(fault!.headers).some((h) => h.toLowerCase() === 'retry-after')
        ? { 'Retry-After': '1', ...fault!.headers }
        : fault!.headers;
      return { status: fault!.status, headers, body: { code: fault!.options.code ?? '', message: fault!.options.message ?? defaults[fault!.status] ?? `error ${fault!.status}` } };
    }
    if (req.headers.authorization !== `Bearer ${apiKey}`) return { status: 401, body: { code: '', message: 'authentication required' } };
    if (ratePerWindow !== undefined) {
      const now = Date.now();
      while (accepted.length > 0 && accepted[0]! <= now - rateWindowMs) accepted.shift();
      if (accepted.length >= ratePerWindow) {
        call.injected = true;
        const retryAfter = Math.max(1, Math.ceil((accepted[0]! + rateWindowMs - now) / 1000));
        return { status: 429, headers: { 'Retry-After': String(retryAfter) }, body: { code: '', message: 'rate limit exceeded' } };
      }
      accepted.push(now);
    }
    if (!resolved.route) {
      if (resolved.methodMismatch) return { status: 405, body: { code: '', message: 'method not allowed' } };
      return { status: 404, body: { code: '', message: 'not found' } };
    }
    for (const name of ['project_id', 'branch_id', 'endpoint_id'] as const) {
      const value = resolved.params[name];
      if (value !== undefined && !ID_PATTERN.test(value)) return { status: 400, body: { code: '', message: `invalid ${name}` } };
    }
    let body: unknown;
    if (rawBody.trim() !== '') {
      try {
        body = JSON.parse(rawBody);
      } catch {
        return { status: 400, body: { code: '', message: 'request body is not valid JSON' } };
      }
    }
    return resolved.route.handler({ params: resolved.params, query: url.searchParams, body });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: '', message: String(error) }));
    });
  });
  await new Promise<void>((resolveListen) => server.listen(0, '127.0.0.1', resolveListen));
  const port = (server.address() as AddressInfo).port;

  const emulator: NeonEmulator = {
    url: `http://127.0.0.1:${port}/api/v2`,
    port,
    apiKey,
    calls,
    counts() {
      const out: Record<string, number> = {};
      for (const call of calls) {
        const key = `${call.method} ${call.template}`;
        out[key] = (out[key] ?? 0) + 1;
      }
      return out;
    },
    async createProject(options = {}) {
      const id = options.projectId ?? (() => {
        let candidate = neonId('');
        while (projects.has(candidate)) candidate = neonId('');
        return candidate;
      })();
      if (!ID_PATTERN.test(id)) throw new Error(`neonEmulator: bad project id ${id}`);
      if (projects.has(id)) throw new Error(`neonEmulator: project ${id} exists`);
      const project: ProjectState = {
        id,
        name: options.name ?? id,
        defaultBranchId: '',
        branches: new Map(),
        deletedBranchIds: new Set(),
        operations: [],
        lock: Promise.resolve(),
        maxBranches: options.maxBranches ?? maxBranches,
      };
      const main = newBranchState(project, 'main', undefined, true);
      project.defaultBranchId = main.branch.id;
      main.endpoints = [newEndpoint(project, main, { type: 'read_write' }, true)];
      if (options.defaultDatabase) {
        const names = options.defaultDatabase === true ? { role: 'neondb_owner', database: 'neondb' } : options.defaultDatabase;
        await addRole(project, main, names.role, generatePassword());
        await addDatabase(project, main, names.database, names.role);
      }
      project.branches.set(main.branch.id, main);
      for (let i = 1; i <= (options.existingBranches ?? 0); i++) {
        const branch = newBranchState(project, `existing-${i}`, main, false);
        for (const role of main.roles.values()) await addRole(project, branch, role.role.name, role.password);
        for (const db of main.databases.values()) await addDatabase(project, branch, db.database.name, db.database.owner_name);
        Object.assign(branch.branch, { current_state: 'ready' });
        delete branch.branch.pending_state;
        project.branches.set(branch.branch.id, branch);
      }
      projects.set(id, project);
      return { projectId: id, defaultBranchId: main.branch.id };
    },
    branches(projectId) {
      const project = projects.get(projectId);
      if (!project) return [];
      return [...project.branches.values()]
        .sort((a, b) => a.seq - b.seq)
        .map((b) => structuredClone({
          branch: b.branch,
          endpoints: b.endpoints,
          roles: [...b.roles.values()].map((r) => ({ ...r.role, password: r.password, realName: r.realName })),
          databases: [...b.databases.values()].map((d) => ({ ...d.database, realName: d.realName })),
          annotation: b.annotation,
        }));
    },
    operations(projectId) {
      return structuredClone(projects.get(projectId)?.operations ?? []);
    },
    idle(projectId) {
      return new Promise<void>((resolveIdle) => {
        idleWaiters.push({ projectId, resolve: resolveIdle });
        notifyIdle();
      });
    },
    realDatabaseName: realName,
    realRoleName: realName,
    realObjects() {
      return { databases: [...realDatabases], roles: [...realRoles] };
    },
    failNext(n, status, headers = {}, options = {}) {
      for (let i = 0; i < n; i++) failQueue.push({ status, headers, options });
    },
    slowNext(n, ms) {
      for (let i = 0; i < n; i++) slowQueue.push(ms);
    },
    failNextOperation(status, error) {
      operationFailQueue.push({ status, error: error ?? (status === 'cancelled' ? 'operation was cancelled' : `operation ${status} (injected by the emulator)`) });
    },
    holdOperations() {
      heldEndings ??= [];
    },
    releaseOperations() {
      const due = heldEndings ?? [];
      heldEndings = null;
      for (const end of due) end();
    },
    setRateLimit(perWindow, windowMs) {
      ratePerWindow = perWindow;
      if (windowMs !== undefined) rateWindowMs = windowMs;
      accepted.length = 0;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const waiter of idleWaiters.splice(0)) waiter.resolve();
      await new Promise<void>((resolveClose) => {
        server.close(() => resolveClose());
        server.closeAllConnections();
      });
      // Wait for in-flight mutations so nothing is created after the drop below.
      await Promise.all([...projects.values()].map((p) => p.lock));
      const errors: unknown[] = [];
      for (const db of [...realDatabases]) await dropRealDatabase(db).catch((e: unknown) => errors.push(e));
      for (const role of [...realRoles]) await dropRealRole(role).catch((e: unknown) => errors.push(e));
      await pool?.end();
      if (errors.length > 0) throw new AggregateError(errors, 'neonEmulator: could not drop every database and role it created');
    },
  };
  return emulator;
}
