/**
 * The one place that reads the environment. Every variable is validated at start, and every missing or invalid
 * one is named in a single error. Outside production, secrets that are not given are generated once under
 * `var/` (and the start-up log says so); production refuses to start without them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_PRICE_IDS, type PlanName } from '../core/plans.ts';
import { defaultLogFormat, LOG_FORMATS, LOG_LEVELS, logFormatProblem, type LogFormat, type LogLevel } from '../core/logger.ts';
import { parseDuration, parseRate, type RateLimit } from '../core/durations.ts';
import { isCronExpression } from './operations/backupPolicy.ts';
import type { DockerComputeOptions } from './providers/compute/docker.ts';


export interface Config {
  production: boolean;
  port: number;
  publicUrl: string;
  redisUrl: string;
  databaseUrl: string;
  queuePrefix: string;
  varDir: string;
  stripe: { webhookSecret: string; secretKey: string | null; apiBase: string | null; priceIds: Record<PlanName, string> };
  mail: { smtpUrl: string | null; from: string; outboxDir: string };
  alerts: { slackWebhookUrl: string | null; email: string | null };
  /** Operators' credentials; failed authentications from one address past authFailureLimit a minute answer 429. */
  admin: {
    user: string;
    password: string;
    token: string;
    authFailureLimit: number;
    /** Bull Board's read-only login (ADMIN_VIEWER_USER and ADMIN_VIEWER_PASSWORD), or null. */
    viewer: { user: string; password: string } | null;
  };
  computeProvider: 'local' | 'railway' | 'docker';
  databaseProvider: 'local' | 'neon';
  /** Set when COMPUTE_PROVIDER=railway. */
  railway: RailwayConfig | null;
  /** Set when COMPUTE_PROVIDER=docker. */
  docker: DockerConfig | null;
  /** Set when DATABASE_PROVIDER=neon. */
  neon: NeonConfig | null;
  /**
   * The PostgreSQL server the local database provider makes customers' databases on (CUSTOMER_DATABASE_URL, a
   * superuser's URL): the control plane's own server unless given. With containers it is one they can reach.
   */
  customerDatabaseUrl: string;
  secretsKey: Buffer;
  worker: { concurrency: number; attempts: number; backoffMs: number };
  /** Global per-provider job rates (all workers together), or null for no limit. */
  rateLimits: { compute: RateLimit | null; database: RateLimit | null };
  logLevel: LogLevel;
  /** JSON lines, or pretty lines in development (pino-pretty). */
  logFormat: LogFormat;
  healthCheck: { timeoutMs: number; initialDelayMs: number; maxDelayMs: number };
  /**
   * The health monitor (every active instance, each interval): consecutive failures before a restart, restarts
   * within an hour before a crash loop stops them.
   */
  monitor: { intervalMs: number; failures: number; maxRestarts: number; concurrency: number; probeTimeoutMs: number; startGraceMs: number };
  /**
   * The reconciler: how often it compares the providers with the control plane, how long an orphan is left alone.
   * An interval of 0 turns that fleet job off (as for the monitor).
   */
  reconcile: { intervalMs: number; orphanGraceMs: number };
  /** How long a provider may answer 429 without end before one alert says so. */
  rateLimitAlertAfterMs: number;
  /** A bearer token for GET /metrics besides ADMIN_TOKEN (a scraper need not hold the admin token), or null. */
  metricsToken: string | null;
  deployTimeoutMs: number;
  /** How long create-branch waits for the database provider's operations. */
  databaseReadyTimeoutMs: number;
  /** After cancellation: when the customer's data is archived and its resources deleted, and when all is purged. */
  lifecycle: { archiveAfterMs: number; purgeAfterMs: number; archiveDir: string; paymentGraceMs: number };
  runtime: {
    command: string;
    args: string[];
    workspacesDir: string;
    /** Where runtimes reach the control plane (usage notices); PUBLIC_URL unless set. */
    callbackUrl: string;
    anthropicApiKey: string | null;
    anthropicBaseUrl: string | null;
    anthropicModel: string | null;
    /**
     * The platform's OAuth apps and the providers' endpoints for the customers' connections (Gmail, Calendar,
     * GitHub), handed to every runtime as they are set here: the variables set, by name.
     */
    connections: Record<string, string>;
  };
  /**
   * The welcome page: how long after the welcome email the unrevealed API key stays sealed for the page to show once,
   * and whether the email carries the key itself (else only a link to the page).
   */
  welcome: { keyRevealWindowMs: number; keyInEmail: boolean };
  /** Secrets that were generated for development, to mention at start (never their values). */
  generatedSecrets: string[];
  /** Fleet settings and rollouts (see FleetConfig). */
  fleet: FleetConfig;
  /** Backups of customers' databases, and where they and cancellation archives are stored. */
  backups: BackupConfig;
}

