/**
 * Wires the control plane together: database, queues, providers, and the web app and/or the workers.
 * `npm start` runs both in one process; `npm run web` and `npm run worker` run one each.
 */
import type { Server } from 'node:http';
import type { Worker } from 'bullmq';
import type { Config } from './config.ts';
import { migrate } from './db/migrate.ts';
import { PgNeonPlacements } from './db/neonPlacements.ts';
import { pgGateways } from './db/gateways.ts';
import { LockConnections } from './db/instanceLocks.ts';
import { createPool, ensureDatabase } from './db/pool.ts';
import type { JobContext } from './jobs/context.ts';
import { configureLogs, logger } from '../core/logger.ts';
import { Alerter } from './providers/alerter.ts';
import { LocalComputeProvider } from './providers/compute/local.ts';
import { LocalDatabaseProvider } from './providers/database/local.ts';
import { NeonDatabaseProvider } from './providers/database/neon.ts';
import { RailwayComputeProvider } from './providers/compute/railway.ts';
import { DockerComputeProvider } from './providers/compute/docker.ts';
import type { ComputeProvider, DatabaseProvider } from './providers/types.ts';
import { createMailer } from './providers/mailer.ts';
import { StripeGateway } from './providers/stripe.ts';
import { createArchiveStore } from './providers/archiveStores/create.ts';
import { Queues, redisConnection } from './queues/connection.ts';
import { RedisRateLimitPeriods } from './queues/rateLimits.ts';
import { CounterStore } from './metrics/counterStore.ts';
import { MetricsFlusher } from './metrics/flusher.ts';
import { metrics } from './metrics/recorder.ts';
import { Redis } from 'ioredis';
import { BullJobQueue } from './queues/jobQueue.ts';
import { SecretStore } from './secrets.ts';
import { createWebApp } from './web/app.ts';
import { BULL_BOARD_PATH } from './web/bullBoard.ts';
import { closeWorkers, startWorkers } from './worker.ts';
import { sweepIntervalMs, sweepSealedKeys } from './jobs/keySweep.ts';
import { bootstrapFleetSettings } from './fleet/generations.ts';
import path from 'node:path';

const log = logger('control-plane');

export interface ControlPlane {
  /** What the workers give job handlers, and the queues themselves (for reading jobs). */
  ctx: JobContext & { queues: Queues };
  /** The web server's address, when this process serves the web app. */
  url?: string;
  close(): Promise<void>;
}

