/**
 * NeonDatabaseProvider with the real @neondatabase/api-client (2.7.3) against the Neon emulator, which is backed by
 * real databases and roles on the local Postgres: the URIs it hands back really open the customer's database.
 *
 * ensureDatabase is driven the way the create-branch step drives it: called with the progress it returned, after
 * sleeping retryInMs (the step re-schedules itself instead of sleeping); a TransientError re-runs the step with the
 * progress saved before it. Emulator operations take 100 ms and the provider's first poll waits 120 to 150 ms.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import pg from 'pg';
import { PermanentError, RateLimitedError, TransientError } from '../../src/errors.ts';
import { NEON_DATABASE_NAME, NeonDatabaseProvider, type NeonProviderOptions } from '../../src/providers/database/neon.ts';
import type { DatabaseProgress, DatabaseRef } from '../../src/providers/types.ts';
import { startNeonEmulator, type NeonEmulator, type NeonEmulatorCall } from '../emulators/neonEmulator.ts';
import { rejection } from '../support/rejection.ts';

const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/postgres';
const PREFIX = `nprov${Date.now().toString(36)}`;
// The provider's own request timeout (15 s): deleting a branch drops real databases, slow on a loaded machine.
const OPTIONS: NeonProviderOptions = { pollInitialMs: 150, pollMaxMs: 1_000 };
/** Calls one fresh provision may make without faults (11 when every operation is done at the first look). */
const CALL_BUDGET = 15;

type Ready = DatabaseRef & { connectionUrl: string };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const newName = () => `claw_${randomBytes(8).toString('hex')}`;

interface Run {
  ready: Ready;
  steps: number;
  progresses: DatabaseProgress[];
  transient: Error[];
}

/** Drives ensureDatabase to `ready` as the step does. TransientErrors are retried (with the last saved progress). */
async function provision(provider: NeonDatabaseProvider, name: string, start?: DatabaseProgress): Promise<Run> {
  let progress = start;
  const progresses: DatabaseProgress[] = [];
  const transient: Error[] = [];
  for (let steps = 1; steps <= 60; steps++) {
    let result;
    try {
      result = await provider.ensureDatabase(name, progress);
    } catch (err) {
      if (!(err instanceof TransientError)) throw err;
      transient.push(err);
      await sleep(Math.min(err.retryAfterMs ?? 100, 100));
      continue;
    }
    if ('ready' in result) return { ready: result.ready, steps, progresses, transient };
    expect(result.retryInMs).to.be.within(1, 10_000);
    progresses.push(result.pending);
    progress = result.pending;
    await sleep(result.retryInMs);
  }
  throw new Error(`${name} was not ready after 60 steps`);
}


async function query(uri: string, text: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: uri, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query(text)).rows as Record<string, unknown>[];
  } finally {
    await client.end();
  }
}

function summary(calls: NeonEmulatorCall[]): string {
  const counts = new Map<string, number>();
  for (const c of calls) {
    const key = `${c.method} ${c.template.replace('/projects/{project_id}', '')}${c.status && c.status >= 400 ? ` →${c.status}` : ''}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${n}× ${k}`).join(', ');
}

const posts = (emulator: NeonEmulator) => {
  const c = emulator.counts();
  return {
    branches: c['POST /projects/{project_id}/branches'] ?? 0,
    roles: c['POST /projects/{project_id}/branches/{branch_id}/roles'] ?? 0,
    databases: c['POST /projects/{project_id}/branches/{branch_id}/databases'] ?? 0,
  };
};

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