/**
 * Fleet settings every runtime shares besides the model's (PROMPT_TOKEN_BUDGET, MAX_OUTPUT_TOKENS: null leaves the
 * runtime's default), where the local provider finds runtime versions, and how long a rollout waits for an instance
 * to report healthy on what it was given.
 */
export interface FleetConfig {
  promptTokenBudget: number | null;
  maxOutputTokens: number | null;
  /** RUNTIME_RELEASES_DIR: version V runs <dir>/<V>/main.ts (or main.js) locally; null: only the built-in runtime. */
  releasesDir: string | null;
  rolloutHealthTimeoutMs: number;
}

// Backups (issue 13): their schedule, and the S3-compatible store archives and backups go to when it is set.
export interface BackupConfig {
  /** BACKUP_SCHEDULE, a cron expression (5 fields, or 6 with seconds); null when off. */
  schedule: string | null;
  /** Scheduled backups start spread over this window after the sweep (a fixed offset per instance). */
  spreadMs: number;
  /** The S3-compatible store (BACKUP_S3_BUCKET set), or null for the local directory (ARCHIVE_DIR). */
  s3: { bucket: string; region: string; endpoint: string | null } | null;
}

function backupConfig(r: Reader): BackupConfig {
  const scheduleText = r.string('BACKUP_SCHEDULE', '0 3 * * *');
  const off = scheduleText === 'off';
  if (!off && !isCronExpression(scheduleText)) {
    r.problems.push(`BACKUP_SCHEDULE must be a cron expression such as "0 3 * * *" (5 fields, or 6 with seconds), or off (got "${scheduleText}")`);
  }
  const bucket = r.optional('BACKUP_S3_BUCKET');
  if (bucket && !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) r.problems.push(`BACKUP_S3_BUCKET must be a bucket name (got "${bucket}")`);
  const endpoint = r.url('BACKUP_S3_ENDPOINT', null, ['http:', 'https:']);
  const region = r.string('BACKUP_S3_REGION', 'us-east-1');
  if (!bucket && (r.optional('BACKUP_S3_ENDPOINT') || r.optional('BACKUP_S3_REGION'))) r.problems.push('BACKUP_S3_ENDPOINT and BACKUP_S3_REGION need BACKUP_S3_BUCKET');
  return {
    schedule: off ? null : scheduleText,
    spreadMs: r.duration('BACKUP_SPREAD', 3_600_000),
    s3: bucket ? { bucket, region, endpoint } : null,
  };
}

export interface RailwayConfig {
  apiUrl: string;
  /** An account or workspace token (Authorization: Bearer) or a project token (Project-Access-Token). */
  auth: { kind: 'bearer' | 'project'; token: string };
  projectId: string;
  environmentId: string;
  /**
   * What each customer's service runs: a prebuilt runtime image (CLAWDBOT_IMAGE, pulled and started, no build), or
   * the runtime built from its GitHub repository (CLAWDBOT_REPO, owner/name) with runtime/Dockerfile.
   */
  source: { image: string } | { repo: string };
  /** Railway serves public domains over https; tests against the emulator use http. */
  domainScheme: 'https' | 'http';
  /** The port the runtime listens on inside the service. */
  runtimePort: number;
}

/** COMPUTE_PROVIDER=docker: each customer's runtime in a hardened container (src/providers/compute/docker.ts). */
export type DockerConfig = DockerComputeOptions;

export interface NeonConfig {
  apiUrl: string;
  apiKey: string;
  /** Each new customer is placed in the one of these projects with the most room (branchLimit minus branches). */
  projectIds: string[];
  /** Branches a project may hold, the default branch included (Neon's paid plans: 5,000 per project). */
  branchLimit: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

class Reader {
  readonly problems: string[] = [];
  readonly generated: string[] = [];
  constructor(
    private readonly env: Env,
    private readonly production: boolean,
    private readonly varDir: string,
  ) {}

