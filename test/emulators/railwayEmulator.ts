// A Railway public GraphQL API emulator (`POST /graphql/v2`) speaking Railway's wire protocol, so the real
// `graphql-request` client (or any GraphQL client) can be pointed at `emulator.url` and exercised for real.
//
// Every document is parsed and validated with graphql-js against the published schema
// (`test/fixtures/railway/schema.graphql`, built once per process), then EXECUTED with graphql-js `execute`
// against that same schema with the emulator's own resolvers, so a response has exactly the selected shape and
// variables are coerced exactly as the schema says. A document that does not parse or validate, or whose variables
// do not coerce, is answered HTTP 400 `{ errors }` (as Railway's GraphQL server does); everything else is HTTP 200
// `{ data, errors? }`. Root fields the emulator does not implement answer a GraphQL error naming the field.
//
// Wire-level choices (documented because the real API's docs are silent or vague):
// - Auth: `Authorization: Bearer <account token>` (see `emulator.accountToken`) sees every project;
//   `Project-Access-Token: <project token>` (from `createProject()`) sees one environment of one project. A missing
//   or unknown token, or a project token sent as `Bearer`, is answered HTTP 200 `{ data: null, errors: [{ message:
//   "Not Authorized" }] }`, which is what Railway answers and what its CLI matches on ("not authorized",
//   `railwayapp/cli` src/client.rs). Touching a project/environment outside a project token's scope, or an unknown
//   project id, is the same "Not Authorized" error on that field. Unknown service, deployment and domain ids (with
//   access to their project) answer "Service not found" / "Deployment not found" / "Service domain not found".
//   `projectToken` with an account token answers "Project Token not found" (the message the CLI prints).
// - Rate limits: with `ratePerSecond` and/or `ratePerHour`, every response carries `X-RateLimit-Limit`,
//   `X-RateLimit-Remaining` and `X-RateLimit-Reset` (Unix epoch seconds); a request over the limit is answered
//   HTTP 429 with those headers plus `Retry-After` (whole seconds) and is not executed. Railway's docs name the headers
//   but not the reset format; epoch seconds is the common convention.
// - Domains: a real Railway service domain is a bare hostname (`<name>.up.railway.app`) served over https. Here
//   `serviceDomainCreate` starts a local HTTP reverse proxy and answers `domain: "127.0.0.1:<port>"`, so tests fetch
//   `http://<domain>/`. A provider must therefore build the public URL from the domain with a configurable scheme
//   (https in production, http against the emulator). `suffix` is null (the domain has no Railway suffix). The proxy
//   keeps its port across redeploys and forwards to the current SUCCESS deployment's process; with none it answers
//   404 `Application not found`, and 502 `Application failed to respond` when the process does not answer or no
//   `runtime` is configured (a SUCCESS deployment then has no process behind it) (both with
//   `x-railway-fallback: true`, as Railway's edge does). One generated domain per service instance
//   (`maxServiceDomains`, default 1), as the dashboard offers one.
// - Builds: what a deployment runs is what Railway would build from the service's source, decided when the
//   deployment is triggered. `opts.builds.repos[repo][dockerfilePath]` and `opts.builds.images[image]` say what a
//   repository's Dockerfiles and what images run (a repo's `dockerfilePath` is the instance's, set with
//   `serviceInstanceUpdate`, else `Dockerfile` at the root, as Railway defaults). A Dockerfile path the repo's map
//   lacks FAILS the build ("Dockerfile not found"); a source with no map runs `opts.runtime`. An output
//   `{ unhealthy }` runs something that never answers the runtime's healthcheck (say, a control plane): with a
//   healthcheck path the deployment ends FAILED after `healthcheckTimeoutMs`, as Railway fails it; without one it
//   reaches SUCCESS with nothing answering behind the domain (502). `startCommand` is kept but not emulated.
// - Deployments: QUEUED → BUILDING → DEPLOYING → SUCCESS over `deployMs` (20% / 50% / 30%). When the build's output
//   is a process (`RuntimeSpec`) it is spawned when DEPLOYING starts, with EXACTLY the deployment's variables (a
//   snapshot taken when the deployment was triggered) plus `PORT` (a free local port, overriding any PORT variable)
//   and `HOST=127.0.0.1` (plus `env`, empty by default: pass e.g. PATH when the command needs it). SUCCESS waits
//   until the port accepts connections, or until the healthcheck path (the instance's `healthcheckPath`, else the
//   spec's) answers 200, like Railway's healthcheck. The
//   process exiting while DEPLOYING → FAILED; exiting after SUCCESS → CRASHED (no restart policy is emulated). When a
//   new deployment of the instance reaches SUCCESS the previous one is REMOVED and its process stopped (zero-downtime
//   swap); a new deployment supersedes in-progress ones (they become REMOVED). `deploymentStop` stops the process and
//   sets `deploymentStopped` (status unchanged); `deploymentRemove` / `serviceDelete` stop it and mark REMOVED.
//   `deploymentRestart` runs a SUCCESS or CRASHED deployment's process again (DEPLOYING until it is ready, then
//   SUCCESS; CRASHED if it never becomes ready).
//   Processes run in their own process group, which is killed on stop and on `close()` (and on process exit).
// - `serviceCreate` does not deploy unless `deployOnCreate: true` (the real behaviour is undocumented).
//   `variableCollectionUpsert` without `skipDeploys: true` redeploys a service instance that has a deployment that is
//   not REMOVED, as Railway does. `serviceInstanceLimits` answers `{ vCPUs, memoryGB }` (the override, else the plan
//   maximums `planLimits`, default Pro 32/32). `variables` answers the user variables only (no RAILWAY_* ones).
//
// Faults are injected on demand and consumed in request-arrival order: `failNext(n, status, headers?, options?)`,
// `slowNext(n, ms)`, `nextDeploymentEnds(status)`, `crash(serviceId)`. `holdNext(field)` parks the next request
// selecting a root field until the test releases it (then it runs as usual, even if its client has gone), so a
// test can act, e.g. kill the caller, while that call is in flight.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import {
  GraphQLError,
  buildSchema,
  execute,
  getOperationAST,
  isNonNullType,
  isScalarType,
  isSpecifiedScalarType,
  Kind,
  parse,
  validate,
  valueFromASTUntyped,
  type DocumentNode,
  type ExecutionResult,
  type GraphQLFieldResolver,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValueNode,
} from 'graphql';

// ---------------------------------------------------------------------------------------------------------------
// Schema

/** The published schema (SDL printed from Railway's public introspection), see test/fixtures/README.md. */
export const RAILWAY_SCHEMA_PATH = process.env['RAILWAY_SCHEMA_PATH']
  ?? fileURLToPath(new URL('../fixtures/railway/schema.graphql', import.meta.url));

export const DEPLOYMENT_STATUSES = [
  'BUILDING', 'CRASHED', 'DEPLOYING', 'FAILED', 'INITIALIZING', 'NEEDS_APPROVAL', 'QUEUED',
  'REMOVED', 'REMOVING', 'SKIPPED', 'SLEEPING', 'SUCCESS', 'WAITING',
] as const;
export type DeploymentStatus = (typeof DEPLOYMENT_STATUSES)[number];
/** Statuses `nextDeploymentEnds` can force. */
export type ForcedDeploymentEnd = 'FAILED' | 'CRASHED' | 'NEEDS_APPROVAL' | 'SKIPPED';

const IN_PROGRESS: ReadonlySet<DeploymentStatus> = new Set(['QUEUED', 'INITIALIZING', 'WAITING', 'BUILDING', 'DEPLOYING', 'NEEDS_APPROVAL']);

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

function hasVariable(node: ValueNode): boolean {
  if (node.kind === Kind.VARIABLE) return true;
  if (node.kind === Kind.LIST) return node.values.some(hasVariable);
  if (node.kind === Kind.OBJECT) return node.fields.some((f) => hasVariable(f.value));
  return false;
}

/** `EnvironmentVariables` is a JSON object of string values (`{"KEY":"value"}`). */
function coerceEnvironmentVariables(value: unknown): Record<string, string> {
  if (!isPlainObject(value)) throw new TypeError(`EnvironmentVariables must be an object of string values, got ${Array.isArray(value) ? 'array' : typeof value}`);
  const out: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (key.length === 0) throw new TypeError('EnvironmentVariables names must not be empty');
    if (typeof v !== 'string') throw new TypeError(`EnvironmentVariables values must be strings, "${key}" is ${v === null ? 'null' : typeof v}`);
    out[key] = v;
  }
  return out;
}

function toDate(value: unknown): Date {
  const d = value instanceof Date ? value : typeof value === 'string' || typeof value === 'number' ? new Date(value) : new Date(NaN);
  if (Number.isNaN(d.getTime())) throw new TypeError(`DateTime cannot represent ${JSON.stringify(value)}`);
  return d;
}

/**
 * buildSchema gives custom scalars pass-through coercion. Make them explicit: JSON-like scalars accept and return
 * any JSON (literals included), `EnvironmentVariables` must be an object of strings, `DateTime` is ISO-8601.
 */
function installScalars(schema: GraphQLSchema): void {
  for (const type of Object.values(schema.getTypeMap())) {
    if (!isScalarType(type) || isSpecifiedScalarType(type)) continue;
    if (type.name === 'DateTime') {
      type.serialize = (v) => toDate(v).toISOString();
      type.parseValue = (v) => toDate(v);
      type.parseLiteral = (ast) => {
        if (ast.kind !== Kind.STRING) throw new TypeError('DateTime must be a string');
        return toDate(ast.value);
      };
    } else if (type.name === 'EnvironmentVariables') {
      type.serialize = (v) => coerceEnvironmentVariables(v);
      type.parseValue = (v) => coerceEnvironmentVariables(v);
      type.parseLiteral = (ast, variables) => {
        // During validation literals holding variables are checked without values; the variable types are checked
        // by their own rules and the object is checked again at execution.
        if (!variables && hasVariable(ast)) return {};
        return coerceEnvironmentVariables(valueFromASTUntyped(ast, variables));
      };
    } else {
      type.serialize = (v) => v;
      type.parseValue = (v) => v;
      type.parseLiteral = (ast, variables) => valueFromASTUntyped(ast, variables);
    }
  }
}

