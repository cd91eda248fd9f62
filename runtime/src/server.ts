/**
 * The runtime's HTTP server: the Koa app (health and status here; chat, memory, skills and webhooks in their own
 * modules) and the start-up that wires it to the customer's database, the model and the background work.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import Router from '@koa/router';
import pg from 'pg';
import { jsonErrors, refuseUnreadablePaths } from '../../core/http/httpError.ts';
import { throttleFailedAuth } from '../../core/http/authFailureThrottle.ts';
import { requireApiKey } from './auth.ts';
import { chatRoutes, createChat, type Chat } from './chat.ts';
import type { RuntimeConfig } from './config.ts';
import { connectionCallbackRoutes, connectionRoutes } from './connections/routes.ts';
import type { RuntimeContext } from './context.ts';
import { startHeartbeat } from './heartbeat.ts';
import { exportRoutes } from './export.ts';
import { keyRoutes } from './keys.ts';
import { memoryRoutes } from './memory.ts';
import { createModel } from './model.ts';
import { rateLimitPerKey } from './rateLimit.ts';
import { applyRuntimeSchema } from '../../core/runtimeSchema.ts';
import { skillRoutes } from './skills.ts';
import { monthUsage } from './usage.ts';
import { inboundWebhookRoutes } from './webhooks/inbound.ts';
import { WebhookProcessor } from './webhooks/processor.ts';
import { webhookSourceRoutes } from './webhooks/sources.ts';
import { webhookStats } from './webhooks/stats.ts';
import { WorkspaceStore } from './workspace.ts';
import { logger } from '../../core/logger.ts';

const log = logger('runtime');

const HEALTH_TIMEOUT_MS = 2_000;
const POOL_MAX = 5;

export interface RuntimeDeps extends RuntimeContext {
  chat: Chat;
  /** Background processing of inbound webhooks; the inbound route hands each new delivery to it. */
  webhooks: WebhookProcessor;
  /** Epoch milliseconds the runtime started at; defaults to when the app is created. */
  startedAt?: number;
}

export interface RunningRuntime {
  url: string;
  close(): Promise<void>;
}

export function createRuntimeApp(deps: RuntimeDeps): Koa {
  const startedAt = deps.startedAt ?? Date.now();
  const app = new Koa();
  const router = new Router();
  const auth = requireApiKey(deps.db);
  const limited = rateLimitPerKey(deps.config.rateLimit);

  router.get('/health', async (ctx) => {
    const healthy = await answersWithin(deps.db.query('SELECT 1'), HEALTH_TIMEOUT_MS);
    ctx.set('Cache-Control', 'no-store');
    ctx.status = healthy ? 200 : 503;
    // What it runs, for the control plane's rollouts: they wait for the version and generation they gave it.
    ctx.body = { status: healthy ? 'ok' : 'unavailable', version: deps.config.version, settingsGeneration: deps.config.settingsGeneration ?? null };
  });

  router.get('/status', auth, limited, async (ctx) => {
    const { workspaceId, plan, version, messageLimit, features } = deps.config;
    ctx.body = {
      workspaceId,
      plan,
      features,
      version,
      uptimeSeconds: Math.floor((Date.now() - startedAt) / 1000),
      usage: { ...(await monthUsage(deps.db, new Date())), messageLimit },
      webhooks: await webhookStats(deps.db),
    };
  });

  // The customer's API: every route behind the key and its rate limit.
  const api = new Router();
  api.use(auth, limited);
  for (const routes of [chatRoutes(deps), memoryRoutes(deps), skillRoutes(deps), webhookSourceRoutes(deps), connectionRoutes(deps), exportRoutes(deps), keyRoutes(deps, auth)]) {
    api.use(routes.routes(), routes.allowedMethods());
  }
  // Inbound webhooks authenticate per source, with the source's own secret.
  const inbound = inboundWebhookRoutes(deps, deps.webhooks);
  // The provider sends the customer's browser back here: the one-time state authenticates it, not the key.
  const callbacks = connectionCallbackRoutes(deps);

  // A client that goes away mid-answer (a closed stream) is not an error worth a stack trace.
  app.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'ERR_STREAM_PREMATURE_CLOSE' && err.code !== 'ECONNRESET' && err.code !== 'EPIPE') {
      log.error('request error', { error: err.message });
    }
  });
  app.use(throttleFailedAuth(deps.config.authFailureLimit));
  app.use(jsonErrors);
  app.use(refuseUnreadablePaths);
  app.use(router.routes());
  app.use(router.allowedMethods());
  app.use(inbound.routes());
  app.use(inbound.allowedMethods());
  app.use(callbacks.routes());
  app.use(api.routes());
  app.use(api.allowedMethods());
  return app;
}

async function answersWithin(query: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([query.then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Connects to the customer's database, brings its schema up to date, loads the workspace and listens. */
export async function startRuntime(config: RuntimeConfig): Promise<RunningRuntime> {
  const db = new pg.Pool({
    connectionString: config.databaseUrl,
    max: POOL_MAX,
    connectionTimeoutMillis: HEALTH_TIMEOUT_MS,
  });
  // An idle connection the server drops (restart, failover) must not crash the process; the pool replaces it.
  db.on('error', (err) => log.error('database connection lost', { error: err.message }));
  try {
    const client = await db.connect();
    try {
      await applyRuntimeSchema(client);
    } finally {
      client.release();
    }
    const workspace = await WorkspaceStore.load(db, config.workspaceDir);
    const chat = createChat({ db, config, workspace }, createModel(config.model));
    const context: RuntimeContext = { db, config, workspace, runTurn: chat.runTurn };
    const webhooks = new WebhookProcessor(context);
    const server = createRuntimeApp({ ...context, chat, webhooks }).listen(config.port, config.host);
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    webhooks.start();
    const heartbeat = startHeartbeat(context);
    return {
      url: urlOf(server),
      close: async () => {
        await Promise.all([heartbeat.stop(), webhooks.stop()]);
        await closeRuntime(server, db);
      },
    };
  } catch (err) {
    await db.end();
    throw err;
  }
}

function urlOf(server: Server): string {
  const { address, port, family } = server.address() as AddressInfo;
  const unspecified = address === '0.0.0.0' || address === '::';
  const host = unspecified ? '127.0.0.1' : family === 'IPv6' ? `[${address}]` : address;
  return `http://${host}:${port}`;
}

async function closeRuntime(server: Server, db: pg.Pool): Promise<void> {
  await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
  await db.end();
}