  raw(name: string): string | undefined {
    const value = this.env[name]?.trim();
    return value ? value : undefined;
  }

  string(name: string, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  optional(name: string): string | null {
    return this.raw(name) ?? null;
  }

  int(name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      this.problems.push(`${name} must be an integer between ${min} and ${max} (got "${value}")`);
      return fallback;
    }
    return n;
  }

  /** A duration in milliseconds, written as a number of ms or with a unit: 500ms, 30s, 5m, 2h, 7d. */
  duration(name: string, fallbackMs: number): number {
    const value = this.raw(name);
    if (value === undefined) return fallbackMs;
    const ms = parseDuration(value);
    if (ms === undefined) {
      this.problems.push(`${name} must be a duration such as 500ms, 30s, 5m, 2h or 7d (got "${value}")`);
      return fallbackMs;
    }
    return ms;
  }

  url(name: string, fallback: string | null, protocols: string[]): string | null {
    const value = this.raw(name) ?? fallback;
    if (value === null) return null;
    try {
      const parsed = new URL(value);
      if (!protocols.includes(parsed.protocol)) throw new Error('protocol');
      return value.replace(/\/+$/, '');
    } catch {
      this.problems.push(`${name} must be a ${protocols.join(' or ')} URL (got "${redactUrl(value)}")`);
      return fallback;
    }
  }

  /** true or false (also 1/0, yes/no). */
  bool(name: string, fallback: boolean): boolean {
    const value = this.raw(name)?.toLowerCase();
    if (value === undefined) return fallback;
    if (['true', '1', 'yes'].includes(value)) return true;
    if (['false', '0', 'no'].includes(value)) return false;
    this.problems.push(`${name} must be true or false (got "${value}")`);
    return fallback;
  }

  oneOf<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
    const value = this.raw(name) ?? fallback;
    if (!(allowed as readonly string[]).includes(value)) {
      this.problems.push(`${name} must be one of ${allowed.join(', ')} (got "${value}")`);
      return fallback;
    }
    return value as T;
  }

  /** A rate such as 10/s, 600/m or 1000/h, or null when unset. */
  rate(name: string): RateLimit | null {
    const value = this.raw(name);
    if (value === undefined) return null;
    const rate = parseRate(value);
    if (!rate) this.problems.push(`${name} must be a rate such as 10/s, 600/m or 1000/h (got "${value}")`);
    return rate ?? null;
  }

  /** A secret: required in production; elsewhere generated once and kept under var/. */
  secret(name: string, make: () => string): string {
    const value = this.raw(name);
    if (value !== undefined) return value;
    if (this.production) {
      this.problems.push(`${name} is required in production`);
      return '';
    }
    const file = path.join(this.varDir, 'dev-secrets', name);
    const kept = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
    if (kept) return kept;
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const made = make();
    writeFileSync(file, made + '\n', { mode: 0o600 });
    this.generated.push(`${name} (generated for development in ${file})`);
    return made;
  }
}

function railwayConfig(r: Reader): RailwayConfig {
  const token = r.optional('RAILWAY_TOKEN');
  const projectToken = r.optional('RAILWAY_PROJECT_TOKEN');
  if (!token && !projectToken) r.problems.push('RAILWAY_TOKEN or RAILWAY_PROJECT_TOKEN is required with COMPUTE_PROVIDER=railway');
  const required = (name: string) => {
    const value = r.optional(name);
    if (!value) r.problems.push(`${name} is required with COMPUTE_PROVIDER=railway`);
    return value ?? '';
  };
  const image = r.optional('CLAWDBOT_IMAGE');
  const repo = r.optional('CLAWDBOT_REPO');
  if (!image && !repo) r.problems.push('CLAWDBOT_IMAGE or CLAWDBOT_REPO is required with COMPUTE_PROVIDER=railway');
  if (image && !isImageReference(image)) {
    r.problems.push(`CLAWDBOT_IMAGE must be an image reference such as ghcr.io/owner/runtime:1.4.0 or …@sha256:<digest> (got "${image}")`);
  }
  if (repo && !/^[\w.-]+\/[\w.-]+$/.test(repo)) r.problems.push(`CLAWDBOT_REPO must be owner/name (got "${repo}")`);
  return {
    apiUrl: r.url('RAILWAY_API_URL', 'https://backboard.railway.com/graphql/v2', ['http:', 'https:'])!,
    auth: token ? { kind: 'bearer', token } : { kind: 'project', token: projectToken ?? '' },
    projectId: required('RAILWAY_PROJECT_ID'),
    environmentId: required('RAILWAY_ENVIRONMENT_ID'),
    // The prebuilt image wins when both are set: no customer waits for a build.
    source: image ? { image } : { repo: repo ?? '' },
    domainScheme: r.oneOf('RAILWAY_DOMAIN_SCHEME', 'https', ['https', 'http'] as const),
    runtimePort: r.int('RUNTIME_PORT', 8080, 1, 65535),
  };
}

