/**
 * The runtime's HTTP server: the Koa app (health, status; chat, memory and skills routes join the same router)
 * and the start-up that wires it to the customer's database.
 */
import { STATUS_CODES, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import Router from '@koa/router';
import pg from 'pg';
import { requireApiKey } from './auth.ts';
import type { RuntimeConfig } from './config.ts';
import { applyRuntimeSchema } from './schema.ts';
import { loadWorkspace, type WorkspaceFiles } from './workspace.ts';

const HEALTH_TIMEOUT_MS = 2_000;
const POOL_MAX = 5;

export interface RuntimeDeps {
  db: pg.Pool;
  config: Pick<RuntimeConfig, 'workspaceId' | 'plan' | 'version' | 'messageLimit'>;
  /** The loaded workspace; chat builds its prompt from it. */
  workspace: WorkspaceFiles;
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

  router.get('/health', async (ctx) => {
    const healthy = await answersWithin(deps.db.query('SELECT 1'), HEALTH_TIMEOUT_MS);
    ctx.set('Cache-Control', 'no-store');
    ctx.status = healthy ? 200 : 503;
    ctx.body = { status: healthy ? 'ok' : 'unavailable' };
  });

  router.get('/status', auth, async (ctx) => {
    const { workspaceId, plan, version, messageLimit } = deps.config;
    ctx.body = {
      workspaceId,
      plan,
      version,
      uptimeSeconds: Math.floor((Date.now() - startedAt) / 1000),
      usage: { ...(await monthUsage(deps.db, new Date())), messageLimit },
    };
  });

  app.use(jsonErrors);
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}

/** Every error answers `{ error, reason }`; internal details go to the log, never to the client. */
async function jsonErrors(ctx: Koa.Context, next: Koa.Next): Promise<void> {
  try {
    await next();
  } catch (err) {
    const status = (err as { status?: unknown }).status;
    const exposed = typeof status === 'number' && status >= 400 && status < 500;
    ctx.status = exposed ? status : 500;
    if (!exposed) console.error(`runtime ${ctx.method} ${ctx.path} failed: ${(err as Error).message}`);
    ctx.body = { error: errorCode(ctx.status), reason: exposed ? (err as Error).message : 'internal error' };
    return;
  }
  if (ctx.status >= 400 && ctx.body == null) {
    const status = ctx.status;
    ctx.body = { error: errorCode(status), reason: STATUS_CODES[status] ?? 'error' };
    ctx.status = status; // assigning a body resets a status nobody set explicitly (Koa's default 404) to 200
  }
}

/** 404 -> 'not_found', 405 -> 'method_not_allowed', ... */
function errorCode(status: number): string {
  return (STATUS_CODES[status] ?? 'error').toLowerCase().replace(/[^a-z]+/g, '_');
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

/** Usage for the UTC calendar month containing `now`, summed from the daily rows. */
async function monthUsage(db: pg.Pool, now: Date) {
  const year = now.getUTCFullYear();
  const month = now.getUTCMonth();
  const first = new Date(Date.UTC(year, month, 1)).toISOString().slice(0, 10);
  const next = new Date(Date.UTC(year, month + 1, 1)).toISOString().slice(0, 10);
  const { rows } = await db.query<{ messages: string; input_tokens: string; output_tokens: string }>(
    `SELECT coalesce(sum(messages), 0) AS messages,
            coalesce(sum(input_tokens), 0) AS input_tokens,
            coalesce(sum(output_tokens), 0) AS output_tokens
       FROM usage_tracking WHERE day >= $1 AND day < $2`,
    [first, next],
  );
  const row = rows[0];
  return {
    month: first.slice(0, 7),
    messages: Number(row?.messages ?? 0),
    inputTokens: Number(row?.input_tokens ?? 0),
    outputTokens: Number(row?.output_tokens ?? 0),
  };
}

/** Connects to the customer's database, brings its schema up to date, loads the workspace and listens. */
export async function startRuntime(config: RuntimeConfig): Promise<RunningRuntime> {
  const db = new pg.Pool({
    connectionString: config.databaseUrl,
    max: POOL_MAX,
    connectionTimeoutMillis: HEALTH_TIMEOUT_MS,
  });
  // An idle connection the server drops (restart, failover) must not crash the process; the pool replaces it.
  db.on('error', (err) => console.error(`runtime database connection lost: ${err.message}`));
  try {
    const client = await db.connect();
    try {
      await applyRuntimeSchema(client);
    } finally {
      client.release();
    }
    const workspace = await loadWorkspace(db, config.workspaceDir);
    const server = createRuntimeApp({ db, config, workspace }).listen(config.port, config.host);
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    return { url: urlOf(server), close: () => closeRuntime(server, db) };
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
