/**
 * A whole control plane for end-to-end tests: its own control-plane database and queue prefix on the real local
 * Postgres and Redis, the Stripe API emulator, a real SMTP server and a Slack receiver. Everything it makes
 * (customer databases and roles, runtime processes, Redis keys) is removed by close().
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Job } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { loadConfig, type Config } from '../../src/config.ts';
import { startControlPlane, type ControlPlane } from '../../src/controlPlane.ts';
import { quoteIdent } from '../../core/postgres.ts';
import { DEFAULT_PRICE_IDS, type PlanName } from '../../core/plans.ts';
import { QUEUES, type QueueName } from '../../src/queues/catalogue.ts';
import { startSlackReceiver, type SlackReceiver } from '../emulators/slackReceiver.ts';
import { startSmtpCapture, type SmtpCapture } from '../emulators/smtpCapture.ts';
import { signedWebhook, startStripeEmulator, type StripeEmulator } from '../emulators/stripeEmulator.ts';
import { startAnthropicEmulator, type AnthropicEmulator } from '../emulators/anthropicEmulator.ts';
import { freePort } from '../../src/providers/compute/local.ts';
import {
  startRailwayEmulator,
  type BuildOutput,
  type RailwayEmulator,
  type RailwayEmulatorOptions,
  type RuntimeSpec,
} from '../emulators/railwayEmulator.ts';
import { startNeonEmulator, type NeonEmulator, type NeonEmulatorOptions } from '../emulators/neonEmulator.ts';

export const ADMIN = { user: 'operator', password: 'test-board-password', token: 'test-admin-token-0123456789' };
export const WEBHOOK_SECRET = 'whsec_test_secret_for_e2e';
const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432';
/** The repository the cloud harness builds customers' services from (CLAWDBOT_REPO): this one. */
export const RUNTIME_REPO = 'clawdbot/runtime';
/** A prebuilt runtime image a test may set as CLAWDBOT_IMAGE: what runtime/Dockerfile builds. */
export const RUNTIME_IMAGE = 'ghcr.io/clawdbot/runtime:test';

/** The command of a Dockerfile's last CMD instruction (exec form, or shell form run by /bin/sh -c). */
export function dockerfileCmd(dockerfile: string): string[] {
  // Instructions, with continued lines joined (so a HEALTHCHECK's own CMD stays part of the HEALTHCHECK).
  const instructions = dockerfile.replace(/\\\r?\n/g, ' ').split('\n').map((line) => line.trim());
  const cmd = instructions.filter((line) => /^CMD\s/i.test(line)).at(-1)?.replace(/^CMD\s+/i, '').trim();
  if (!cmd) return [];
  return cmd.startsWith('[') ? (JSON.parse(cmd) as string[]) : ['/bin/sh', '-c', cmd];
}

/** The runtime's entry point as its image runs it: compiled by `npm run build` (the tests run its source instead). */
const RUNTIME_IMAGE_CMD = ['node', 'dist/runtime/src/main.js'];

/**
 * What a build of one of this repository's Dockerfiles runs, read from its CMD: the runtime's entry point is spawned
 * for real (from its source, node being this node); anything else (the root Dockerfile's control plane) is never
 * started, as its own Redis and migrations have no place here: to the emulator it never answers the runtime's
 * healthcheck, which is what Railway would see.
 */
function whatRuns(dockerfile: string, runtime: RuntimeSpec): BuildOutput {
  const cmd = dockerfileCmd(readFileSync(path.resolve(dockerfile), 'utf8'));
  if (JSON.stringify(cmd) === JSON.stringify(RUNTIME_IMAGE_CMD)) return runtime;
  return { unhealthy: `${dockerfile}: ${cmd.join(' ') || 'no CMD'}` };
}

export interface InstanceView {
  instanceId: string;
  customerId: string;
  workspaceId: string;
  accessUrl: string | null;
  status: string;
  plan: string | null;
  failure: { step: string; reason: string } | null;
  steps: { name: string; state: string; startedAt: string | null; finishedAt: string | null }[];
}