/**
 * How the local compute provider starts a runtime: its compiled entry beside this module when the control plane
 * runs compiled (dist/, as the image does), else its TypeScript source through tsx.
 */
const RUNTIME_ARGS = import.meta.url.endsWith('.js')
  ? [fileURLToPath(new URL('../runtime/src/main.js', import.meta.url))]
  : ['--import', 'tsx', fileURLToPath(new URL('../runtime/src/main.ts', import.meta.url))];

// A container image reference as Docker reads it: [registry[:port]/]path[:tag][@algorithm:hex]. The path is
// lowercase; a tag is up to 128 word characters, dots and dashes.
const REGISTRY = String.raw`(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)`;
const PATH_COMPONENT = String.raw`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`;
const IMAGE_REFERENCE = new RegExp(
  String.raw`^${REGISTRY}?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`,
);

export function isImageReference(value: string): boolean {
  return value.length <= 512 && IMAGE_REFERENCE.test(value);
}

function dockerConfig(r: Reader, databaseUrl: string, production: boolean): DockerConfig {
  const image = r.string('DOCKER_RUNTIME_IMAGE', 'clawdbot-runtime:latest');
  if (!isImageReference(image)) r.problems.push(`DOCKER_RUNTIME_IMAGE must be an image reference such as clawdbot-runtime:1.4.0 (got "${image}")`);
  const host = r.string('DOCKER_HOST', 'unix:///var/run/docker.sock');
  if (!/^(unix:\/\/\/|\/|tcp:\/\/|https?:\/\/)/.test(host)) r.problems.push(`DOCKER_HOST must be unix:///path, tcp://host:port or http(s)://host:port (got "${host}")`);
  const token = r.optional('DOCKER_PROXY_TOKEN');
  // An engine on the network is the socket proxy: whoever reaches it unasked could run containers.
  if (production && !token && !/^(unix:|\/)/.test(host)) r.problems.push('DOCKER_PROXY_TOKEN is required in production when DOCKER_HOST is a network address (the socket proxy)');
  const ports = /^(\d+)-(\d+)$/.exec(r.string('DOCKER_PORTS', '20000-29999'));
  const from = Number(ports?.[1]);
  const to = Number(ports?.[2]);
  if (!ports || from < 1 || to > 65535 || from > to) r.problems.push('DOCKER_PORTS must be a range of ports such as 20000-29999');
  const publishHost = r.string('DOCKER_PUBLISH_HOST', '127.0.0.1');
  // The control plane's database, told apart by where it is (never by its password): another control plane on the
  // same engine has another scope.
  const where = new URL(databaseUrl);
  return {
    host,
    token,
    image,
    network: r.string('DOCKER_NETWORK', 'clawdbot-runtimes'),
    publishHost,
    accessHost: r.string('DOCKER_ACCESS_HOST', publishHost === '0.0.0.0' ? '127.0.0.1' : publishHost),
    ports: ports ? { from, to } : { from: 20000, to: 29999 },
    hostAlias: r.string('DOCKER_HOST_ALIAS', 'host.docker.internal'),
    scope: r.string('DOCKER_SCOPE', createHash('sha256').update(`${where.hostname}:${where.port}${where.pathname}`).digest('hex').slice(0, 16)),
  };
}

function neonConfig(r: Reader): NeonConfig {
  const apiKey = r.optional('NEON_API_KEY');
  if (!apiKey) r.problems.push('NEON_API_KEY is required with DATABASE_PROVIDER=neon');
  const projectIds = (r.optional('NEON_PROJECT_IDS') ?? '').split(',').map((id) => id.trim()).filter(Boolean);
  if (projectIds.length === 0) r.problems.push('NEON_PROJECT_IDS (one or more project ids, comma-separated) is required with DATABASE_PROVIDER=neon');
  return {
    apiUrl: r.url('NEON_API_URL', 'https://console.neon.tech/api/v2', ['http:', 'https:'])!,
    apiKey: apiKey ?? '',
    projectIds,
    branchLimit: r.int('NEON_BRANCH_LIMIT', 5_000, 2, 1_000_000),
  };
}