const schemas = new Map<string, GraphQLSchema>();

/** The published Railway schema with JSON/EnvironmentVariables/DateTime coercion installed; built once per path. */
export function railwaySchema(path: string = RAILWAY_SCHEMA_PATH): GraphQLSchema {
  let schema = schemas.get(path);
  if (!schema) {
    schema = buildSchema(readFileSync(path, 'utf8'));
    installScalars(schema);
    schemas.set(path, schema);
  }
  return schema;
}

/** Parses and validates a document against the published schema; returns the errors (empty when valid). */
export function validateRailwayDocument(source: string, schema: GraphQLSchema = railwaySchema()): readonly GraphQLError[] {
  let document: DocumentNode;
  try {
    document = parse(source);
  } catch (err) {
    return [err instanceof GraphQLError ? err : new GraphQLError(String(err))];
  }
  return validate(schema, document);
}

// ---------------------------------------------------------------------------------------------------------------
// Public types

export interface RuntimeSpec {
  command: string;
  args: string[];
  /** Extra environment under the service variables (e.g. `{ PATH: process.env.PATH }`); default none. */
  env?: Record<string, string>;
  cwd?: string;
  /** When set, SUCCESS waits for `GET <path>` to answer 200 (Railway's healthcheck); otherwise for the port to accept. */
  healthcheckPath?: string;
  /** How long DEPLOYING waits for the process to become ready before FAILED. Default 30 000 ms. */
  startTimeoutMs?: number;
  /** SIGTERM → SIGKILL grace when stopping. Default 2 000 ms. */
  stopGraceMs?: number;
  /** Receives every output line of the process (also kept in `logsOf(deploymentId)`). */
  onOutput?: (line: string, deploymentId: string, stream: 'stdout' | 'stderr') => void;
}

/** What a build outputs: a process to spawn, or something that never answers the runtime's healthcheck. */
export type BuildOutput = RuntimeSpec | { unhealthy: string };

export interface Builds {
  /** By repository (owner/name), then Dockerfile path (`Dockerfile` is the root one): what that build runs. */
  repos?: Record<string, Record<string, BuildOutput>>;
  /** By image reference: what the image runs. */
  images?: Record<string, BuildOutput>;
}

export interface RailwayEmulatorOptions {
  /** Total QUEUED → SUCCESS time in ms (20% queued, 50% building, 30% deploying). Default 300. */
  deployMs?: number;
  /** What builds of which sources run (see the header). */
  builds?: Builds;
  /** Starts the real process for each deployment of a source `builds` does not map. */
  runtime?: RuntimeSpec;
  /**
   * A SUCCESS deployment whose build runs nothing (no `builds` entry and no `runtime`) answers every request 200
   * `{"status":"ok"}` at its domain itself: a stand-in for a healthy runtime that costs no process (benchmarks of a
   * thousand services). Default false (502, as without a process).
   */
  stubRuntime?: boolean;
  /** How long the healthcheck of an `{ unhealthy }` deployment waits before FAILED. Default 1 000 ms. */
  healthcheckTimeoutMs?: number;
  /** Requests per second before 429 (Railway: 10 Hobby, 50 Pro). Default unlimited. */
  ratePerSecond?: number;
  /** Requests per hour before 429 (Railway: 1000 Hobby, 10 000 Pro). Default unlimited. */
  ratePerHour?: number;
  /** The account token accepted as `Authorization: Bearer`. Default a random one. */
  accountToken?: string;
  /** Whether `serviceCreate` with a source triggers the first deployment. Default false. */
  deployOnCreate?: boolean;
  /** Generated (service) domains allowed per service instance. Default 1. */
  maxServiceDomains?: number;
  /** Maximum (and default effective) limits. Default Pro: 32 vCPU, 32 GB. */
  planLimits?: { vCPUs: number; memoryGB: number };
  /** Host the domain proxies listen on and that `domain` names. Default 127.0.0.1. */
  publicHost?: string;
  schemaPath?: string;
}

export interface ProjectHandle {
  projectId: string;
  environmentId: string;
  /** A project token for (projectId, environmentId), sent as `Project-Access-Token`. */
  token: string;
  name: string;
}

export interface CallRecord {
  seq: number;
  /** The executed operation's name (from the body, else the document), null for anonymous or unparsable ones. */
  operationName: string | null;
  operationType: 'query' | 'mutation' | 'subscription' | null;
  /** Root field names (not aliases) of the selected operation, in document order. */
  fieldNames: string[];
  /** HTTP status answered (0 while in flight). */
  status: number;
  /** GraphQL error messages answered. */
  errors: string[];
  auth: 'account' | 'project' | 'none' | 'invalid';
  /** Which fault answered it, if any. */
  injected: 'fail' | 'rate-limit' | null;
  slowMs: number;
  at: number;
  durationMs: number;
}

export interface ServiceSnapshot {
  id: string;
  name: string;
  projectId: string;
  createdAt: string;
  deletedAt: string | null;
  source: { repo: string | null; image: string | null } | null;
  branch: string | null;
}

export interface DomainSnapshot {
  id: string;
  domain: string;
  serviceId: string;
  environmentId: string;
  targetPort: number | null;
  suffix: string | null;
}

export interface DeploymentSnapshot {
  id: string;
  serviceId: string;
  environmentId: string;
  status: DeploymentStatus;
  /** Every status with the time it was entered, in order. */
  history: Array<{ status: DeploymentStatus; at: number }>;
  createdAt: string;
  deploymentStopped: boolean;
  commitSha: string | null;
  /** The variables the deployment was triggered with. */
  variables: Record<string, string>;
  /** What the build runs: `runtime: <command args>`, `unhealthy: <what>`, `build failed: <why>`, or `nothing`. */
  runs: string;
  /** Local port and pid of the runtime process, when one was started. */
  port: number | null;
  pid: number | null;
  running: boolean;
}

/** The service instance settings `serviceInstanceUpdate` changes that the emulator keeps. */
export interface InstanceSettings {
  dockerfilePath: string | null;
  startCommand: string | null;
  healthcheckPath: string | null;
  rootDirectory: string | null;
}

export interface Limits {
  vCPUs?: number;
  memoryGB?: number;
}

export interface FailOptions {
  /** Response body; default `{ errors: [{ message }] }` JSON (a Cloudflare-style HTML page for 502/503/504). */
  body?: string | Record<string, unknown>;
  /** Only requests selecting this root field consume the fault (others pass untouched). */
  field?: string;
  /** Execute the request (state changes happen), then answer the failure: a response lost after the commit. */
  afterExecute?: boolean;
}

/** A request parked by `holdNext`. */
export interface HeldCall {
  /** Resolves with the call's record once a matching request has arrived (and is parked). */
  readonly arrived: Promise<CallRecord>;
  /** Lets the request go on: it is handled as usual, and its answer goes to the client if it still listens. */
  release(): void;
}

export interface RailwayEmulator {
  /** `http://127.0.0.1:<port>/graphql/v2` */
  readonly url: string;
  readonly port: number;
  readonly accountToken: string;
  /** Every request to /graphql/v2, in arrival order. */
  readonly calls: CallRecord[];
  /** Number of calls per root field name (a request selecting two fields counts for both). */
  counts(filter?: (call: CallRecord) => boolean): Record<string, number>;
  createProject(opts?: { name?: string }): ProjectHandle;
  services(opts?: { projectId?: string; includeDeleted?: boolean }): ServiceSnapshot[];
  domainsOf(serviceId: string): DomainSnapshot[];
  deploymentsOf(serviceId: string): DeploymentSnapshot[];
  deployment(id: string): DeploymentSnapshot | undefined;
  variablesOf(serviceId: string, environmentId?: string): Record<string, string>;
  limitsOf(serviceId: string, environmentId?: string): Limits | null;
  settingsOf(serviceId: string, environmentId?: string): InstanceSettings | null;
  /** Number of requests per operation name (anonymous ones as `(anonymous)`). */
  operationCounts(filter?: (call: CallRecord) => boolean): Record<string, number>;
  logsOf(deploymentId: string): string[];
  /** Resolves when the deployment's status is one of `statuses` (default: any non-in-progress status). */
  waitForDeployment(id: string, statuses?: DeploymentStatus[], timeoutMs?: number): Promise<DeploymentSnapshot>;
  /** The next `n` requests (optionally only those selecting `options.field`) answer HTTP `status`. */
  failNext(n: number, status: number, headers?: Record<string, string>, options?: FailOptions): void;
  /** The next `n` requests wait `ms` before being handled. */
  slowNext(n: number, ms: number): void;
  /** The next request selecting root field `field` is parked, before anything else happens to it, until released. */
  holdNext(field: string): HeldCall;
  /** The next deployment created ends with `status` (queued for several calls). */
  nextDeploymentEnds(status: ForcedDeploymentEnd): void;
  /** Kills the service's running process as a crash would (its deployment becomes CRASHED). */
  crash(serviceId: string): Promise<void>;
  setDeployMs(ms: number): void;
  clearFaults(): void;
  resetCalls(): void;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------------
// State records

interface EnvRec { id: string; name: string; projectId: string; createdAt: Date; sharedVariables: Record<string, string> }
interface ProjectRec { id: string; name: string; createdAt: Date; environments: EnvRec[]; token: string; tokenId: string }
interface ServiceRec {
  id: string; name: string; projectId: string; createdAt: Date; updatedAt: Date; deletedAt: Date | null;
  source: { repo: string | null; image: string | null } | null; branch: string | null; icon: string | null;
}
interface InstanceRec {
  id: string; serviceId: string; environmentId: string; createdAt: Date; updatedAt: Date;
  variables: Record<string, string>; limits: Limits | null; settings: InstanceSettings;
}
interface DeploymentRec {
  id: string; serviceId: string; environmentId: string; projectId: string;
  status: DeploymentStatus; history: Array<{ status: DeploymentStatus; at: number }>;
  createdAt: Date; updatedAt: Date; statusUpdatedAt: Date;
  deploymentStopped: boolean; commitSha: string | null; variables: Record<string, string>;
  forcedEnd: ForcedDeploymentEnd | null; approve: (() => void) | null;
  /** What the build outputs (null: nothing to run), or why it fails; and the healthcheck path it is checked on. */
  build: { output: BuildOutput | null; failure: string | null; healthcheckPath: string | null };
  proc: ChildProcess | null; port: number | null; exited: boolean; exit: Promise<void> | null; stopping: boolean;
  logs: string[];
}
interface DomainRec {
  id: string; domain: string; serviceId: string; environmentId: string; projectId: string;
  targetPort: number | null; createdAt: Date; server: Server;
}

type Auth = { kind: 'account' } | { kind: 'project'; projectId: string; environmentId: string } | { kind: 'none' } | { kind: 'invalid' };
interface Ctx { auth: Auth }
type View = Record<string, unknown>;
type Args = Record<string, unknown>;
type RootResolver = (args: Args, ctx: Ctx) => unknown;

interface Fault { remaining: number; status: number; headers: Record<string, string>; options: FailOptions }
interface Slow { remaining: number; ms: number }
interface Hold { field: string; arrive(call: CallRecord): void; released: Promise<void>; release(): void }

const MAX_BODY_BYTES = 1024 * 1024;
const NAME_MAX = 32;

const err = (message: string): GraphQLError => new GraphQLError(message);

function listen(server: Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

async function freePort(host: string): Promise<number> {
  const s = createServer();
  const port = await listen(s, host);
  await closeServer(s);
  return port;
}

function probeTcp(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => { socket.destroy(); resolve(false); });
  });
}

