import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import pg from 'pg';
import { apiKeyLabel, generateApiKey, hashApiKey } from '../../core/apiKey.ts';
import { loadRuntimeConfig, RuntimeConfigError, type RuntimeConfig } from '../../runtime/src/config.ts';
import { applyRuntimeSchema } from '../../core/runtimeSchema.ts';
import { startRuntime, type RunningRuntime } from '../../runtime/src/server.ts';
import { WorkspaceStore } from '../../runtime/src/workspace.ts';

const PG_SERVER = 'postgres://postgres@127.0.0.1:5432';
const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

const admin = new pg.Pool({ connectionString: `${PG_SERVER}/postgres`, max: 2 });
const createdDatabases: string[] = [];

async function createDatabase(): Promise<string> {
  const name = `rt_test_${randomBytes(6).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${name}`);
  createdDatabases.push(name);
  return `${PG_SERVER}/${name}`;
}

async function dropDatabase(url: string): Promise<void> {
  await admin.query(`DROP DATABASE IF EXISTS ${new URL(url).pathname.slice(1)} WITH (FORCE)`);
}

async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

function configFor(databaseUrl: string, overrides: Partial<RuntimeConfig> = {}): RuntimeConfig {
  return {
    ...loadRuntimeConfig({ DATABASE_URL: databaseUrl, WORKSPACE_ID: 'ws_test', PLAN: 'pro', MESSAGE_LIMIT: '20000' }),
    host: '127.0.0.1',
    port: 0,
    ...overrides,
  };
}

async function seedKey(db: pg.Pool): Promise<string> {
  const key = generateApiKey();
  await db.query('INSERT INTO api_keys (key_hash, label) VALUES ($1, $2)', [hashApiKey(key), apiKeyLabel(key)]);
  return key;
}

function utcDay(year: number, month: number, day: number): string {
  return new Date(Date.UTC(year, month, day)).toISOString().slice(0, 10);
}

after(async () => {
  for (const name of createdDatabases) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
});

function configError(env: NodeJS.ProcessEnv): RuntimeConfigError {
  try {
    loadRuntimeConfig(env);
  } catch (err) {
    expect(err).to.be.instanceOf(RuntimeConfigError);
    return err as RuntimeConfigError;
  }
  throw new Error('expected the configuration to be refused');
}