/** The OAuth apps' credentials, each pair set together or not at all. */
export const CONNECTION_APP_VARIABLES = [
  ['GOOGLE_CLIENT_ID', 'GOOGLE_CLIENT_SECRET'],
  ['GITHUB_CLIENT_ID', 'GITHUB_CLIENT_SECRET'],
] as const;
/** The providers' endpoints; unset, the runtime uses the real ones. */
export const CONNECTION_URL_VARIABLES = [
  'GOOGLE_OAUTH_URL', 'GOOGLE_TOKEN_URL', 'GOOGLE_REVOKE_URL', 'GMAIL_API_URL', 'CALENDAR_API_URL', 'GITHUB_OAUTH_URL', 'GITHUB_API_URL',
] as const;

/** Bull Board's read-only login: both or neither, its password as long as an operator's must be, and not theirs. */
function viewerLogin(r: Reader): { user: string; password: string } | null {
  const user = r.optional('ADMIN_VIEWER_USER');
  const password = r.optional('ADMIN_VIEWER_PASSWORD');
  if (Boolean(user) !== Boolean(password)) r.problems.push('ADMIN_VIEWER_USER and ADMIN_VIEWER_PASSWORD go together: set both or neither');
  if (user && user === r.string('ADMIN_USER', 'admin')) r.problems.push('ADMIN_VIEWER_USER must differ from ADMIN_USER');
  if (password && password.length < 12) r.problems.push('ADMIN_VIEWER_PASSWORD must be at least 12 characters');
  return user && password ? { user, password } : null;
}

function connectionsConfig(r: Reader): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const [id, secret] of CONNECTION_APP_VARIABLES) {
    const clientId = r.optional(id);
    const clientSecret = r.optional(secret);
    if (Boolean(clientId) !== Boolean(clientSecret)) r.problems.push(`${id} and ${secret} go together: set both or neither`);
    else if (clientId && clientSecret) Object.assign(vars, { [id]: clientId, [secret]: clientSecret });
  }
  for (const name of CONNECTION_URL_VARIABLES) {
    const url = r.url(name, null, ['http:', 'https:']);
    if (url) vars[name] = url;
  }
  return vars;
}

function fleetConfig(r: Reader, cwd: string): FleetConfig {
  const optionalInt = (name: string, min: number, max: number): number | null => (r.raw(name) === undefined ? null : r.int(name, min, min, max));
  const releasesDir = r.optional('RUNTIME_RELEASES_DIR');
  if (releasesDir && !existsSync(path.resolve(cwd, releasesDir))) r.problems.push(`RUNTIME_RELEASES_DIR must be a directory that exists (got "${releasesDir}")`);
  return {
    promptTokenBudget: optionalInt('PROMPT_TOKEN_BUDGET', 500, 1_000_000),
    maxOutputTokens: optionalInt('MAX_OUTPUT_TOKENS', 1, 1_000_000),
    releasesDir: releasesDir ? path.resolve(cwd, releasesDir) : null,
    rolloutHealthTimeoutMs: r.duration('ROLLOUT_HEALTH_TIMEOUT', 2 * 60_000),
  };
}

/** A URL with any password replaced, safe for messages and logs. */
export function redactUrl(value: string): string {
  try {
    const url = new URL(value);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    // Unparseable: still never echo what could be credentials (anything before an '@').
    const masked = value.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^/\s]*@/i, '$1***@');
    return masked.length > 80 ? masked.slice(0, 80) + '…' : masked;
  }
}

