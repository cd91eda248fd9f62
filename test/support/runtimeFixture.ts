/**
 * One customer's runtime, started against its own throwaway database (schema applied, workspace rendered and
 * seeded, an API key issued), as the control plane would deploy it: in this process, or as its own child process
 * (`node --import tsx runtime/src/main.ts`, as the local compute provider runs it) so its CPU is its own. close()
 * removes it all.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { generateApiKey, hashApiKey } from '../../core/apiKey.ts';
import { quoteIdent } from '../../core/postgres.ts';
import { PLANS, type PlanName } from '../../core/plans.ts';
import { renderWorkspace } from '../../src/workspace/render.ts';
import { fileSha256 } from '../../core/workspace/files.ts';
import { loadRuntimeConfig } from '../../runtime/src/config.ts';
import { applyRuntimeSchema } from '../../core/runtimeSchema.ts';
import { startRuntime } from '../../runtime/src/server.ts';

const SERVER = 'postgres://postgres@127.0.0.1:5432';
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const RUNTIME_MAIN = path.join(REPO, 'runtime/src/main.ts');

interface Running {
  url: string;
  close(): Promise<void>;
}

export interface RuntimeFixture {
  url: string;
  key: string;
  workspaceId: string;
  db: pg.Pool;
  workspaceDir: string;
  /** Stops the runtime and starts it again on the same database and directory (a restart or a redeploy). */
  restart(env?: Record<string, string>): Promise<void>;
  close(): Promise<void>;
}

export async function startRuntimeFixture(options: {
  plan?: PlanName;
  name?: string;
  env?: Record<string, string>;
  /** Workspace files to use instead of the rendered ones, by path. */
  files?: Record<string, string>;
  /** Runs the runtime as a child process (env passed as its environment, NODE_OPTIONS included) instead of in this one. */
  childProcess?: boolean;
}): Promise<RuntimeFixture> {
  const plan = PLANS[options.plan ?? 'starter'];
  const id = randomBytes(5).toString('hex');
  const database = `rt_fixture_${id}`;
  const workspaceId = `ws-${id}`;
  const admin = new pg.Client({ connectionString: `${SERVER}/postgres` });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${quoteIdent(database)}`);
  await admin.end();
  const databaseUrl = `${SERVER}/${database}`;
  const db = new pg.Pool({ connectionString: databaseUrl, max: 3 });
  db.on('error', () => undefined); // connections ended by the DROP DATABASE in close()
  let workspaceDir: string | undefined;
  /** The database and the workspace directory: removed by close(), or at once when the runtime fails to start. */
  const remove = async () => {
    await db.end();
    const cleanup = new pg.Client({ connectionString: `${SERVER}/postgres` });
    await cleanup.connect();
    await cleanup.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
    await cleanup.end();
    if (workspaceDir) await rm(workspaceDir, { recursive: true, force: true });
  };
  try {
    const key = generateApiKey();
    const client = await db.connect();
    try {
      await applyRuntimeSchema(client);
      const files = renderWorkspace({
        workspaceId,
        customer: { name: options.name ?? 'Test Customer', email: `${id}@example.com` },
        plan,
        createdAt: new Date(),
      });
      for (const [p, content] of Object.entries(options.files ?? {})) {
        const existing = files.find((f) => f.path === p);
        if (existing) existing.content = content;
        else files.push({ path: p, content });
      }
      for (const file of files) {
        await client.query('INSERT INTO workspace_files (path, content, sha256) VALUES ($1, $2, $3)', [file.path, file.content, fileSha256(file.content)]);
      }
      await client.query('INSERT INTO api_keys (key_hash, label) VALUES ($1, $2)', [hashApiKey(key), 'fixture']);
    } finally {
      client.release();
    }
    const dir = (workspaceDir = await mkdtemp(path.join(tmpdir(), 'rt-fixture-')));
    const baseEnv = {
      PORT: '0',
      HOST: '127.0.0.1',
      DATABASE_URL: databaseUrl,
      WORKSPACE_ID: workspaceId,
      WORKSPACE_DIR: dir,
      PLAN: plan.name,
      MESSAGE_LIMIT: String(plan.messageLimit),
      HEARTBEAT_INTERVAL: '0',
      ...options.env,
    };
    const start = (env: Record<string, string>): Promise<Running> =>
      options.childProcess ? startRuntimeProcess(env) : startRuntime(loadRuntimeConfig(env));
    let running = await start(baseEnv);
    const fixture: RuntimeFixture = {
      url: running.url,
      key,
      workspaceId,
      db,
      workspaceDir: dir,
      async restart(env = {}) {
        await running.close();
        running = await start({ ...baseEnv, PORT: new URL(fixture.url).port, ...env });
      },
      async close() {
        await running.close();
        await remove();
      },
    };
    return fixture;
  } catch (err) {
    await remove();
    throw err;
  }
}

/** The runtime's entry point in a child process: up once its log says which port it listens on; close() is SIGTERM. */
async function startRuntimeProcess(env: Record<string, string>): Promise<Running> {
  const child = spawn(process.execPath, ['--import', 'tsx', RUNTIME_MAIN], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit');
  const port = await new Promise<string>((resolve, reject) => {
    const listening = () => {
      const match = /^\{.*"message":"listening"\}$/m.exec(output);
      if (match) {
        child.stdout.off('data', listening);
        resolve(String((JSON.parse(match[0]) as { port: number }).port));
      }
    };
    child.stdout.on('data', listening);
    exited.then(([code]) => reject(new Error(`runtime exited with ${code} before listening: ${output.trim()}`)), reject);
  });
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}

/** Reads a server-sent-events response, recording each event and when it arrived. */
export async function readEvents(response: Response): Promise<{ event: string; data: any; at: number }[]> {
  const events: { event: string; data: any; at: number }[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = /^data: (.*)$/m.exec(block)?.[1];
      events.push({ event, data: data ? JSON.parse(data) : undefined, at: Date.now() });
    }
  }
  return events;
}