function probeHttp(port: number, path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const r = httpRequest({ host: '127.0.0.1', port, path, method: 'GET', agent: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    r.once('timeout', () => r.destroy());
    r.once('error', () => resolve(false));
    r.end();
  });
}

function encodeCursor(i: number): string {
  return Buffer.from(`cursor:${i}`).toString('base64');
}
function decodeCursor(c: string): number {
  const m = /^cursor:(\d+)$/.exec(Buffer.from(c, 'base64').toString('utf8'));
  if (!m) throw err('Invalid cursor');
  return Number(m[1]);
}

function connection<T>(items: T[], args: Args, node: (t: T) => View): View {
  const first = args['first'] as number | null | undefined;
  const last = args['last'] as number | null | undefined;
  const after = args['after'] as string | null | undefined;
  const before = args['before'] as string | null | undefined;
  let start = 0;
  let end = items.length;
  if (after) start = Math.min(end, decodeCursor(after) + 1);
  if (before) end = Math.max(start, Math.min(end, decodeCursor(before)));
  if (first != null) {
    if (first < 0) throw err('first must be non-negative');
    end = Math.min(end, start + first);
  }
  if (last != null) {
    if (last < 0) throw err('last must be non-negative');
    start = Math.max(start, end - last);
  }
  const edges = items.slice(start, end).map((t, k) => ({ cursor: encodeCursor(start + k), node: node(t) }));
  return {
    edges,
    pageInfo: {
      hasNextPage: end < items.length,
      hasPreviousPage: start > 0,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges[edges.length - 1]?.cursor ?? null,
    },
  };
}

function rootFieldNames(document: DocumentNode, op: OperationDefinitionNode): string[] {
  const names: string[] = [];
  const seenFragments = new Set<string>();
  const walk = (set: SelectionSetNode): void => {
    for (const sel of set.selections) {
      if (sel.kind === Kind.FIELD) {
        if (!sel.name.value.startsWith('__') && !names.includes(sel.name.value)) names.push(sel.name.value);
      } else if (sel.kind === Kind.INLINE_FRAGMENT) {
        walk(sel.selectionSet);
      } else if (!seenFragments.has(sel.name.value)) {
        seenFragments.add(sel.name.value);
        const frag = document.definitions.find((d) => d.kind === Kind.FRAGMENT_DEFINITION && d.name.value === sel.name.value);
        if (frag && frag.kind === Kind.FRAGMENT_DEFINITION) walk(frag.selectionSet);
      }
    }
  };
  walk(op.selectionSet);
  return names;
}

function errorJson(e: GraphQLError): Record<string, unknown> {
  const json = { ...e.toJSON() } as Record<string, unknown>;
  if (json['extensions'] && Object.keys(json['extensions'] as object).length === 0) delete json['extensions'];
  return json;
}

function readBody(req: IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) tooBig = true;
      else chunks.push(c);
    });
    req.on('end', () => resolve(tooBig ? null : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'];

/** Drops hop-by-hop headers (except those in `keep`) when forwarding through the domain proxy. */
function withoutHopByHop(headers: IncomingMessage['headers'], keep: string[] = []): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined && (!HOP_BY_HOP.includes(k) || keep.includes(k))) out[k] = v;
  }
  return out;
}