export function loadConfig(env: Env = process.env, cwd = process.cwd()): Config {
  const production = env.NODE_ENV === 'production';
  const varDir = path.resolve(cwd, env.VAR_DIR?.trim() || 'var');
  const r = new Reader(env, production, varDir);

  const port = r.int('PORT', 3000, 0, 65535);
  const secretsKeyText = r.secret('SECRETS_KEY', () => randomBytes(32).toString('base64'));
  const secretsKey = Buffer.from(secretsKeyText, 'base64');
  if (secretsKeyText && secretsKey.length !== 32) r.problems.push('SECRETS_KEY must be the base64 of exactly 32 bytes');

  const webhookSecret = r.secret('STRIPE_WEBHOOK_SECRET', () => 'whsec_dev' + randomBytes(24).toString('hex'));
  const secretKey = production ? r.secret('STRIPE_SECRET_KEY', () => '') : r.optional('STRIPE_SECRET_KEY');

  const priceIds: Record<PlanName, string> = {
    starter: r.string('STRIPE_PRICE_STARTER', DEFAULT_PRICE_IDS.starter),
    pro: r.string('STRIPE_PRICE_PRO', DEFAULT_PRICE_IDS.pro),
    team: r.string('STRIPE_PRICE_TEAM', DEFAULT_PRICE_IDS.team),
  };
  if (new Set(Object.values(priceIds)).size !== 3) r.problems.push('STRIPE_PRICE_STARTER, _PRO and _TEAM must differ');

  const alertEmail = r.optional('ALERT_EMAIL');
  if (alertEmail && !/^[^@\s]+@[^@\s]+$/.test(alertEmail)) r.problems.push(`ALERT_EMAIL must be an email address`);

  const backoffMs = r.duration('JOB_BACKOFF', 1_000);
  const computeProvider = r.oneOf('COMPUTE_PROVIDER', 'local', ['local', 'railway', 'docker'] as const);
  const databaseUrl = r.url('DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/clawdbot', ['postgres:', 'postgresql:'])!;
  const databaseProvider = r.oneOf('DATABASE_PROVIDER', 'local', ['local', 'neon'] as const);
  const healthTimeoutMs = r.duration('HEALTH_CHECK_TIMEOUT', 120_000);

  const config: Config = {
    production,
    port,
    publicUrl: r.url('PUBLIC_URL', production ? null : `http://localhost:${port}`, ['http:', 'https:']) ?? '',
    redisUrl: r.url('REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:'])!,
    databaseUrl,
    queuePrefix: r.string('QUEUE_PREFIX', '{clawdbot}'),
    varDir,
    stripe: { webhookSecret, secretKey, apiBase: r.url('STRIPE_API_BASE', null, ['http:', 'https:']), priceIds },
    mail: {
      smtpUrl: r.url('SMTP_URL', null, ['smtp:', 'smtps:']),
      from: r.string('MAIL_FROM', 'Clawdbot <hello@clawdbot.local>'),
      outboxDir: path.join(varDir, 'outbox'),
    },
    alerts: { slackWebhookUrl: r.url('SLACK_WEBHOOK_URL', null, ['http:', 'https:']), email: alertEmail },
    admin: {
      user: r.string('ADMIN_USER', 'admin'),
      password: r.secret('ADMIN_PASSWORD', () => randomBytes(18).toString('base64url')),
      token: r.secret('ADMIN_TOKEN', () => randomBytes(32).toString('base64url')),
      authFailureLimit: r.int('AUTH_FAILURE_LIMIT', 20, 1, 1_000_000),
      viewer: viewerLogin(r),
    },
    computeProvider,
    databaseProvider,
    railway: computeProvider === 'railway' ? railwayConfig(r) : null,
    docker: computeProvider === 'docker' ? dockerConfig(r, databaseUrl, production) : null,
    neon: databaseProvider === 'neon' ? neonConfig(r) : null,
    customerDatabaseUrl: r.url('CUSTOMER_DATABASE_URL', databaseUrl, ['postgres:', 'postgresql:'])!,
    secretsKey,
    worker: {
      concurrency: r.int('WORKER_CONCURRENCY', 10, 1, 1000),
      attempts: r.int('JOB_ATTEMPTS', 5, 1, 100),
      backoffMs,
    },
    deployTimeoutMs: r.duration('DEPLOY_TIMEOUT', 20 * 60_000),
    databaseReadyTimeoutMs: r.duration('DATABASE_READY_TIMEOUT', 15 * 60_000),
    lifecycle: {
      archiveAfterMs: r.duration('ARCHIVE_AFTER', 7 * 86_400_000),
      purgeAfterMs: r.duration('PURGE_AFTER', 30 * 86_400_000),
      archiveDir: path.resolve(cwd, r.string('ARCHIVE_DIR', path.join(varDir, 'archives'))),
      paymentGraceMs: r.duration('PAYMENT_GRACE', 7 * 86_400_000),
    },
    monitor: {
      intervalMs: r.duration('MONITOR_INTERVAL', 60_000),
      failures: r.int('MONITOR_FAILURES', 3, 1, 100),
      maxRestarts: r.int('MONITOR_MAX_RESTARTS', 5, 0, 1000),
      concurrency: r.int('MONITOR_CONCURRENCY', 50, 1, 1000),
      probeTimeoutMs: r.duration('MONITOR_PROBE_TIMEOUT', 5_000),
      startGraceMs: r.duration('MONITOR_START_GRACE', 60_000),
    },
    reconcile: {
      intervalMs: r.duration('RECONCILE_INTERVAL', 10 * 60_000),
      orphanGraceMs: r.duration('ORPHAN_GRACE', 3_600_000),
    },
    welcome: { keyRevealWindowMs: r.duration('KEY_REVEAL_WINDOW', 3_600_000), keyInEmail: r.bool('KEY_IN_EMAIL', true) },
    rateLimitAlertAfterMs: r.duration('RATE_LIMIT_ALERT_AFTER', 15 * 60_000),
    metricsToken: r.optional('METRICS_TOKEN'),
    healthCheck: {
      timeoutMs: healthTimeoutMs,
      initialDelayMs: r.duration('HEALTH_CHECK_INTERVAL', 250),
      maxDelayMs: r.duration('HEALTH_CHECK_MAX_INTERVAL', 5_000),
    },
    runtime: {
      command: r.string('RUNTIME_COMMAND', process.execPath),
      // A path with spaces in it stays one argument; RUNTIME_ARGS, when given, is split on whitespace.
      args: r.raw('RUNTIME_ARGS')?.split(/\s+/) ?? RUNTIME_ARGS,
      workspacesDir: path.join(varDir, 'workspaces'),
      anthropicApiKey: r.optional('ANTHROPIC_API_KEY'),
      callbackUrl: '',
      anthropicBaseUrl: r.url('ANTHROPIC_BASE_URL', null, ['http:', 'https:']),
      anthropicModel: r.optional('ANTHROPIC_MODEL'),
      connections: connectionsConfig(r),
    },
    rateLimits: { compute: r.rate('COMPUTE_RATE_LIMIT'), database: r.rate('DATABASE_RATE_LIMIT') },
    logLevel: r.oneOf('LOG_LEVEL', 'info', LOG_LEVELS),
    logFormat: r.oneOf('LOG_FORMAT', defaultLogFormat(production), LOG_FORMATS),
    generatedSecrets: r.generated,
    fleet: fleetConfig(r, cwd),
    backups: backupConfig(r),
  };
  config.runtime.callbackUrl = r.url('RUNTIME_CALLBACK_URL', null, ['http:', 'https:']) ?? config.publicUrl;
  const logFormatIssue = logFormatProblem(config.logFormat, production);
  if (logFormatIssue) r.problems.push(logFormatIssue);
  if (config.lifecycle.purgeAfterMs <= config.lifecycle.archiveAfterMs) r.problems.push('PURGE_AFTER must be longer than ARCHIVE_AFTER');
  if (production) {
    // Alert links point operators at Bull Board: they must name the real host.
    if (!config.publicUrl) r.problems.push('PUBLIC_URL is required in production');
    // Without SMTP the welcome email (and its key) would only be written to a file on this machine.
    if (!config.mail.smtpUrl) r.problems.push('SMTP_URL is required in production');
    if (!config.alerts.slackWebhookUrl && !config.alerts.email) {
      r.problems.push('SLACK_WEBHOOK_URL or ALERT_EMAIL is required in production, so failures reach an operator');
    }
    for (const [name, value] of [['ADMIN_PASSWORD', config.admin.password], ['ADMIN_TOKEN', config.admin.token]] as const) {
      if (value && value.length < 16) r.problems.push(`${name} must be at least 16 characters in production`);
    }
  }

  for (const [name, ms] of [['MONITOR_INTERVAL', config.monitor.intervalMs], ['RECONCILE_INTERVAL', config.reconcile.intervalMs]] as const) {
    if (ms !== 0 && ms < 100) r.problems.push(`${name} must be 0 (off) or at least 100ms`);
  }
  if (config.metricsToken !== null && config.metricsToken.length < 16) r.problems.push('METRICS_TOKEN must be at least 16 characters');
  if (config.queuePrefix.includes(':')) r.problems.push('QUEUE_PREFIX must not contain ":"');
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}