describe('runtime config', () => {
  it('names every missing required variable in one error', () => {
    const error = configError({});
    for (const name of ['DATABASE_URL', 'WORKSPACE_ID', 'PLAN', 'MESSAGE_LIMIT']) expect(error.message).to.include(name);
    expect(error.problems).to.have.length(4);
  });

  it('names every invalid value and never echoes the database URL', () => {
    const error = configError({
      PORT: '70000',
      DATABASE_URL: 'mysql://root:hunter2@db/app',
      WORKSPACE_ID: 'ws_1',
      PLAN: 'gold',
      MESSAGE_LIMIT: '0',
      FEATURES: 'chat,teleport',
    });
    expect(error.problems).to.have.length(5);
    for (const name of ['PORT', 'DATABASE_URL', 'PLAN', 'MESSAGE_LIMIT', 'teleport']) expect(error.message).to.include(name);
    expect(error.message).not.to.include('hunter2');
  });

  it('reads the connections: a 32-byte key as base64 or hex, OAuth apps in pairs, the real endpoints by default', () => {
    const required = { DATABASE_URL: 'postgres://db/c', WORKSPACE_ID: 'ws_1', PLAN: 'team', MESSAGE_LIMIT: '1' };
    const bare = loadRuntimeConfig(required).connections;
    expect(bare).to.deep.include({ key: undefined, publicUrl: undefined });
    expect(bare.google).to.deep.include({ app: undefined, tokenUrl: 'https://oauth2.googleapis.com/token', gmailApiUrl: 'https://gmail.googleapis.com' });
    expect(bare.github).to.deep.include({ app: undefined, apiUrl: 'https://api.github.com', oauthUrl: 'https://github.com/login/oauth' });
    const key = Buffer.alloc(32, 7);
    const set = loadRuntimeConfig({
      ...required,
      CONNECTIONS_KEY: key.toString('hex'),
      PUBLIC_URL: 'https://ws-1.example.com/',
      GITHUB_CLIENT_ID: 'id',
      GITHUB_CLIENT_SECRET: 'secret',
      GITHUB_API_URL: 'http://127.0.0.1:9/api/v3',
    }).connections;
    expect(set.key!.equals(key)).to.equal(true);
    expect(set.publicUrl).to.equal('https://ws-1.example.com');
    expect(set.github).to.deep.equal({ app: { clientId: 'id', clientSecret: 'secret' }, oauthUrl: 'https://github.com/login/oauth', apiUrl: 'http://127.0.0.1:9/api/v3' });
    expect(loadRuntimeConfig({ ...required, CONNECTIONS_KEY: key.toString('base64') }).connections.key!.equals(key)).to.equal(true);

    const error = configError({ ...required, CONNECTIONS_KEY: 'c2hvcnQ=', GOOGLE_CLIENT_ID: 'only-the-id', GMAIL_API_URL: 'ftp://x' });
    expect(error.problems).to.have.members([
      'GMAIL_API_URL must be an http(s) URL',
      'CONNECTIONS_KEY must be 32 bytes, as base64 or hex',
      'GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET go together: set both or neither',
    ]);
  });

  it('applies defaults and parses a valid environment', () => {
    const required = { DATABASE_URL: 'postgresql://u:p@db.example/c?sslmode=require', WORKSPACE_ID: 'ws_1' };
    const config = loadRuntimeConfig({ ...required, PLAN: 'starter', MESSAGE_LIMIT: '5000', WORKSPACE_DIR: '' });
    expect(config).to.deep.include({ port: 8080, host: '0.0.0.0', workspaceDir: undefined, messageLimit: 5000 });
    expect(config.features).to.deep.equal(['chat', 'memory', 'web_search']);
    expect(config.rateLimit).to.deep.equal({ max: 60, durationMs: 60_000 }); // the Starter plan's rate
    expect(config).to.deep.include({ toolRounds: 5, webSearchMaxUses: 3 }); // the Starter plan's
    expect(config.version).to.be.a('string').and.not.empty;
    const team = loadRuntimeConfig({ ...required, PLAN: 'team', MESSAGE_LIMIT: '1' });
    expect(team.rateLimit).to.deep.equal({ max: 300, durationMs: 60_000 });
    const explicit = loadRuntimeConfig({ ...required, PLAN: 'team', MESSAGE_LIMIT: '1', FEATURES: ' chat , gmail,chat', PORT: '9000', RATE_LIMIT: '5/s' });
    expect(explicit).to.deep.include({ features: ['chat', 'gmail'], port: 9000, rateLimit: { max: 5, durationMs: 1_000 } });
    expect(loadRuntimeConfig({ ...required, PLAN: 'pro', MESSAGE_LIMIT: '1', MAX_TOOL_ROUNDS: '2' })).to.deep.include({ toolRounds: 2, webSearchMaxUses: 5 });
    expect(configError({ ...required, PLAN: 'pro', MESSAGE_LIMIT: '1', MAX_TOOL_ROUNDS: '0' }).message).to.include('MAX_TOOL_ROUNDS');
  });
});