function killGroup(proc: ChildProcess, signal: NodeJS.Signals): void {
  if (proc.pid === undefined) return;
  try {
    process.kill(-proc.pid, signal);
  } catch {
    try { proc.kill(signal); } catch { /* already gone */ }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Rate limiter: sliding windows of one second and one hour.

class RateLimiter {
  private hits: number[] = [];
  constructor(private readonly perSecond: number | undefined, private readonly perHour: number | undefined) {}

  /** Records the hit when allowed. Returns the headers to send and whether the request may proceed. */
  take(now: number): { allowed: boolean; headers: Record<string, string> } {
    const hourAgo = now - 3_600_000;
    while (this.hits.length > 0 && (this.hits[0] as number) <= hourAgo) this.hits.shift();
    const inSecond = this.hits.filter((t) => t > now - 1000);
    const check = (limit: number | undefined, window: number[], span: number): { ok: boolean; retryAt: number } => {
      if (limit === undefined || window.length < limit) return { ok: true, retryAt: now };
      return { ok: false, retryAt: (window[window.length - limit] as number) + span };
    };
    const sec = check(this.perSecond, inSecond, 1000);
    const hour = check(this.perHour, this.hits, 3_600_000);
    const allowed = sec.ok && hour.ok;
    if (allowed) this.hits.push(now);
    // Report the hourly window when configured (the quota Railway documents), else the per-second one; on a denial
    // report the window that denied.
    const useHour = this.perHour !== undefined && (!hour.ok || sec.ok);
    const limit = (useHour ? this.perHour : this.perSecond) as number;
    const window = useHour ? this.hits : allowed ? [...inSecond, now] : inSecond;
    const span = useHour ? 3_600_000 : 1000;
    const oldest = window[0] ?? now;
    const headers: Record<string, string> = {
      'X-RateLimit-Limit': String(limit),
      'X-RateLimit-Remaining': String(Math.max(0, limit - window.length)),
      'X-RateLimit-Reset': String(Math.ceil((oldest + span) / 1000)),
    };
    if (!allowed) {
      const retryAt = Math.max(sec.retryAt, hour.retryAt);
      headers['Retry-After'] = String(Math.max(1, Math.ceil((retryAt - now) / 1000)));
      headers['X-RateLimit-Remaining'] = '0';
      headers['X-RateLimit-Reset'] = String(Math.ceil(retryAt / 1000));
    }
    return { allowed, headers };
  }
}

// ---------------------------------------------------------------------------------------------------------------

export async function startRailwayEmulator(opts: RailwayEmulatorOptions = {}): Promise<RailwayEmulator> {
  const schema = railwaySchema(opts.schemaPath ?? RAILWAY_SCHEMA_PATH);
  const host = opts.publicHost ?? '127.0.0.1';
  const accountToken = opts.accountToken ?? `railway-account-${randomBytes(12).toString('hex')}`;
  const planLimits = opts.planLimits ?? { vCPUs: 32, memoryGB: 32 };
  const maxServiceDomains = opts.maxServiceDomains ?? 1;
  const runtime = opts.runtime;
  const builds = opts.builds ?? {};
  const healthcheckTimeoutMs = opts.healthcheckTimeoutMs ?? 1_000;
  let deployMs = opts.deployMs ?? 300;
  const limiter = opts.ratePerSecond !== undefined || opts.ratePerHour !== undefined
    ? new RateLimiter(opts.ratePerSecond, opts.ratePerHour) : null;

  const projects = new Map<string, ProjectRec>();
  const projectTokens = new Map<string, { projectId: string; environmentId: string }>();
  const services = new Map<string, ServiceRec>();
  const instances = new Map<string, InstanceRec>(); // key `${serviceId}/${environmentId}`
  const deployments = new Map<string, DeploymentRec>();
  const domains = new Map<string, DomainRec>();
  const calls: CallRecord[] = [];
  let faults: Fault[] = [];
  let slows: Slow[] = [];
  let holds: Hold[] = [];
  /** Every hold made, so close() can release the parked requests. */
  const allHolds: Hold[] = [];
  let forcedEnds: ForcedDeploymentEnd[] = [];
  const timers = new Set<NodeJS.Timeout>();
  /** Deployments whose process is alive (killed synchronously if the test process exits without close()). */
  const running = new Set<DeploymentRec>();
  let closed = false;
  let seq = 0;

  const instKey = (serviceId: string, environmentId: string) => `${serviceId}/${environmentId}`;

  const sleep = (ms: number): Promise<void> => new Promise((resolve) => {
    const t = setTimeout(() => { timers.delete(t); resolve(); }, Math.max(0, ms));
    t.unref();
    timers.add(t);
  });

  // --- lookups with Railway's errors -------------------------------------------------------------------------

  function canSeeProject(ctx: Ctx, projectId: string): boolean {
    if (ctx.auth.kind === 'account') return true;
    return ctx.auth.kind === 'project' && ctx.auth.projectId === projectId;
  }
  function canSeeEnv(ctx: Ctx, env: EnvRec): boolean {
    if (ctx.auth.kind === 'account') return true;
    return ctx.auth.kind === 'project' && ctx.auth.projectId === env.projectId && ctx.auth.environmentId === env.id;
  }
  function requireProject(ctx: Ctx, projectId: string): ProjectRec {
    const p = projects.get(projectId);
    if (!p || !canSeeProject(ctx, projectId)) throw err('Not Authorized');
    return p;
  }
  function requireEnv(ctx: Ctx, environmentId: string, projectId?: string): EnvRec {
    for (const p of projects.values()) {
      const env = p.environments.find((e) => e.id === environmentId);
      if (env && (projectId === undefined || env.projectId === projectId) && canSeeEnv(ctx, env)) return env;
    }
    throw err('Not Authorized');
  }
  function requireService(ctx: Ctx, serviceId: string): ServiceRec {
    const s = services.get(serviceId);
    if (!s || s.deletedAt) throw err('Service not found');
    if (!canSeeProject(ctx, s.projectId)) throw err('Not Authorized');
    return s;
  }
  function requireInstance(ctx: Ctx, serviceId: string, environmentId: string): InstanceRec {
    const s = requireService(ctx, serviceId);
    requireEnv(ctx, environmentId, s.projectId);
    const inst = instances.get(instKey(serviceId, environmentId));
    if (!inst) throw err('ServiceInstance not found');
    return inst;
  }
  function requireDeployment(ctx: Ctx, id: string): DeploymentRec {
    const d = deployments.get(id);
    if (!d) throw err('Deployment not found');
    requireEnv(ctx, d.environmentId, d.projectId);
    return d;
  }
  function envById(id: string): EnvRec | undefined {
    for (const p of projects.values()) {
      const env = p.environments.find((e) => e.id === id);
      if (env) return env;
    }
    return undefined;
  }
  function liveServicesOf(projectId: string): ServiceRec[] {
    return [...services.values()].filter((s) => s.projectId === projectId && !s.deletedAt);
  }
  function instanceDeployments(inst: InstanceRec): DeploymentRec[] {
    return [...deployments.values()]
      .filter((d) => d.serviceId === inst.serviceId && d.environmentId === inst.environmentId)
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1));
  }
  function activeDeploymentsOf(inst: InstanceRec): DeploymentRec[] {
    return instanceDeployments(inst).filter((d) => d.status === 'SUCCESS' && !d.deploymentStopped);
  }
  function domainsOfInstance(inst: InstanceRec): DomainRec[] {
    return [...domains.values()].filter((d) => d.serviceId === inst.serviceId && d.environmentId === inst.environmentId);
  }

  // --- views (graphql-js's default resolver reads properties and calls functions with (args, ctx)) -------------

  function projectView(p: ProjectRec): View {
    const base = p.environments[0];
    return {
      id: p.id, name: p.name, description: null, createdAt: p.createdAt, updatedAt: p.createdAt, deletedAt: null, expiredAt: null,
      isPublic: false, isTempProject: false, prDeploys: false, botPrEnvironments: false, focusedPrEnvironments: false,
      baseEnvironmentId: base?.id ?? null, primaryEnvironmentId: base?.id ?? null, workspaceId: null, teamId: null,
      baseEnvironment: () => (base ? envView(base) : null),
      services: (args: Args) => connection(liveServicesOf(p.id), args, serviceView),
      environments: (args: Args, ctx: Ctx) => {
        let envs = p.environments.filter((e) => canSeeEnv(ctx, e));
        if (args['isEphemeral'] === true) envs = [];
        if (args['sort'] === 'DESC') envs = [...envs].reverse();
        return connection(envs, args, envView);
      },
    };
  }
  function envView(e: EnvRec): View {
    return {
      id: e.id, name: e.name, projectId: e.projectId, createdAt: e.createdAt, updatedAt: e.createdAt, deletedAt: null,
      isEphemeral: false, canAccess: true, unmergedChangesCount: 0,
      serviceInstances: (args: Args) => connection(
        [...instances.values()].filter((i) => i.environmentId === e.id && !services.get(i.serviceId)?.deletedAt), args, instanceView),
      deployments: (args: Args) => connection(
        [...deployments.values()].filter((d) => d.environmentId === e.id).sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime()),
        args, deploymentView),
    };
  }
  function serviceView(s: ServiceRec): View {
    return {
      id: s.id, name: s.name, projectId: s.projectId, createdAt: s.createdAt, updatedAt: s.updatedAt, deletedAt: s.deletedAt,
      icon: s.icon, templateId: null, templateServiceId: null, templateThreadSlug: null, groupId: null,
      isRestricted: false, hasHiddenRegistryCredentialsFromTemplate: false, featureFlags: [],
      project: () => projectView(projects.get(s.projectId) as ProjectRec),
      serviceInstances: (args: Args) => connection([...instances.values()].filter((i) => i.serviceId === s.id), args, instanceView),
    };
  }
  function instanceView(i: InstanceRec): View {
    const s = services.get(i.serviceId) as ServiceRec;
    return {
      id: i.id, serviceId: i.serviceId, environmentId: i.environmentId, serviceName: s.name,
      createdAt: i.createdAt, updatedAt: i.updatedAt, deletedAt: s.deletedAt,
      source: s.source, builder: 'RAILPACK', restartPolicyType: 'ON_FAILURE', restartPolicyMaxRetries: 10,
      watchPatterns: [], isUpdatable: true, numReplicas: 1, region: 'us-west2', buildCommand: null,
      rootDirectory: i.settings.rootDirectory, healthcheckPath: i.settings.healthcheckPath, healthcheckTimeout: null, sleepApplication: false,
      cronSchedule: null, upstreamUrl: null, railwayConfigFile: null, dockerfilePath: i.settings.dockerfilePath, startCommand: i.settings.startCommand,
      latestDeployment: () => {
        const d = instanceDeployments(i)[0];
        return d ? deploymentView(d) : null;
      },
      activeDeployments: () => activeDeploymentsOf(i).map(deploymentView),
      domains: () => allDomainsView(i),
      service: () => serviceView(s),
    };
  }
  function deploymentView(d: DeploymentRec): View {
    const inst = instances.get(instKey(d.serviceId, d.environmentId));
    const domain = inst ? domainsOfInstance(inst)[0]?.domain ?? null : null;
    const s = services.get(d.serviceId);
    return {
      id: d.id, status: d.status, createdAt: d.createdAt, updatedAt: d.updatedAt, statusUpdatedAt: d.statusUpdatedAt,
      deploymentStopped: d.deploymentStopped, projectId: d.projectId, environmentId: d.environmentId, serviceId: d.serviceId,
      staticUrl: domain, url: domain, canRedeploy: true, canRollback: false, suggestAddServiceDomain: domain === null,
      snapshotId: null, instances: [], sockets: [], creator: null, diagnosis: null,
      meta: { commitHash: d.commitSha, repo: s?.source?.repo ?? null, image: s?.source?.image ?? null, branch: s?.branch ?? null },
      service: () => serviceView(s as ServiceRec),
      environment: () => envView(envById(d.environmentId) as EnvRec),
    };
  }
  function domainView(d: DomainRec): View {
    return {
      id: d.id, domain: d.domain, serviceId: d.serviceId, environmentId: d.environmentId, projectId: d.projectId,
      targetPort: d.targetPort, suffix: null, syncStatus: 'ACTIVE', createdAt: d.createdAt, updatedAt: d.createdAt,
      deletedAt: null, edgeId: null, cdnMode: null, newDomainName: null, newHostLabel: null,
    };
  }
  function allDomainsView(i: InstanceRec): View {
    return { serviceDomains: domainsOfInstance(i).map(domainView), customDomains: [] };
  }

  // --- deployments -------------------------------------------------------------------------------------------

  function setStatus(d: DeploymentRec, status: DeploymentStatus): void {
    if (d.status === status) return;
    const now = new Date();
    d.status = status;
    d.statusUpdatedAt = now;
    d.updatedAt = now;
    d.history.push({ status, at: now.getTime() });
    log(d, `[railway-emulator] status ${status}`);
  }
  const live = (d: DeploymentRec): boolean => !closed && IN_PROGRESS.has(d.status);

  function log(d: DeploymentRec, line: string): void {
    d.logs.push(line);
    if (d.logs.length > 2000) d.logs.splice(0, d.logs.length - 2000);
  }

  const isProcess = (output: BuildOutput | null): output is RuntimeSpec => output !== null && 'command' in output;

  /** What Railway would build from the instance's source and settings now, as the deployment will run it. */
  function buildOf(inst: InstanceRec, s: ServiceRec): DeploymentRec['build'] {
    const fallback = { output: runtime ?? null, failure: null };
    let resolved: { output: BuildOutput | null; failure: string | null } = fallback;
    if (s.source?.image) {
      const output = builds.images?.[s.source.image];
      if (output) resolved = { output, failure: null };
    } else if (s.source?.repo) {
      const files = builds.repos?.[s.source.repo];
      const path = inst.settings.dockerfilePath ?? 'Dockerfile';
      if (files) {
        const output = files[path];
        resolved = output ? { output, failure: null } : { output: null, failure: `Dockerfile \`${path}\` does not exist in ${s.source.repo}` };
      }
    }
    const healthcheckPath = inst.settings.healthcheckPath ?? (isProcess(resolved.output) ? resolved.output.healthcheckPath ?? null : null);
    return { ...resolved, healthcheckPath };
  }

  function describeBuild(b: DeploymentRec['build']): string {
    if (b.failure) return `build failed: ${b.failure}`;
    if (!b.output) return 'nothing';
    return isProcess(b.output) ? `runtime: ${[b.output.command, ...b.output.args].join(' ')}` : `unhealthy: ${b.output.unhealthy}`;
  }

  function createDeployment(inst: InstanceRec, commitSha: string | null): DeploymentRec {
    const now = new Date();
    const s = services.get(inst.serviceId) as ServiceRec;
    const d: DeploymentRec = {
      id: randomUUID(), serviceId: inst.serviceId, environmentId: inst.environmentId, projectId: s.projectId,
      status: 'QUEUED', history: [{ status: 'QUEUED', at: now.getTime() }],
      createdAt: now, updatedAt: now, statusUpdatedAt: now, deploymentStopped: false, commitSha,
      variables: { ...inst.variables }, forcedEnd: forcedEnds.shift() ?? null, approve: null, build: buildOf(inst, s),
      proc: null, port: null, exited: false, exit: null, stopping: false, logs: [],
    };
    // A new deployment supersedes the instance's in-progress ones.
    for (const other of instanceDeployments(inst)) {
      if (IN_PROGRESS.has(other.status)) {
        setStatus(other, 'REMOVED');
        other.deploymentStopped = true;
        void stopProcess(other);
      }
    }
    deployments.set(d.id, d);
    void run(d).catch((e: unknown) => {
      log(d, `[railway-emulator] ${String(e)}`);
      if (live(d)) setStatus(d, 'FAILED');
    });
    return d;
  }

  async function run(d: DeploymentRec): Promise<void> {
    const total = deployMs;
    await sleep(total * 0.2);
    if (!live(d)) return;
    if (d.forcedEnd === 'SKIPPED') return setStatus(d, 'SKIPPED');
    if (d.forcedEnd === 'NEEDS_APPROVAL') {
      setStatus(d, 'NEEDS_APPROVAL');
      await new Promise<void>((resolve) => { d.approve = resolve; });
      d.approve = null;
      if (!live(d)) return;
    }
    setStatus(d, 'BUILDING');
    await sleep(total * 0.5);
    if (!live(d)) return;
    if (d.forcedEnd === 'FAILED') {
      log(d, '[railway-emulator] build failed (injected)');
      return setStatus(d, 'FAILED');
    }
    if (d.build.failure) {
      log(d, `[railway-emulator] build failed: ${d.build.failure}`);
      return setStatus(d, 'FAILED');
    }
    const output = d.build.output;
    setStatus(d, 'DEPLOYING');
    if (isProcess(output) && d.forcedEnd !== 'CRASHED') await startProcess(d, output);
    await sleep(total * 0.3);
    if (!live(d)) return;
    if (d.forcedEnd === 'CRASHED') {
      log(d, '[railway-emulator] container crashed (injected)');
      d.deploymentStopped = true;
      return setStatus(d, 'CRASHED');
    }
    if (output && !isProcess(output)) {
      log(d, `[railway-emulator] running ${output.unhealthy}`);
      if (d.build.healthcheckPath) {
        await sleep(healthcheckTimeoutMs);
        if (!live(d)) return;
        log(d, `[railway-emulator] healthcheck failed: ${d.build.healthcheckPath} never answered 200 within ${healthcheckTimeoutMs} ms`);
        d.deploymentStopped = true;
        return setStatus(d, 'FAILED');
      }
    }
    if (isProcess(output)) {
      const ready = await waitReady(d, output, d.build.healthcheckPath);
      if (!live(d)) return;
      if (!ready) {
        log(d, '[railway-emulator] healthcheck failed: the process did not become ready in time');
        setStatus(d, 'FAILED');
        d.deploymentStopped = true;
        await stopProcess(d);
        return;
      }
    }
    setStatus(d, 'SUCCESS');
    // Zero-downtime swap: the instance's older running deployments are removed.
    const inst = instances.get(instKey(d.serviceId, d.environmentId));
    if (inst) {
      for (const other of instanceDeployments(inst)) {
        if (other !== d && other.status === 'SUCCESS') {
          setStatus(other, 'REMOVED');
          other.deploymentStopped = true;
          void stopProcess(other);
        }
      }
    }
  }

  async function startProcess(d: DeploymentRec, spec: RuntimeSpec): Promise<void> {
    const port = await freePort('127.0.0.1');
    if (!live(d)) return;
    d.port = port;
    const env: Record<string, string> = { ...(spec.env ?? {}), ...d.variables, PORT: String(port), HOST: '127.0.0.1' };
    log(d, `[railway-emulator] starting ${spec.command} on port ${port}`);
    let proc: ChildProcess;
    try {
      proc = spawn(spec.command, spec.args, { env, cwd: spec.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    } catch (e) {
      log(d, `[railway-emulator] spawn failed: ${String(e)}`);
      d.exited = true;
      d.deploymentStopped = true;
      setStatus(d, 'FAILED');
      return;
    }
    d.proc = proc;
    running.add(d);
    for (const stream of ['stdout', 'stderr'] as const) {
      let buffered = '';
      proc[stream]?.setEncoding('utf8');
      proc[stream]?.on('data', (chunk: string) => {
        buffered += chunk;
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) {
          log(d, line);
          spec.onOutput?.(line, d.id, stream);
        }
      });
      proc[stream]?.on('end', () => {
        if (buffered) { log(d, buffered); spec.onOutput?.(buffered, d.id, stream); }
      });
    }
    d.exit = new Promise<void>((resolve) => {
      let done = false;
      const onGone = (why: string): void => {
        if (done) return;
        done = true;
        d.exited = true;
        running.delete(d);
        killGroup(proc, 'SIGKILL'); // reap anything the process left in its group
        log(d, `[railway-emulator] process ${why}`);
        if (!d.stopping && !closed) {
          if (d.status === 'DEPLOYING') { d.deploymentStopped = true; setStatus(d, 'FAILED'); }
          else if (d.status === 'SUCCESS') { d.deploymentStopped = true; setStatus(d, 'CRASHED'); }
        }
        resolve();
      };
      proc.once('exit', (code, signal) => onGone(`exited (code ${code ?? 'null'}, signal ${signal ?? 'null'})`));
      proc.once('error', (e) => onGone(`failed to start: ${e.message}`));
    });
  }

  async function waitReady(d: DeploymentRec, spec: RuntimeSpec, healthcheckPath: string | null): Promise<boolean> {
    const deadline = Date.now() + (spec.startTimeoutMs ?? 30_000);
    while (live(d)) {
      if (d.exited || d.port === null) return false;
      const ok = healthcheckPath ? await probeHttp(d.port, healthcheckPath) : await probeTcp(d.port);
      if (ok && !d.exited) return true;
      if (Date.now() > deadline) return false;
      await sleep(20);
    }
    return false;
  }

  /** deploymentRestart: the same deployment's container again (its process stopped first if it still runs). */
  async function restartDeployment(d: DeploymentRec): Promise<void> {
    const output = d.build.output;
    if (d.proc && !d.exited) await stopProcess(d);
    d.stopping = false;
    d.exited = false;
    d.deploymentStopped = false;
    log(d, '[railway-emulator] restarting');
    setStatus(d, 'DEPLOYING'); // in progress again until the process is ready (a process that exits now: FAILED)
    if (!isProcess(output)) return setStatus(d, 'SUCCESS');
    await startProcess(d, output);
    const ready = await waitReady(d, output, d.build.healthcheckPath);
    if (!live(d)) return;
    if (ready) return setStatus(d, 'SUCCESS');
    d.deploymentStopped = true;
    await stopProcess(d);
    setStatus(d, 'CRASHED');
  }

  async function stopProcess(d: DeploymentRec, graceMs = (isProcess(d.build.output) ? d.build.output.stopGraceMs : undefined) ?? 2000): Promise<void> {
    const proc = d.proc;
    if (!proc || d.exited) return;
    d.stopping = true;
    killGroup(proc, 'SIGTERM');
    const t = setTimeout(() => killGroup(proc, 'SIGKILL'), graceMs);
    t.unref();
    await d.exit;
    clearTimeout(t);
  }

  async function removeDeployment(d: DeploymentRec): Promise<void> {
    if (d.status !== 'REMOVED') setStatus(d, 'REMOVED');
    d.deploymentStopped = true;
    d.approve?.();
    await stopProcess(d);
  }

  const onProcessExit = (): void => {
    for (const d of running) if (d.proc) killGroup(d.proc, 'SIGKILL');
  };
  process.on('exit', onProcessExit);

  // --- domains: a local reverse proxy per generated domain ----------------------------------------------------

  function activeTarget(d: DomainRec): DeploymentRec | undefined {
    const inst = instances.get(instKey(d.serviceId, d.environmentId));
    return inst ? activeDeploymentsOf(inst)[0] : undefined;
  }

  function fallback(res: ServerResponse, status: number, message: string): void {
    const body = JSON.stringify({ status: 'error', code: status, message, request_id: randomUUID() });
    res.writeHead(status, { 'content-type': 'application/json', 'x-railway-fallback': 'true', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  async function createDomainProxy(rec: Omit<DomainRec, 'server' | 'domain'>): Promise<DomainRec> {
    const server = createServer((req, res) => {
      const target = activeTarget(domainRec);
      if (!target) return fallback(res, 404, 'Application not found');
      if (opts.stubRuntime && target.build.output === null) {
        res.writeHead(200, { 'content-type': 'application/json' });
        return void res.end('{"status":"ok"}');
      }
      if (target.port === null || target.exited) return fallback(res, 502, 'Application failed to respond');
      const headers: OutgoingHttpHeaders = {
        ...withoutHopByHop(req.headers),
        'x-forwarded-for': req.socket.remoteAddress ?? '127.0.0.1',
        'x-forwarded-host': req.headers.host ?? domainRec.domain,
        'x-forwarded-proto': 'http',
        'x-railway-request-id': randomUUID(),
      };
      const upstream = httpRequest({ host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers, agent: false }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, withoutHopByHop(ur.headers, ['transfer-encoding']));
        ur.pipe(res);
      });
      upstream.on('error', () => {
        if (!res.headersSent) fallback(res, 502, 'Application failed to respond');
        else res.destroy();
      });
      req.pipe(upstream);
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const target = activeTarget(domainRec);
      if (!target || target.port === null) { socket.destroy(); return; }
      const up = connect({ host: '127.0.0.1', port: target.port }, () => {
        const lines = [`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1`];
        for (let k = 0; k < req.rawHeaders.length; k += 2) lines.push(`${req.rawHeaders[k]}: ${req.rawHeaders[k + 1]}`);
        up.write(`${lines.join('\r\n')}\r\n\r\n`);
        if (head.length > 0) up.write(head);
        up.pipe(socket);
        socket.pipe(up);
      });
      up.on('error', () => socket.destroy());
      socket.on('error', () => up.destroy());
    });
    const port = await listen(server, host);
    const domainRec: DomainRec = { ...rec, server, domain: `${host}:${port}` };
    return domainRec;
  }

  async function deleteDomain(d: DomainRec): Promise<void> {
    domains.delete(d.id);
    await closeServer(d.server);
  }

  // --- resolvers ---------------------------------------------------------------------------------------------

  const str = (args: Args, k: string): string => args[k] as string;
  const optStr = (args: Args, k: string): string | null => (args[k] as string | null | undefined) ?? null;

  function checkLimits(input: Args): Limits {
    const out: Limits = {};
    for (const [k, max] of [['vCPUs', planLimits.vCPUs], ['memoryGB', planLimits.memoryGB]] as const) {
      const v = input[k] as number | null | undefined;
      if (v === null || v === undefined) continue;
      if (!(v > 0)) throw err(`${k} must be greater than 0`);
      if (v > max) throw err(`${k} must be less than or equal to ${max} on your plan`);
      out[k] = v;
    }
    return out;
  }

  function deployInstance(inst: InstanceRec, commitSha: string | null): DeploymentRec {
    if (commitSha !== null && !/^[0-9a-f]{7,40}$/i.test(commitSha)) throw err('Commit not found');
    return createDeployment(inst, commitSha);
  }

  const queryRoot: Record<string, RootResolver> = {
    project: (a, ctx) => projectView(requireProject(ctx, str(a, 'id'))),
    environments: (a, ctx) => {
      const p = requireProject(ctx, str(a, 'projectId'));
      return connection(p.environments.filter((e) => canSeeEnv(ctx, e)), a, envView);
    },
    environment: (a, ctx) => envView(requireEnv(ctx, str(a, 'id'), optStr(a, 'projectId') ?? undefined)),
    service: (a, ctx) => serviceView(requireService(ctx, str(a, 'id'))),
    serviceInstance: (a, ctx) => instanceView(requireInstance(ctx, str(a, 'serviceId'), str(a, 'environmentId'))),
    deployment: (a, ctx) => deploymentView(requireDeployment(ctx, str(a, 'id'))),
    deployments: (a, ctx) => {
      const input = a['input'] as Args;
      const status = input['status'] as { in?: string[] | null; notIn?: string[] | null } | null | undefined;
      const projectId = optStr(input, 'projectId');
      const environmentId = optStr(input, 'environmentId');
      const serviceId = optStr(input, 'serviceId');
      if (projectId) requireProject(ctx, projectId);
      if (environmentId) requireEnv(ctx, environmentId);
      if (serviceId) requireService(ctx, serviceId);
      if (!projectId && !environmentId && !serviceId) throw err('Not Authorized');
      const list = [...deployments.values()]
        .filter((d) => (!projectId || d.projectId === projectId) && (!environmentId || d.environmentId === environmentId)
          && (!serviceId || d.serviceId === serviceId))
        .filter((d) => canSeeEnv(ctx, envById(d.environmentId) as EnvRec))
        .filter((d) => input['includeDeleted'] === true || !services.get(d.serviceId)?.deletedAt)
        .filter((d) => !status?.in || status.in.includes(d.status))
        .filter((d) => !status?.notIn || !status.notIn.includes(d.status))
        .sort((x, y) => y.createdAt.getTime() - x.createdAt.getTime());
      return connection(list, a, deploymentView);
    },
    domains: (a, ctx) => {
      const p = requireProject(ctx, str(a, 'projectId'));
      const inst = requireInstance(ctx, str(a, 'serviceId'), str(a, 'environmentId'));
      if (services.get(inst.serviceId)?.projectId !== p.id) throw err('Not Authorized');
      return allDomainsView(inst);
    },
    serviceInstanceLimits: (a, ctx) => {
      const inst = requireInstance(ctx, str(a, 'serviceId'), str(a, 'environmentId'));
      return { vCPUs: inst.limits?.vCPUs ?? planLimits.vCPUs, memoryGB: inst.limits?.memoryGB ?? planLimits.memoryGB };
    },
    serviceInstanceLimitOverride: (a, ctx) => {
      const inst = requireInstance(ctx, str(a, 'serviceId'), str(a, 'environmentId'));
      return inst.limits && Object.keys(inst.limits).length > 0 ? { ...inst.limits } : null;
    },
    variables: (a, ctx) => {
      const p = requireProject(ctx, str(a, 'projectId'));
      const env = requireEnv(ctx, str(a, 'environmentId'), p.id);
      const serviceId = optStr(a, 'serviceId');
      if (!serviceId) return { ...env.sharedVariables };
      return { ...requireInstance(ctx, serviceId, env.id).variables };
    },
    projectToken: (_a, ctx) => {
      if (ctx.auth.kind !== 'project') throw err('Project Token not found');
      const { projectId, environmentId } = ctx.auth;
      const p = projects.get(projectId) as ProjectRec;
      return {
        id: p.tokenId, name: 'railway-emulator', displayToken: `${p.token.slice(0, 8)}…`, createdAt: p.createdAt,
        projectId, environmentId,
        project: () => projectView(p),
        environment: () => envView(envById(environmentId) as EnvRec),
      };
    },
  };

  const mutationRoot: Record<string, RootResolver> = {
    serviceCreate: (a, ctx) => {
      const input = a['input'] as Args;
      const p = requireProject(ctx, str(input, 'projectId'));
      const environmentId = optStr(input, 'environmentId');
      const envs = environmentId ? [requireEnv(ctx, environmentId, p.id)] : p.environments.filter((e) => canSeeEnv(ctx, e));
      const sourceIn = input['source'] as { repo?: string | null; image?: string | null } | null | undefined;
      const repo = sourceIn?.repo ?? null;
      const image = sourceIn?.image ?? null;
      if (repo !== null && !/^[\w.-]+\/[\w.-]+$/.test(repo)) throw err(`Invalid repository "${repo}": expected owner/name`);
      let name = optStr(input, 'name');
      if (name !== null) {
        name = name.trim();
        if (name.length === 0) throw err('Service name cannot be empty');
        if (name.length > NAME_MAX) throw err(`Service name must be ${NAME_MAX} characters or less`);
      } else {
        name = (repo?.split('/')[1] ?? image?.split('/').pop()?.split(':')[0] ?? `service-${randomBytes(3).toString('hex')}`).slice(0, NAME_MAX);
      }
      const variables = (input['variables'] as Record<string, string> | null | undefined) ?? {};
      const now = new Date();
      const s: ServiceRec = {
        id: randomUUID(), name, projectId: p.id, createdAt: now, updatedAt: now, deletedAt: null,
        source: repo !== null || image !== null ? { repo, image } : null, branch: optStr(input, 'branch'), icon: optStr(input, 'icon'),
      };
      services.set(s.id, s);
      for (const env of envs) {
        const inst: InstanceRec = {
          id: randomUUID(), serviceId: s.id, environmentId: env.id, createdAt: now, updatedAt: now, variables: { ...variables }, limits: null,
          settings: { dockerfilePath: null, startCommand: null, healthcheckPath: null, rootDirectory: null },
        };
        instances.set(instKey(s.id, env.id), inst);
        if (opts.deployOnCreate && s.source) createDeployment(inst, null);
      }
      return serviceView(s);
    },
    serviceDelete: async (a, ctx) => {
      const s = requireService(ctx, str(a, 'id'));
      const environmentId = optStr(a, 'environmentId');
      if (environmentId) requireEnv(ctx, environmentId, s.projectId);
      // Forked environments are not emulated: the service is deleted in every environment.
      s.deletedAt = new Date();
      s.updatedAt = s.deletedAt;
      const work: Array<Promise<void>> = [];
      for (const d of deployments.values()) {
        if (d.serviceId === s.id && (d.status !== 'REMOVED' || !d.exited)) work.push(removeDeployment(d));
      }
      for (const dom of [...domains.values()]) if (dom.serviceId === s.id) work.push(deleteDomain(dom));
      await Promise.all(work);
      return true;
    },
    variableCollectionUpsert: (a, ctx) => {
      const input = a['input'] as Args;
      const p = requireProject(ctx, str(input, 'projectId'));
      const env = requireEnv(ctx, str(input, 'environmentId'), p.id);
      const vars = input['variables'] as Record<string, string>;
      const replace = input['replace'] === true;
      const serviceId = optStr(input, 'serviceId');
      if (!serviceId) {
        env.sharedVariables = replace ? { ...vars } : { ...env.sharedVariables, ...vars };
        return true;
      }
      const inst = requireInstance(ctx, serviceId, env.id);
      if (services.get(serviceId)?.projectId !== p.id) throw err('Not Authorized');
      inst.variables = replace ? { ...vars } : { ...inst.variables, ...vars };
      inst.updatedAt = new Date();
      if (input['skipDeploys'] !== true) {
        const latest = instanceDeployments(inst)[0];
        if (latest && latest.status !== 'REMOVED' && latest.status !== 'REMOVING') createDeployment(inst, latest.commitSha);
      }
      return true;
    },
    variableUpsert: (a, ctx) => {
      const input = a['input'] as Args;
      return (mutationRoot['variableCollectionUpsert'] as RootResolver)({
        input: { ...input, variables: { [str(input, 'name')]: str(input, 'value') }, replace: false },
      }, ctx);
    },
    serviceInstanceLimitsUpdate: (a, ctx) => {
      const input = a['input'] as Args;
      const inst = requireInstance(ctx, str(input, 'serviceId'), str(input, 'environmentId'));
      inst.limits = { ...(inst.limits ?? {}), ...checkLimits(input) };
      inst.updatedAt = new Date();
      return true;
    },
    serviceInstanceUpdate: (a, ctx) => {
      const s = requireService(ctx, str(a, 'serviceId'));
      const environmentId = optStr(a, 'environmentId');
      const insts = environmentId
        ? [requireInstance(ctx, s.id, environmentId)]
        : [...instances.values()].filter((i) => i.serviceId === s.id && canSeeEnv(ctx, envById(i.environmentId) as EnvRec));
      const input = a['input'] as Args;
      const source = input['source'] as { repo?: string | null; image?: string | null } | null | undefined;
      if (source) {
        const repo = source.repo ?? null;
        const image = source.image ?? null;
        if (repo !== null && !/^[\w.-]+\/[\w.-]+$/.test(repo)) throw err(`Invalid repository "${repo}": expected owner/name`);
        // Forked environments are not emulated: the source is the service's.
        s.source = repo !== null || image !== null ? { repo, image } : null;
        s.updatedAt = new Date();
      }
      for (const inst of insts) {
        for (const key of ['dockerfilePath', 'startCommand', 'healthcheckPath', 'rootDirectory'] as const) {
          if (key in input) inst.settings[key] = (input[key] as string | null | undefined) ?? null;
        }
        inst.updatedAt = new Date();
      }
      return true;
    },
    serviceInstanceDeployV2: (a, ctx) =>
      deployInstance(requireInstance(ctx, str(a, 'serviceId'), str(a, 'environmentId')), optStr(a, 'commitSha')).id,
    serviceInstanceDeploy: (a, ctx) => {
      deployInstance(requireInstance(ctx, str(a, 'serviceId'), str(a, 'environmentId')), optStr(a, 'commitSha'));
      return true;
    },
    serviceInstanceRedeploy: (a, ctx) => {
      const inst = requireInstance(ctx, str(a, 'serviceId'), str(a, 'environmentId'));
      const latest = instanceDeployments(inst)[0];
      if (!latest) throw err('No deployment found for service instance');
      createDeployment(inst, latest.commitSha);
      return true;
    },
    deploymentRedeploy: (a, ctx) => {
      const d = requireDeployment(ctx, str(a, 'id'));
      const inst = requireInstance(ctx, d.serviceId, d.environmentId);
      return deploymentView(createDeployment(inst, d.commitSha));
    },
    deploymentRestart: (a, ctx) => {
      const d = requireDeployment(ctx, str(a, 'id'));
      if (d.status !== 'SUCCESS' && d.status !== 'CRASHED') throw err('Deployment cannot be restarted');
      void restartDeployment(d).catch((e: unknown) => log(d, `[railway-emulator] restart failed: ${String(e)}`));
      return true;
    },
    deploymentApprove: (a, ctx) => {
      const d = requireDeployment(ctx, str(a, 'id'));
      if (d.status !== 'NEEDS_APPROVAL') throw err('Deployment does not need approval');
      d.approve?.();
      return true;
    },
    deploymentCancel: async (a, ctx) => {
      const d = requireDeployment(ctx, str(a, 'id'));
      if (!IN_PROGRESS.has(d.status)) throw err('Deployment is not in progress');
      await removeDeployment(d);
      return true;
    },
    deploymentRemove: async (a, ctx) => {
      await removeDeployment(requireDeployment(ctx, str(a, 'id')));
      return true;
    },
    deploymentStop: async (a, ctx) => {
      const d = requireDeployment(ctx, str(a, 'id'));
      d.deploymentStopped = true;
      d.updatedAt = new Date();
      if (IN_PROGRESS.has(d.status)) await removeDeployment(d);
      else await stopProcess(d);
      return true;
    },
    serviceDomainCreate: async (a, ctx) => {
      const input = a['input'] as Args;
      const inst = requireInstance(ctx, str(input, 'serviceId'), str(input, 'environmentId'));
      if (domainsOfInstance(inst).length >= maxServiceDomains) throw err('Service already has a service domain');
      const targetPort = (input['targetPort'] as number | null | undefined) ?? null;
      if (targetPort !== null && (targetPort < 1 || targetPort > 65535)) throw err('Invalid target port');
      const s = services.get(inst.serviceId) as ServiceRec;
      const rec = await createDomainProxy({
        id: randomUUID(), serviceId: inst.serviceId, environmentId: inst.environmentId, projectId: s.projectId, targetPort, createdAt: new Date(),
      });
      if (closed || s.deletedAt) {
        await closeServer(rec.server);
        throw err('Service not found');
      }
      domains.set(rec.id, rec);
      return domainView(rec);
    },
    serviceDomainDelete: async (a, ctx) => {
      const d = domains.get(str(a, 'id'));
      if (!d) throw err('Service domain not found');
      requireEnv(ctx, d.environmentId, d.projectId);
      await deleteDomain(d);
      return true;
    },
  };

  const fieldResolver: GraphQLFieldResolver<unknown, Ctx> = (source, args, ctx, info) => {
    if (typeof source === 'object' && source !== null && info.fieldName in source) {
      const value = (source as Record<string, unknown>)[info.fieldName];
      return typeof value === 'function' ? (value as (a: Args, c: Ctx) => unknown)(args, ctx) : value;
    }
    const isRoot = info.parentType.name === 'Query' || info.parentType.name === 'Mutation';
    if (isRoot || isNonNullType(info.returnType)) {
      throw err(`${info.parentType.name}.${info.fieldName} is not implemented by the Railway emulator`);
    }
    return null;
  };

  // --- HTTP --------------------------------------------------------------------------------------------------

  function authOf(req: IncomingMessage): Auth {
    const projectToken = req.headers['project-access-token'];
    if (typeof projectToken === 'string' && projectToken.length > 0) {
      const scope = projectTokens.get(projectToken.trim());
      return scope ? { kind: 'project', ...scope } : { kind: 'invalid' };
    }
    const authorization = req.headers['authorization'];
    if (typeof authorization === 'string' && authorization.length > 0) {
      const m = /^Bearer\s+(.+)$/i.exec(authorization.trim());
      return m && m[1] === accountToken ? { kind: 'account' } : { kind: 'invalid' };
    }
    return { kind: 'none' };
  }

  function takeFault(fieldNames: string[]): Fault | undefined {
    const idx = faults.findIndex((f) => !f.options.field || fieldNames.includes(f.options.field));
    if (idx < 0) return undefined;
    const f = faults[idx] as Fault;
    f.remaining -= 1;
    if (f.remaining <= 0) faults.splice(idx, 1);
    return f;
  }

  function faultResponse(f: Fault): { status: number; headers: Record<string, string>; body: string } {
    const headers: Record<string, string> = {};
    let body: string;
    if (f.status === 429) {
      const now = Date.now();
      headers['Retry-After'] = '1';
      headers['X-RateLimit-Limit'] = String(opts.ratePerHour ?? opts.ratePerSecond ?? 1000);
      headers['X-RateLimit-Remaining'] = '0';
      headers['X-RateLimit-Reset'] = String(Math.ceil(now / 1000) + 1);
    }
    if (typeof f.options.body === 'string') {
      body = f.options.body;
      headers['Content-Type'] = body.trimStart().startsWith('<') ? 'text/html; charset=utf-8' : 'application/json';
    } else if (f.options.body) {
      body = JSON.stringify(f.options.body);
      headers['Content-Type'] = 'application/json';
    } else if (f.status === 502 || f.status === 503 || f.status === 504) {
      const text = f.status === 502 ? 'Bad gateway' : f.status === 503 ? 'Service Unavailable' : 'Gateway time-out';
      body = `<!DOCTYPE html>\n<html><head><title>${f.status} ${text}</title></head><body><h1>${f.status} ${text}</h1><p>backboard.railway.com</p></body></html>\n`;
      headers['Content-Type'] = 'text/html; charset=utf-8';
    } else {
      const message = f.status === 429 ? 'Rate limit exceeded. Please try again later.' : f.status >= 500 ? 'Internal Server Error' : `HTTP ${f.status}`;
      body = JSON.stringify({ errors: [{ message }] });
      headers['Content-Type'] = 'application/json';
    }
    return { status: f.status, headers: { ...headers, ...f.headers }, body };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/graphql/v2') {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ message: `Cannot ${req.method ?? 'GET'} ${path}` }] }));
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { 'content-type': 'application/json', allow: 'POST' });
      res.end(JSON.stringify({ errors: [{ message: 'Only POST is supported by the emulator' }] }));
      return;
    }
    const auth = authOf(req);
    const call: CallRecord = {
      seq: ++seq, operationName: null, operationType: null, fieldNames: [], status: 0, errors: [],
      auth: auth.kind, injected: null, slowMs: 0, at: Date.now(), durationMs: 0,
    };
    calls.push(call);
    const extraHeaders: Record<string, string> = { 'x-request-id': randomUUID() };
    const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      if (typeof body !== 'string' && body && typeof body === 'object' && Array.isArray((body as { errors?: unknown }).errors)) {
        call.errors = ((body as { errors: Array<{ message?: unknown }> }).errors).map((e) => String(e.message));
      }
      call.status = status;
      call.durationMs = Date.now() - call.at;
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...extraHeaders, ...lowerKeys(headers), 'content-length': String(Buffer.byteLength(text)) });
      res.end(text);
    };

    const raw = await readBody(req);
    if (raw === null) return send(413, { errors: [{ message: 'Request entity too large' }] });
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch (e) {
      return send(400, { errors: [{ message: `Invalid JSON body: ${(e as Error).message}` }] });
    }
    if (Array.isArray(body)) return send(400, { errors: [{ message: 'Batched operations are not supported' }] });
    if (!isPlainObject(body)) return send(400, { errors: [{ message: 'POST body must be a JSON object' }] });
    const query = body['query'];
    const variables = body['variables'] ?? undefined;
    const operationName = body['operationName'] ?? undefined;

    let document: DocumentNode | undefined;
    let parseError: GraphQLError | undefined;
    if (typeof query === 'string' && query.trim().length > 0) {
      try {
        document = parse(query);
      } catch (e) {
        parseError = e instanceof GraphQLError ? e : err(String(e));
      }
    }
    const op = document && (operationName === undefined || operationName === null || typeof operationName === 'string')
      ? getOperationAST(document, operationName ?? undefined) : null;
    if (document && op) {
      call.operationName = (typeof operationName === 'string' ? operationName : null) ?? op.name?.value ?? null;
      call.operationType = op.operation;
      call.fieldNames = rootFieldNames(document, op);
    }

    const holdAt = holds.findIndex((h) => call.fieldNames.includes(h.field));
    if (holdAt >= 0) {
      const [hold] = holds.splice(holdAt, 1) as [Hold];
      hold.arrive(call);
      await hold.released;
      if (closed) return send(503, { errors: [{ message: 'Emulator closed' }] });
    }

    // Faults, in the order the edge would apply them: latency, injected failures, rate limit.
    const slow = slows[0];
    if (slow) {
      slow.remaining -= 1;
      if (slow.remaining <= 0) slows.shift();
      call.slowMs = slow.ms;
      await new Promise<void>((resolve) => { const t = setTimeout(resolve, slow.ms); t.unref(); });
    }
    const fault = takeFault(call.fieldNames);
    if (fault && !fault.options.afterExecute) {
      call.injected = 'fail';
      const r = faultResponse(fault);
      return send(r.status, r.body, r.headers);
    }
    if (limiter) {
      const rl = limiter.take(Date.now());
      Object.assign(extraHeaders, rl.headers);
      if (!rl.allowed) {
        call.injected = 'rate-limit';
        return send(429, { errors: [{ message: 'Rate limit exceeded. Please try again later.' }] });
      }
    }

    // Request validation (HTTP 400, as GraphQL servers answer documents that cannot execute).
    if (typeof query !== 'string' || query.trim().length === 0) {
      return send(400, { errors: [{ message: 'GraphQL operations must contain a non-empty `query`.', extensions: { code: 'BAD_REQUEST' } }] });
    }
    if (variables !== undefined && variables !== null && !isPlainObject(variables)) {
      return send(400, { errors: [{ message: '`variables` must be an object', extensions: { code: 'BAD_REQUEST' } }] });
    }
    if (operationName !== undefined && operationName !== null && typeof operationName !== 'string') {
      return send(400, { errors: [{ message: '`operationName` must be a string', extensions: { code: 'BAD_REQUEST' } }] });
    }
    if (!document) {
      const e = errorJson(parseError as GraphQLError);
      return send(400, { errors: [{ ...e, extensions: { code: 'GRAPHQL_PARSE_FAILED' } }] });
    }
    const validationErrors = validate(schema, document);
    if (validationErrors.length > 0) {
      return send(400, { errors: validationErrors.map((e) => ({ ...errorJson(e), extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } })) });
    }
    if (!op) {
      const message = typeof operationName === 'string' ? `Unknown operation named "${operationName}".` : 'Must provide operation name if query contains multiple operations.';
      return send(400, { errors: [{ message, extensions: { code: 'BAD_REQUEST' } }] });
    }
    if (op.operation === 'subscription') {
      return send(400, { errors: [{ message: 'Subscriptions are not supported over HTTP POST', extensions: { code: 'BAD_REQUEST' } }] });
    }

    // Auth: Railway answers a missing or unknown token with HTTP 200 and a "Not Authorized" GraphQL error.
    if (auth.kind === 'none' || auth.kind === 'invalid') {
      return send(200, { data: null, errors: [{ message: 'Not Authorized' }] });
    }

    const result: ExecutionResult = await execute({
      schema,
      document,
      rootValue: op.operation === 'mutation' ? mutationRoot : queryRoot,
      contextValue: { auth } satisfies Ctx,
      variableValues: (variables as Record<string, unknown> | null | undefined) ?? undefined,
      operationName: typeof operationName === 'string' ? operationName : undefined,
      fieldResolver,
    });
    if (!('data' in result) || result.data === undefined) {
      // Variables that do not coerce: the operation never ran.
      return send(400, { errors: (result.errors ?? []).map((e) => ({ ...errorJson(e), extensions: { code: 'BAD_USER_INPUT' } })) });
    }
    if (fault && fault.options.afterExecute) {
      call.injected = 'fail';
      const r = faultResponse(fault);
      return send(r.status, r.body, r.headers);
    }
    const out: Record<string, unknown> = { data: result.data };
    if (result.errors && result.errors.length > 0) out['errors'] = result.errors.map(errorJson);
    return send(200, out);
  }

  function lowerKeys(h: Record<string, string>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
    return out;
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ message: `Emulator error: ${String(e)}` }] }));
      } else {
        res.destroy();
      }
    });
  });
  const port = await listen(server, '127.0.0.1');
  const url = `http://127.0.0.1:${port}/graphql/v2`;

  // --- snapshots for tests -----------------------------------------------------------------------------------

  const serviceSnapshot = (s: ServiceRec): ServiceSnapshot => ({
    id: s.id, name: s.name, projectId: s.projectId, createdAt: s.createdAt.toISOString(),
    deletedAt: s.deletedAt ? s.deletedAt.toISOString() : null, source: s.source ? { ...s.source } : null, branch: s.branch,
  });
  const deploymentSnapshot = (d: DeploymentRec): DeploymentSnapshot => ({
    id: d.id, serviceId: d.serviceId, environmentId: d.environmentId, status: d.status, history: d.history.map((h) => ({ ...h })),
    createdAt: d.createdAt.toISOString(), deploymentStopped: d.deploymentStopped, commitSha: d.commitSha,
    variables: { ...d.variables }, runs: describeBuild(d.build), port: d.port, pid: d.proc?.pid ?? null, running: d.proc !== null && !d.exited,
  });
  const defaultInstance = (serviceId: string, environmentId?: string): InstanceRec | undefined => {
    if (environmentId) return instances.get(instKey(serviceId, environmentId));
    return [...instances.values()].find((i) => i.serviceId === serviceId);
  };

  const emulator: RailwayEmulator = {
    url,
    port,
    accountToken,
    calls,
    counts(filter) {
      const out: Record<string, number> = {};
      for (const c of calls) {
        if (filter && !filter(c)) continue;
        for (const f of c.fieldNames) out[f] = (out[f] ?? 0) + 1;
      }
      return out;
    },
    operationCounts(filter) {
      const out: Record<string, number> = {};
      for (const c of calls) {
        if (filter && !filter(c)) continue;
        const name = c.operationName ?? '(anonymous)';
        out[name] = (out[name] ?? 0) + 1;
      }
      return out;
    },
    createProject(o = {}) {
      const now = new Date();
      const projectId = randomUUID();
      const env: EnvRec = { id: randomUUID(), name: 'production', projectId, createdAt: now, sharedVariables: {} };
      const token = randomUUID();
      const name = o.name ?? `emulated-project-${projects.size + 1}`;
      projects.set(projectId, { id: projectId, name, createdAt: now, environments: [env], token, tokenId: randomUUID() });
      projectTokens.set(token, { projectId, environmentId: env.id });
      return { projectId, environmentId: env.id, token, name };
    },
    services(o = {}) {
      return [...services.values()]
        .filter((s) => (o.includeDeleted || !s.deletedAt) && (!o.projectId || s.projectId === o.projectId))
        .map(serviceSnapshot);
    },
    domainsOf(serviceId) {
      return [...domains.values()].filter((d) => d.serviceId === serviceId).map((d) => ({
        id: d.id, domain: d.domain, serviceId: d.serviceId, environmentId: d.environmentId, targetPort: d.targetPort, suffix: null,
      }));
    },
    deploymentsOf(serviceId) {
      return [...deployments.values()].filter((d) => d.serviceId === serviceId)
        .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime()).map(deploymentSnapshot);
    },
    deployment(id) {
      const d = deployments.get(id);
      return d ? deploymentSnapshot(d) : undefined;
    },
    variablesOf(serviceId, environmentId) {
      return { ...(defaultInstance(serviceId, environmentId)?.variables ?? {}) };
    },
    limitsOf(serviceId, environmentId) {
      const l = defaultInstance(serviceId, environmentId)?.limits;
      return l ? { ...l } : null;
    },
    settingsOf(serviceId, environmentId) {
      const inst = defaultInstance(serviceId, environmentId);
      return inst ? { ...inst.settings } : null;
    },
    logsOf(deploymentId) {
      return [...(deployments.get(deploymentId)?.logs ?? [])];
    },
    async waitForDeployment(id, statuses, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const d = deployments.get(id);
        if (!d) throw new Error(`unknown deployment ${id}`);
        if (statuses ? statuses.includes(d.status) : !IN_PROGRESS.has(d.status)) return deploymentSnapshot(d);
        if (Date.now() > deadline) throw new Error(`deployment ${id} still ${d.status} after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    failNext(n, status, headers = {}, options = {}) {
      if (!Number.isInteger(n) || n < 0) throw new RangeError(`failNext count must be a non-negative integer, got ${n}`);
      if (!Number.isInteger(status) || status < 400 || status > 599) throw new RangeError(`failNext status must be 4xx/5xx, got ${status}`);
      if (n > 0) faults.push({ remaining: n, status, headers, options });
    },
    slowNext(n, ms) {
      if (!Number.isInteger(n) || n < 0 || !(ms >= 0)) throw new RangeError('slowNext takes a non-negative count and ms');
      if (n > 0) slows.push({ remaining: n, ms });
    },
    holdNext(field) {
      let arrive!: (call: CallRecord) => void;
      let release!: () => void;
      const arrived = new Promise<CallRecord>((resolve) => { arrive = resolve; });
      const released = new Promise<void>((resolve) => { release = resolve; });
      const hold: Hold = { field, arrive, released, release };
      holds.push(hold);
      allHolds.push(hold);
      return { arrived, release };
    },
    nextDeploymentEnds(status) {
      forcedEnds.push(status);
    },
    async crash(serviceId) {
      const inst = defaultInstance(serviceId);
      const d = inst ? activeDeploymentsOf(inst)[0] : undefined;
      if (!d) throw new Error(`service ${serviceId} has no running deployment`);
      if (d.proc && !d.exited) {
        killGroup(d.proc, 'SIGKILL');
        await d.exit;
      } else {
        d.deploymentStopped = true;
        setStatus(d, 'CRASHED');
      }
    },
    setDeployMs(ms) {
      if (!(ms >= 0)) throw new RangeError('deployMs must be >= 0');
      deployMs = ms;
    },
    clearFaults() {
      faults = [];
      slows = [];
      holds = [];
      forcedEnds = [];
    },
    resetCalls() {
      calls.length = 0;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const d of deployments.values()) d.approve?.();
      for (const h of allHolds) h.release();
      await Promise.all([...deployments.values()].map((d) => stopProcess(d, 1000)));
      await Promise.all([...domains.values()].map((d) => closeServer(d.server)));
      domains.clear();
      await closeServer(server);
      process.off('exit', onProcessExit);
    },
  };
  return emulator;
}