export interface Harness {
  plane: ControlPlane;
  config: Config;
  /** The environment the configuration was read from (for starting worker processes alike). */
  env: Record<string, string>;
  url: string;
  stripe: StripeEmulator;
  smtp: SmtpCapture;
  slack: SlackReceiver;
  /** Set with the cloud option. */
  railway?: RailwayEmulator;
  neon?: NeonEmulator;
  /** The Anthropic API that deployed runtimes talk to. */
  model: AnthropicEmulator;
  redis: Redis;
  /** A connection to the control-plane database, for checking effects where they land. */
  db: pg.Pool;
  postWebhook(body: string, headers?: Record<string, string>): Promise<Response>;
  /** A signed delivery of an event, exactly as Stripe signs it. */
  deliver(event: object): Promise<Response>;
  /** A paying customer: Stripe state in the emulator, and the checkout.session.completed event for it. */
  checkout(options: { email: string; name?: string; plan?: PlanName; price?: string }): {
    customerId: string;
    subscriptionId: string;
    /** The Checkout Session's id (what Stripe puts in the success_url). */
    sessionId: string;
    event: object;
  };
  admin(pathname: string, init?: RequestInit): Promise<Response>;
  waitForStatus(customerRef: string, statuses: string[], timeoutMs?: number): Promise<InstanceView>;
  /** The job once it has completed (its state polled, never a fixed sleep): what it did is then final. Fails if it failed. */
  completedJob(queue: QueueName, jobId: string, timeoutMs?: number): Promise<Job>;
  /**
   * Every job of the instance (any queue) named one of `names`, once all have completed (fails if one failed). Wait
   * first for whatever adds them (say, the Stripe event's job), so that none is still to come.
   */
  completedJobsOf(instanceId: string, names: string[], timeoutMs?: number): Promise<Job[]>;
  /**
   * Stops the control plane and starts it again on the same database, queues and port, its environment changed by
   * `env` (an operator's restart with new configuration); `plane` and `config` are then the new one's.
   */
  restart(env?: Record<string, string>): Promise<void>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Run no workers in this process (a test starts worker processes itself with `env`). */
  webOnly?: boolean;
  /** Railway and Neon through their emulators instead of the local providers. */
  cloud?: { railway?: RailwayEmulatorOptions; neon?: NeonEmulatorOptions; neonProjects?: number };
  /** Where the model emulator listens (loopback unless given): runtimes in containers reach it through the host gateway. */
  modelListen?: string;
}