describe('runtime schema', () => {
  let url: string;
  before(async () => {
    url = await createDatabase();
  });

  it('applies migrations once when two callers race, and again is a no-op', async () => {
    const clients = [new pg.Client({ connectionString: url }), new pg.Client({ connectionString: url })];
    try {
      await Promise.all(clients.map((c) => c.connect()));
      await Promise.all(clients.map((c) => applyRuntimeSchema(c)));
      await applyRuntimeSchema(clients[0]!);
      const { rows } = await clients[0]!.query('SELECT version FROM runtime_migrations ORDER BY version');
      expect(rows).to.deep.equal([{ version: 1 }, { version: 2 }, { version: 3 }, { version: 4 }]);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });

  it('indexes memory content and tags for full-text search', async () => {
    await withClient(url, async (client) => {
      await client.query(`INSERT INTO memories (content, tags) VALUES ('Buy oat milk', '{groceries}'), ('Call mum', '{}')`);
      const byTag = await client.query(`SELECT content FROM memories WHERE search @@ plainto_tsquery('english', 'grocery')`);
      expect(byTag.rows).to.deep.equal([{ content: 'Buy oat milk' }]);
      const byContent = await client.query(`SELECT content FROM memories WHERE search @@ plainto_tsquery('english', 'calling')`);
      expect(byContent.rows).to.deep.equal([{ content: 'Call mum' }]);
    });
  });

  it('refuses a pool, whose queries could land on different connections', async () => {
    const pool = new pg.Pool({ connectionString: url });
    try {
      let error: unknown;
      await applyRuntimeSchema(pool).catch((err: unknown) => (error = err));
      expect(error).to.be.instanceOf(Error).with.property('message').that.includes('single connection');
    } finally {
      await pool.end();
    }
  });
});

describe('runtime server', () => {
  let url: string;
  let db: pg.Pool;
  let workspaceDir: string;
  let runtime: RunningRuntime;
  let validKey: string;
  const now = new Date();
  const thisMonth = now.toISOString().slice(0, 7);

  before(async () => {
    url = await createDatabase();
    db = new pg.Pool({ connectionString: url, max: 2 });
    await withClient(url, applyRuntimeSchema);
    validKey = await seedKey(db);
    const [year, month] = [now.getUTCFullYear(), now.getUTCMonth()];
    await db.query(
      `INSERT INTO usage_tracking (day, messages, input_tokens, output_tokens)
       VALUES ($1, 10, 1000, 2000), ($2, 5, 500, 700), ($3, 99, 99999, 99999)`,
      [utcDay(year, month, 1), utcDay(year, month, 2), utcDay(year, month - 1, 28)],
    );
    await db.query(
      `INSERT INTO workspace_files (path, content, sha256)
       VALUES ('AGENTS.md', '# Agents', 'x'), ('skills/notes/SKILL.md', '# Notes skill', 'y')`,
    );
    workspaceDir = await mkdtemp(path.join(tmpdir(), 'rt-workspace-'));
    runtime = await startRuntime(configFor(url, { workspaceDir, version: '2.0.0-test', settingsGeneration: 7 }));
  });

  after(async () => {
    await runtime?.close();
    await db?.end();
    if (workspaceDir) await rm(workspaceDir, { recursive: true, force: true });
  });

  function getStatus(authorization?: string): Promise<Response> {
    return fetch(`${runtime.url}/status`, { headers: authorization ? { authorization } : {} });
  }

  it('answers /health with its status, and the version and fleet settings generation it runs (nothing else)', async () => {
    const res = await fetch(`${runtime.url}/health`);
    expect(res.status).to.equal(200);
    expect(await res.json()).to.deep.equal({ status: 'ok', version: '2.0.0-test', settingsGeneration: 7 });
  });

  it('writes the workspace from the database to an empty WORKSPACE_DIR', async () => {
    expect(await readFile(path.join(workspaceDir, 'AGENTS.md'), 'utf8')).to.equal('# Agents');
    expect(await readFile(path.join(workspaceDir, 'skills/notes/SKILL.md'), 'utf8')).to.equal('# Notes skill');
  });

  it('prefers workspace files on disk, read recursively with / paths', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'rt-workspace-'));
    try {
      await mkdir(path.join(dir, 'skills', 'local'), { recursive: true });
      await writeFile(path.join(dir, 'SOUL.md'), 'soul');
      await writeFile(path.join(dir, 'skills', 'local', 'SKILL.md'), 'local skill');
      const files = await WorkspaceStore.load(db, dir);
      expect(files.paths().map((p) => [p, files.get(p)])).to.deep.equal([
        ['SOUL.md', 'soul'],
        ['skills/local/SKILL.md', 'local skill'],
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses /status without a usable key', async () => {
    const cases: Array<[string | undefined, string]> = [
      [undefined, 'missing'],
      ['Basic dXNlcjpwYXNz', 'missing'],
      ['Bearer not-a-key', 'malformed'],
      [`Bearer ${generateApiKey()}`, 'unknown or revoked'],
      [`Bearer ${validKey.slice(0, -1)}${validKey.endsWith('a') ? 'b' : 'a'}`, 'unknown or revoked'],
    ];
    for (const [authorization, reason] of cases) {
      const res = await getStatus(authorization);
      expect(res.status, String(authorization)).to.equal(401);
      const body = (await res.json()) as { error: string; reason: string };
      expect(body.error).to.equal('unauthorized');
      expect(body.reason).to.include(reason);
    }
  });

  it('reports identity and this month’s usage to a valid key', async () => {
    const res = await getStatus(`Bearer ${validKey}`);
    expect(res.status).to.equal(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).to.have.all.keys('workspaceId', 'plan', 'features', 'version', 'uptimeSeconds', 'usage', 'webhooks');
    expect(body).to.deep.include({ workspaceId: 'ws_test', plan: 'pro' });
    expect(body.uptimeSeconds).to.be.a('number').at.least(0);
    expect(body.usage).to.deep.equal({
      month: thisMonth,
      messages: 15,
      messageLimit: 20000,
      inputTokens: 1500,
      outputTokens: 2700,
    });
  });

  it('refuses a revoked key once its cached answer (two seconds) has run out', async () => {
    const key = await seedKey(db);
    expect((await getStatus(`Bearer ${key}`)).status).to.equal(200); // the answer is cached from here
    await db.query('UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1', [hashApiKey(key)]);
    const revokedAt = Date.now();
    // The cached answer was made before the revocation, so it expires at most two seconds after it; any request
    // from then on, however slow the machine, must look again and be refused.
    await new Promise((resolve) => setTimeout(resolve, revokedAt + 2_050 - Date.now()));
    expect((await getStatus(`Bearer ${key}`)).status).to.equal(401);
  });

  it('answers unknown routes and methods with JSON errors', async () => {
    const missing = await fetch(`${runtime.url}/nope`);
    expect(missing.status).to.equal(404);
    expect(await missing.json()).to.deep.equal({ error: 'not_found', reason: 'no route for GET /nope' });
    const wrongMethod = await fetch(`${runtime.url}/health`, { method: 'DELETE' });
    expect(wrongMethod.status).to.equal(405);
    expect(await wrongMethod.json()).to.have.property('error', 'method_not_allowed');
  });
});

describe('runtime health when its database goes away', () => {
  it('turns /health to 503 and keeps serving', async () => {
    const url = await createDatabase();
    const runtime = await startRuntime(configFor(url));
    try {
      expect((await fetch(`${runtime.url}/health`)).status).to.equal(200);
      await dropDatabase(url);
      const res = await fetch(`${runtime.url}/health`);
      expect(res.status).to.equal(503);
      expect(await res.json()).to.deep.equal({ status: 'unavailable', version: '0.1.0', settingsGeneration: null });
    } finally {
      await runtime.close();
    }
  });
});

describe('runtime entry point', () => {
  function run(env: Record<string, string>, onLine?: (line: string) => void) {
    const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/src/main.ts'], {
      cwd: PROJECT_ROOT,
      env: { PATH: process.env.PATH ?? '', LOG_FORMAT: 'json', ...env },
    });
    let output = '';
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
      for (const line of chunk.toString().split('\n')) if (line) onLine?.(line);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const exited = new Promise<{ code: number | null; output: string }>((resolve) =>
      child.on('exit', (code) => resolve({ code, output })),
    );
    return { child, exited };
  }

  it('listens, logs one JSON line without secrets, and exits 0 on SIGTERM', async () => {
    const url = await createDatabase();
    let sawListening!: (port: string) => void;
    const listening = new Promise<string>((resolve) => (sawListening = resolve));
    const { child, exited } = run(
      { PORT: '0', HOST: '127.0.0.1', DATABASE_URL: url, WORKSPACE_ID: 'ws_main', PLAN: 'team', MESSAGE_LIMIT: '100000' },
      (line) => {
        const parsed = line.startsWith('{') ? (JSON.parse(line) as { message?: string; port?: number }) : {};
        if (parsed.message === 'listening') sawListening(String(parsed.port));
      },
    );
    const port = await Promise.race([
      listening,
      exited.then(({ output }) => Promise.reject(new Error(`runtime exited early: ${output}`))),
    ]);
    expect((await fetch(`http://127.0.0.1:${port}/health`)).status).to.equal(200);
    child.kill('SIGTERM');
    const { code, output } = await exited;
    expect(code).to.equal(0);
    const lines = output.trim().split('\n');
    expect(lines).to.have.length(1);
    expect(JSON.parse(lines[0]!)).to.deep.include({ level: 'info', scope: 'runtime', workspace: 'ws_main', port: Number(port), message: 'listening' });
    expect(output).to.not.include(url);
  });

  it('logs every configuration problem in one line and exits 1', async () => {
    const { code, output } = await run({ PLAN: 'gold', LOG_LEVEL: 'loud' }).exited;
    expect(code).to.equal(1);
    const lines = output.trim().split('\n');
    expect(lines).to.have.length(1);
    const line = JSON.parse(lines[0]!) as { level: string; message: string; problems: string[] };
    expect(line).to.include({ level: 'error', message: 'invalid configuration' });
    for (const name of ['DATABASE_URL', 'WORKSPACE_ID', 'PLAN', 'MESSAGE_LIMIT', 'LOG_LEVEL']) expect(line.problems.join(' ')).to.include(name);
  });
});