describe('NeonDatabaseProvider against the Neon emulator', function () {
  this.timeout(60_000);
  let emulator: NeonEmulator;
  let projectA: string;
  let projectB: string;
  let provider: NeonDatabaseProvider;
  let first: { name: string; projectId: string; ready: Ready };

  const providerFor = (overrides: Partial<{ apiUrl: string; apiKey: string; projectIds: string[] }> = {}, options = OPTIONS) =>
    new NeonDatabaseProvider({ apiUrl: emulator.url, apiKey: emulator.apiKey, projectIds: [projectA, projectB], ...overrides }, options);
  const branchOf = (projectId: string, name: string) => emulator.branches(projectId).find((b) => b.branch.name === name);

  before(async () => {
    emulator = await startNeonEmulator({ prefix: PREFIX, operationMs: 100 });
    // Like real projects: the default branch has neondb_owner/neondb, which every new branch inherits.
    // Fixed ids, so the placement of fixed names below is the same on every run.
    projectA = (await emulator.createProject({ projectId: 'clawdbot-pool-a', defaultDatabase: true })).projectId;
    projectB = (await emulator.createProject({ projectId: 'clawdbot-pool-b', defaultDatabase: true })).projectId;
    provider = providerFor();
  });

  after(async () => {
    await emulator?.close();
    const leftovers = await query(
      PG_ADMIN,
      `SELECT datname AS name FROM pg_database WHERE datname LIKE '${PREFIX}%' UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE '${PREFIX}%'`,
    );
    expect(leftovers).to.deep.equal([]);
  });

  it('makes branch, role and database one step at a time; the URI opens the real database as the role', async () => {
    const name = newName();
    const projectId = provider.projectFor(name);
    const before = emulator.calls.length;
    const apiBefore = provider.apiCalls;
    const t0 = Date.now();
    const run = await provision(provider, name);
    const calls = emulator.calls.slice(before);
    console.log(`      one provision: ${calls.length} Neon calls over ${run.steps} ensureDatabase calls in ${Date.now() - t0} ms: ${summary(calls)}`);
    expect(calls.length).to.be.at.most(CALL_BUDGET);
    expect(provider.apiCalls - apiBefore).to.equal(calls.length);
    expect(calls.filter((c) => c.method !== 'GET').length, 'one create each for branch, role, database').to.equal(3);
    expect(calls.filter((c) => (c.status ?? 0) >= 400)).to.deep.equal([]);
    expect(run.transient).to.deep.equal([]);

    const snapshot = branchOf(projectId, name)!;
    expect(snapshot, 'the branch, named after the customer').to.not.equal(undefined);
    expect(snapshot.endpoints.map((e) => e.type)).to.deep.equal(['read_write']);
    expect(snapshot.annotation).to.deep.equal({ clawdbot: name });
    expect(run.ready).to.include({ branchId: `${projectId}/${snapshot.branch.id}`, databaseName: NEON_DATABASE_NAME, roleName: name });
    const database = snapshot.databases.find((d) => d.name === NEON_DATABASE_NAME)!;
    expect(database.owner_name).to.equal(name);

    const [row] = await query(
      run.ready.connectionUrl,
      'SELECT current_user AS "user", current_database() AS db, pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = current_database()',
    );
    const realRole = emulator.realRoleName(projectId, snapshot.branch.id, name);
    expect(row).to.deep.equal({ user: realRole, db: emulator.realDatabaseName(projectId, snapshot.branch.id, NEON_DATABASE_NAME), owner: realRole });

    // Job data: ids and counters only. Not our role's password, not the inherited neondb_owner's, no URI.
    const passwords = snapshot.roles.map((r) => r.password);
    expect(run.ready.connectionUrl).to.include(snapshot.roles.find((r) => r.name === name)!.password);
    expect(run.progresses.length).to.be.at.least(3);
    for (const progress of run.progresses) {
      const json = JSON.stringify(progress);
      for (const password of passwords) expect(json).to.not.include(password);
      expect(json).to.not.include('://');
      expect(json).to.not.include('postgres');
      for (const value of Object.values(progress)) {
        expect(['string', 'number'].includes(typeof value) || (Array.isArray(value) && value.every((v) => typeof v === 'string'))).to.equal(true);
      }
    }
    first = { name, projectId, ready: run.ready };
  });

  it('a second full run finds everything by name: nothing created, the same URL', async () => {
    const postsBefore = posts(emulator);
    const before = emulator.calls.length;
    const run = await provision(provider, first.name);
    const calls = emulator.calls.slice(before);
    console.log(`      re-run of a finished provision: ${calls.length} Neon calls: ${summary(calls)}`);
    expect(posts(emulator)).to.deep.equal(postsBefore);
    expect(run.steps).to.equal(1);
    expect(calls.length).to.be.at.most(4);
    expect(run.ready).to.deep.equal(first.ready);
    expect(emulator.branches(first.projectId).filter((b) => b.branch.name === first.name)).to.have.length(1);
  });

  it('places names deterministically (whatever the order of NEON_PROJECT_IDS) and spreads them over the pool', async () => {
    const reversed = providerFor({ projectIds: [projectB, projectA] });
    const names = Array.from({ length: 8 }, (_, i) => `claw_${i.toString(16).padStart(16, '0')}`);
    const placed = names.map((n) => provider.projectFor(n));
    expect(names.map((n) => reversed.projectFor(n))).to.deep.equal(placed);
    expect(names.map((n) => providerFor().projectFor(n))).to.deep.equal(placed);
    expect(new Set(placed)).to.deep.equal(new Set([projectA, projectB]));
    expect(providerFor({ projectIds: [projectB] }).projectFor(names[0]!)).to.equal(projectB);

    // Provision a name that lands in the other project than the first test's: it is made there, and only there.
    let other = newName();
    while (provider.projectFor(other) === first.projectId) other = newName();
    const otherProject = provider.projectFor(other);
    const run = await provision(provider, other);
    expect(run.ready.branchId.startsWith(`${otherProject}/`)).to.equal(true);
    expect(branchOf(otherProject, other)).to.not.equal(undefined);
    expect(branchOf(first.projectId, other)).to.equal(undefined);
  });

  it('absorbs 423 (natural, while operations run, and injected) as pending, never an error', async () => {
    const name = newName();
    emulator.holdOperations(); // the branch's operations still run when the re-run comes, however slow the machine
    const r1 = await provider.ensureDatabase(name);
    if (!('pending' in r1)) throw new Error('expected pending after creating the branch');
    // A re-run that lost its progress (worker died before saving it) while the branch's operations still run.
    const before = emulator.calls.length;
    const r2 = await provider.ensureDatabase(name);
    emulator.releaseOperations();
    const naturally = emulator.calls.slice(before).filter((c) => c.status === 423 && !c.injected);
    expect('pending' in r2, 'a 423 is a pending').to.equal(true);
    expect(naturally.length, 'the emulator answered 423 while operations ran').to.be.at.least(1);
    if (!('pending' in r2)) return;
    expect(r2.detail).to.match(/busy/);
    expect(r2.pending).to.include({ stage: 'role' });

    const [a, b] = await Promise.all([provision(provider, name, r1.pending), provision(provider, name, r2.pending)]);
    expect(a.ready).to.deep.equal(b.ready);
    expect(emulator.branches(provider.projectFor(name)).filter((s) => s.branch.name === name)).to.have.length(1);

    // Injected on the first mutation of a fresh provision.
    emulator.failNext(1, 423, {}, { match: (r) => r.method === 'POST' });
    const injectedBefore = emulator.calls.length;
    const run = await provision(provider, newName());
    expect(run.transient).to.deep.equal([]);
    expect(emulator.calls.slice(injectedBefore).filter((c) => c.status === 423 && c.injected)).to.have.length(1);
  });

  it('concurrent first runs of one name make one branch (409 → re-list)', async () => {
    const name = newName();
    const before = emulator.calls.length;
    const [r1, r2] = await Promise.all([provider.ensureDatabase(name), provider.ensureDatabase(name)]);
    const conflicts = emulator.calls.slice(before).filter((c) => c.status === 409).length;
    console.log(`      concurrent first runs: ${conflicts} × 409`);
    if (!('pending' in r1) || !('pending' in r2)) throw new Error('expected both pending');
    const [a, b] = await Promise.all([provision(provider, name, r1.pending), provision(provider, name, r2.pending)]);
    expect(a.ready).to.deep.equal(b.ready);
    expect(emulator.branches(provider.projectFor(name)).filter((s) => s.branch.name === name)).to.have.length(1);
  });

  it('503 waits like a busy project (Neon: always safe to retry); timeouts are TransientErrors', async () => {
    const name = newName();
    emulator.failNext(1, 503);
    const first = await provider.ensureDatabase(name);
    if (!('pending' in first)) throw new Error('expected pending');
    expect(first.detail).to.match(/503/).and.not.include(emulator.apiKey);

    // 503 while polling an operation and on a mutation, mid-way: waited out, and the provision completes.
    const r1 = await provider.ensureDatabase(name, first.pending);
    if (!('pending' in r1)) throw new Error('expected pending');
    emulator.failNext(1, 503, {}, { match: (r) => r.template.includes('/operations/') });
    emulator.failNext(1, 503, {}, { match: (r) => r.method === 'POST' });
    await sleep(r1.retryInMs);
    const run = await provision(provider, name, r1.pending);
    expect(run.transient.length).to.equal(0);
    expect(emulator.branches(provider.projectFor(name)).filter((s) => s.branch.name === name)).to.have.length(1);

    // A timeout (the answer held back beyond the client's timeout) and a refused connection.
    emulator.slowNext(1, 600);
    const slow = await rejection(providerFor({}, { ...OPTIONS, timeoutMs: 200 }).ensureDatabase(name));
    expect(slow).to.be.instanceOf(TransientError);
    expect(slow.message).to.match(/did not answer/).and.match(/ECONNABORTED|ETIMEDOUT/);
    const refused = await rejection(providerFor({ apiUrl: `http://127.0.0.1:${await closedPort()}/api/v2` }).ensureDatabase(name));
    expect(refused).to.be.instanceOf(TransientError);
    expect(refused.message).to.match(/ECONNREFUSED/);
  });

  it('429 is a RateLimitedError carrying Retry-After (else 1 s)', async () => {
    emulator.failNext(1, 429, { 'Retry-After': '7' });
    const err = await rejection(provider.ensureDatabase(newName()));
    expect(err).to.be.instanceOf(RateLimitedError);
    expect((err as RateLimitedError).retryAfterMs).to.equal(7_000);
    emulator.failNext(1, 429, { 'Retry-After': '' });
    const bare = await rejection(provider.ensureDatabase(newName()));
    expect(bare).to.be.instanceOf(RateLimitedError);
    expect((bare as RateLimitedError).retryAfterMs).to.equal(1_000);
  });

  it('a failed operation is a PermanentError naming the action and the error', async () => {
    const name = newName();
    emulator.failNextOperation('failed', 'timeline creation failed: disk full');
    const err = await rejection(provision(provider, name));
    expect(err).to.be.instanceOf(PermanentError);
    expect(err.message).to.match(/create_branch/).and.match(/ended failed/).and.match(/disk full/).and.match(/br-/);
    // What it left behind is removed by name (abandon's path when no branch id was recorded).
    await provider.deleteDatabase({ branchId: name, databaseName: NEON_DATABASE_NAME, roleName: name });
    expect(branchOf(provider.projectFor(name), name)).to.equal(undefined);
  });

  it('configuration faults are PermanentErrors with a clear message and no secret', async () => {
    const badKey = 'neon-key-that-is-wrong-0123456789';
    const unauthorized = await rejection(providerFor({ apiKey: badKey }).ensureDatabase(newName()));
    expect(unauthorized).to.be.instanceOf(PermanentError);
    expect(unauthorized.message).to.match(/API key/).and.match(/401/).and.not.include(badKey);

    const missing = await rejection(providerFor({ projectIds: ['no-such-project'] }).ensureDatabase(newName()));
    expect(missing).to.be.instanceOf(PermanentError);
    expect(missing.message).to.match(/no-such-project/).and.match(/not found/);

    const full = await startNeonEmulator({ prefix: `${PREFIX}f`, operationMs: 50, maxBranchesPerProject: 1 });
    try {
      const { projectId } = await full.createProject();
      const fullProvider = new NeonDatabaseProvider({ apiUrl: full.url, apiKey: full.apiKey, projectIds: [projectId] }, OPTIONS);
      const limit = await rejection(fullProvider.ensureDatabase(newName()));
      expect(limit).to.be.instanceOf(PermanentError);
      expect(limit.message).to.include(projectId).and.match(/branch limit/).and.match(/BRANCHES_LIMIT_EXCEEDED/);
    } finally {
      await full.close();
    }
  });

  it('deleteDatabase drops the branch and its real objects; a second delete is a no-op; 423 is transient', async () => {
    await emulator.idle(); // earlier tests' operations (a delete) must not make the project busy here
    const branchId = first.ready.branchId.split('/')[1]!;
    const realDb = emulator.realDatabaseName(first.projectId, branchId, NEON_DATABASE_NAME);
    const realRole = emulator.realRoleName(first.projectId, branchId, first.name);
    expect(emulator.realObjects().databases).to.include(realDb);
    const ref: DatabaseRef = { branchId: first.ready.branchId, databaseName: first.ready.databaseName, roleName: first.ready.roleName };

    emulator.failNext(1, 423, {}, { match: (r) => r.method === 'DELETE' });
    const busy = await rejection(provider.deleteDatabase(ref));
    expect(busy).to.be.instanceOf(TransientError);
    expect(busy).to.not.be.instanceOf(RateLimitedError);

    await provider.deleteDatabase(ref);
    expect(branchOf(first.projectId, first.name)).to.equal(undefined);
    expect(emulator.realObjects().databases).to.not.include(realDb);
    expect(emulator.realObjects().roles).to.not.include(realRole);
    expect(await rejection(query(first.ready.connectionUrl, 'SELECT 1'))).to.be.instanceOf(Error);

    const before = emulator.calls.length;
    await provider.deleteDatabase(ref);
    expect(emulator.calls.slice(before).map((c) => `${c.method} ${c.status}`)).to.deep.equal(['DELETE 204']);

    // By name (no branch id recorded): found and deleted, then nothing to find.
    const name = newName();
    await provision(provider, name);
    await emulator.idle();
    const byName: DatabaseRef = { branchId: name, databaseName: name, roleName: name };
    await provider.deleteDatabase(byName);
    expect(branchOf(provider.projectFor(name), name)).to.equal(undefined);
    await provider.deleteDatabase(byName);
    await provider.close();
  });
});