export async function startHarness(env: Record<string, string> = {}, options: HarnessOptions = {}): Promise<Harness> {
  const id = randomBytes(5).toString('hex');
  let railway: RailwayEmulator | undefined;
  let neon: NeonEmulator | undefined;
  const cloudEnv: Record<string, string> = {};
  if (options.cloud) {
    // The emulated Railway runs what Railway would build: this repository's Dockerfiles (by the path the service is
    // configured with) and the prebuilt image. Only the runtime is really started.
    const runtime: RuntimeSpec = { command: process.execPath, args: ['--import', 'tsx', 'runtime/src/main.ts'], env: { PATH: process.env.PATH ?? '' }, cwd: process.cwd() };
    railway = await startRailwayEmulator({
      deployMs: 300,
      builds: {
        repos: { [RUNTIME_REPO]: { Dockerfile: whatRuns('Dockerfile', runtime), 'runtime/Dockerfile': whatRuns('runtime/Dockerfile', runtime) } },
        images: { [RUNTIME_IMAGE]: whatRuns('runtime/Dockerfile', runtime) },
      },
      ...options.cloud.railway,
    });
    neon = await startNeonEmulator({ prefix: `neon_${id}`, ...options.cloud.neon });
    const project = railway.createProject();
    const neonProjects = await Promise.all(Array.from({ length: options.cloud.neonProjects ?? 1 }, () => neon!.createProject()));
    Object.assign(cloudEnv, {
      COMPUTE_PROVIDER: 'railway',
      RAILWAY_API_URL: railway.url,
      RAILWAY_PROJECT_TOKEN: project.token,
      RAILWAY_PROJECT_ID: project.projectId,
      RAILWAY_ENVIRONMENT_ID: project.environmentId,
      RAILWAY_DOMAIN_SCHEME: 'http',
      CLAWDBOT_REPO: RUNTIME_REPO,
      DATABASE_PROVIDER: 'neon',
      NEON_API_URL: neon.url,
      NEON_API_KEY: neon.apiKey,
      NEON_PROJECT_IDS: neonProjects.map((p) => p.projectId).join(','),
    });
  }
  const databaseName = `cp_test_${id}`;
  const varDir = await mkdtemp(path.join(tmpdir(), 'clawdbot-e2e-'));
  const [stripe, smtp, slack, model, port] = await Promise.all([
    startStripeEmulator(),
    startSmtpCapture(),
    startSlackReceiver(),
    startAnthropicEmulator({ listen: options.modelListen }),
    freePort(),
  ]);
  const fullEnv: Record<string, string> = {
    PORT: String(port),
    RUNTIME_CALLBACK_URL: `http://127.0.0.1:${port}`,
    ANTHROPIC_API_KEY: model.apiKey,
    ANTHROPIC_BASE_URL: model.url,
    DATABASE_URL: `${PG_ADMIN}/${databaseName}`,
    REDIS_URL: 'redis://127.0.0.1:6379',
    QUEUE_PREFIX: `{test-${id}}`,
    VAR_DIR: varDir,
    SECRETS_KEY: randomBytes(32).toString('base64'),
    STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    STRIPE_SECRET_KEY: stripe.apiKey,
    STRIPE_API_BASE: stripe.url,
    SMTP_URL: smtp.url,
    MAIL_FROM: 'Clawdbot <hello@clawdbot.test>',
    SLACK_WEBHOOK_URL: slack.url,
    ALERT_EMAIL: 'ops@clawdbot.test',
    ADMIN_USER: ADMIN.user,
    ADMIN_PASSWORD: ADMIN.password,
    ADMIN_TOKEN: ADMIN.token,
    PUBLIC_URL: 'http://control.clawdbot.test',
    JOB_BACKOFF: '50ms',
    JOB_ATTEMPTS: '3',
    HEALTH_CHECK_TIMEOUT: '30s',
    HEALTH_CHECK_INTERVAL: '100ms',
    HEALTH_CHECK_MAX_INTERVAL: '500ms',
    // The fleet jobs run only in the tests about them (their first run would add provider calls to every test).
    MONITOR_INTERVAL: '0',
    RECONCILE_INTERVAL: '0',
    BACKUP_SCHEDULE: 'off',
    // Warnings and errors only, so the test report stays readable (a test that reads the logs sets its own level).
    LOG_LEVEL: 'warn',
    ...cloudEnv,
    ...env,
  };
  let config = loadConfig(fullEnv, process.cwd());
  let plane = await startControlPlane(config, { web: true, worker: !options.webOnly });
  const url = plane.url!;
  const db = new pg.Pool({ connectionString: config.databaseUrl, max: 3 });
  db.on('error', () => undefined); // an idle connection ended by close()'s DROP DATABASE
  const redis = new Redis(config.redisUrl);

  const postWebhook = (body: string, headers: Record<string, string> = {}) =>
    fetch(`${url}/webhooks/stripe`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const admin = (pathname: string, init: RequestInit = {}) =>
    fetch(`${url}${pathname}`, {
      ...init,
      headers: { authorization: `Bearer ${ADMIN.token}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) },
    });

  return {
    get plane() {
      return plane;
    },
    get config() {
      return config;
    },
    env: fullEnv,
    url,
    stripe,
    smtp,
    slack,
    railway,
    neon,
    model,
    redis,
    db,
    postWebhook,
    deliver(event) {
      const payload = JSON.stringify(event);
      return postWebhook(payload, { 'stripe-signature': signedWebhook(payload, WEBHOOK_SECRET) });
    },
    checkout({ email, name, plan = 'starter', price }) {
      const customer = stripe.createCustomer({ email, name });
      const subscription = stripe.createSubscription({ customer: customer.id, price: price ?? DEFAULT_PRICE_IDS[plan] });
      const session = stripe.createCheckoutSession({ customer: customer.id, subscription: subscription.id, email, name });
      return { customerId: customer.id, subscriptionId: subscription.id, sessionId: session.id, event: stripe.event('checkout.session.completed', session) };
    },
    admin,
    async waitForStatus(customerRef, statuses, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      let last: unknown = 'no answer';
      while (Date.now() < deadline) {
        const response = await admin(`/api/customers/${customerRef}/instance`);
        if (response.status === 200) {
          const view = (await response.json()) as InstanceView;
          if (statuses.includes(view.status)) return view;
          last = view;
        } else {
          last = `HTTP ${response.status}`;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`instance of ${customerRef} did not reach ${statuses.join('/')} in ${timeoutMs} ms: ${JSON.stringify(last)}`);
    },
    async completedJob(queue, id, timeoutMs = 30_000) {
      const find = async () => {
        const job = await plane.ctx.queues.get(queue).getJob(id);
        return job ? [job] : [];
      };
      return (await completed(find, `job ${queue}/${id}`, timeoutMs, true))[0]!;
    },
    completedJobsOf(instanceId, names, timeoutMs = 30_000) {
      const jobsOf = async () =>
        (await Promise.all(Object.values(QUEUES).map((q) => plane.ctx.queues.get(q).getJobs())))
          .flat()
          .filter((j) => j && names.includes(j.name) && (j.data as { instanceId?: string }).instanceId === instanceId);
      return completed(jobsOf, `jobs ${names.join(', ')} of instance ${instanceId}`, timeoutMs, false);
    },
    async restart(changes = {}) {
      await plane.close();
      Object.assign(fullEnv, changes);
      config = loadConfig(fullEnv, process.cwd());
      plane = await startControlPlane(config, { web: true, worker: !options.webOnly });
    },
    async close() {
      // Local customer databases are dropped here; Neon branches belong to the Neon emulator, which drops its own.
      const { rows } = await db.query<{ database_name: string | null; database_role: string | null }>(
        `SELECT database_name, database_role FROM instances WHERE database_provider = 'local'`,
      );
      await plane.close();
      await db.end();
      const admin = new pg.Client({ connectionString: `${PG_ADMIN}/postgres` });
      await admin.connect();
      for (const row of rows) {
        if (row.database_name) await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(row.database_name)} WITH (FORCE)`);
        if (row.database_role) await admin.query(`DROP ROLE IF EXISTS ${quoteIdent(row.database_role)}`);
      }
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(databaseName)} WITH (FORCE)`);
      await admin.end();
      await deleteKeys(redis, `${config.queuePrefix}:*`);
      redis.disconnect();
      await Promise.all([stripe.close(), smtp.close(), slack.close(), model.close(), railway?.close(), neon?.close()]);
      await rm(varDir, { recursive: true, force: true });
    },
  };
}

export { waitUntil } from './wait.ts';

/** Polls the jobs `find` returns until all have completed (and, if `mustExist`, there is one); fails if one failed. */
async function completed(find: () => Promise<Job[]>, what: string, timeoutMs: number, mustExist: boolean): Promise<Job[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const jobs = await find();
    const states = await Promise.all(jobs.map((j) => j.getState()));
    const failed = jobs.find((_, i) => states[i] === 'failed');
    if (failed) throw new Error(`${what}: ${failed.id} failed: ${failed.failedReason}`);
    if ((jobs.length > 0 || !mustExist) && states.every((s) => s === 'completed')) return jobs;
    if (Date.now() > deadline) throw new Error(`${what} not completed after ${timeoutMs} ms: ${states.join(', ') || 'none yet'}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function deleteKeys(redis: Redis, pattern: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
    if (keys.length) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}

/** Every key under a prefix with its whole value as text (strings, hashes, lists, sets, sorted sets, streams). */
export async function dumpKeys(redis: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
    for (const key of keys) {
      const type = await redis.type(key);
      const value =
        type === 'string' ? await redis.get(key)
        : type === 'hash' ? await redis.hgetall(key)
        : type === 'list' ? await redis.lrange(key, 0, -1)
        : type === 'set' ? await redis.smembers(key)
        : type === 'zset' ? await redis.zrange(key, 0, -1, 'WITHSCORES')
        : type === 'stream' ? await redis.xrange(key, '-', '+')
        : null;
      out.push(`${key} ${JSON.stringify(value)}`);
    }
    cursor = next;
  } while (cursor !== '0');
  return out;
}