export async function startControlPlane(config: Config, roles: { web: boolean; worker: boolean }): Promise<ControlPlane> {
  configureLogs({ level: config.logLevel, format: config.logFormat });
  await ensureDatabase(config.databaseUrl);
  // Sized to the work that may query at once: a worker's slots (several queues share them, most of a step's time is
  // spent with providers), at least 10 for the web alone, at most 50 connections a process.
  const db = createPool(config.databaseUrl, roles.worker ? Math.min(50, Math.max(10, config.worker.concurrency * 2)) : 10);
  const applied = await migrate(db);
  if (applied.length) log.info('migrations applied', { migrations: applied.join(',') });

  const secrets = new SecretStore(db, config.secretsKey);
  // Each job for a customer holds their lock on a connection of this pool while it works: one per worker slot that
  // may hold one (steps, lifecycle and fleet jobs), a few for the web.
  const lockConnections = new LockConnections(config.databaseUrl, roles.worker ? Math.min(50, Math.max(5, config.worker.concurrency * 2)) : 5);
  const queues = new Queues(redisConnection(config.redisUrl), config.queuePrefix, config.worker.attempts);
  const mailer = createMailer(config.mail);
  // Metrics counters and rate-limit periods: small commands that should fail, not wait, when Redis is away.
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 2 });
  redis.on('error', () => undefined); // a lost connection is retried; what it costs shows where a command fails
  const counters = new CounterStore(redis, config.queuePrefix);
  const rateLimitPeriods = new RedisRateLimitPeriods(redis, config.queuePrefix);
  const flusher = new MetricsFlusher(metrics, counters, rateLimitPeriods);
  flusher.start();
  const local = new LocalComputeProvider(db, secrets, {
    command: config.runtime.command,
    args: config.runtime.args,
    logDir: path.join(config.varDir, 'logs'),
    workspacesDir: config.runtime.workspacesDir,
    releasesDir: config.fleet.releasesDir,
  });
  const compute: ComputeProvider = config.railway
    ? new RailwayComputeProvider(config.railway)
    : config.docker
      ? new DockerComputeProvider(db, secrets, config.docker)
      : local;
  // Customers' databases on a server of their own when one is given (one the runtimes' containers can reach).
  const customerServer = config.customerDatabaseUrl === config.databaseUrl ? db : createPool(config.customerDatabaseUrl, 5);
  const localDatabase = new LocalDatabaseProvider(customerServer, config.customerDatabaseUrl, secrets);
  const database: DatabaseProvider = config.neon ? new NeonDatabaseProvider(config.neon, new PgNeonPlacements(db)) : localDatabase;
  if (roles.worker && database === localDatabase) await localDatabase.init({ production: config.production });
  const stripe = new StripeGateway(config.stripe.secretKey, config.stripe.apiBase);
  const ctx: JobContext & { queues: Queues } = {
    config,
    ...pgGateways(db, secrets, lockConnections),
    secrets,
    queues,
    jobs: new BullJobQueue(queues),
    compute,
    database,
    mailer,
    alerter: new Alerter(config.alerts.slackWebhookUrl, config.alerts.email, mailer),
    stripe,
    archives: createArchiveStore(config),
    rateLimitPeriods,
  };

  let workers: Worker[] = [];
  let keySweep: NodeJS.Timeout | undefined;
  if (roles.worker) {
    // Local runtimes without a live supervisor (a restart of the control plane, a worker that died) are taken over.
    if (compute === local) await local.startSupervising();
    if (compute instanceof DockerComputeProvider) await compute.init();
    // The configuration's fleet settings become current; a fleet running others is told of once, in the log.
    await bootstrapFleetSettings(ctx);
    workers = startWorkers(ctx);
    await ctx.jobs.scheduleFleet({ monitor: config.monitor.intervalMs, reconcile: config.reconcile.intervalMs });
    await ctx.jobs.scheduleBackups(config.backups.schedule);
    // Sealed API keys that are done with (revealed, or past their window) are deleted here, by any worker, and so
    // are sign-in links and account sessions a day past their end.
    const windowMs = config.welcome.keyRevealWindowMs;
    keySweep = setInterval(() => {
      sweepSealedKeys(ctx.keyHandovers, windowMs).catch((err: Error) => log.warn('sealed key sweep failed', { error: err.message }));
      ctx.accountAccess.forgetExpired().catch((err: Error) => log.warn('account access sweep failed', { error: err.message }));
    }, sweepIntervalMs(windowMs));
    keySweep.unref();
  }

  let server: Server | undefined;
  let url: string | undefined;
  if (roles.web) {
    const app = createWebApp({ ...ctx, stripe, db, metrics: { counters, flush: () => flusher.flush() } });
    server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(config.port, () => resolve(s)).once('error', reject);
    });
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    url = `http://127.0.0.1:${port}`;
    log.info('web listening', { url, bullBoard: `${config.publicUrl}${BULL_BOARD_PATH}`, stripeWebhook: `${config.publicUrl}/webhooks/stripe` });
  }
  for (const secret of config.generatedSecrets) log.warn(`development secret: ${secret}`);

  return {
    ctx,
    url,
    async close() {
      clearInterval(keySweep);
      if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
      await closeWorkers(workers);
      await flusher.close(); // after the workers: their last counts go too
      await redis.quit().catch(() => redis.disconnect());
      await compute.close();
      await database.close();
      await queues.close();
      mailer.close();
      await lockConnections.close();
      if (customerServer !== db) await customerServer.end();
      await db.end();
    },
  };
}
