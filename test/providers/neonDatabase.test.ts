/**
 * NeonDatabaseProvider with the real @neondatabase/api-client (2.7.3) against the Neon emulator, which is backed by
 * real databases and roles on the local Postgres: the URIs it hands back really open the customer's database. Its
 * placements and turns live in a real control-plane database of their own.
 *
 * ensureDatabase is driven as the create-branch step drives it (test/support/neonProvision.ts). Emulator operations
 * take 100 ms; the provider's first wait, before it has seen any finish, is 150 ms.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import pg from 'pg';
import { PgNeonPlacements } from '../../src/db/neonPlacements.ts';
import type { Db } from '../../src/db/pool.ts';
import { PermanentError, RateLimitedError, TransientError } from '../../src/errors.ts';
import { NEON_DATABASE_NAME, NeonDatabaseProvider, type NeonProviderOptions } from '../../src/providers/database/neon.ts';
import type { DatabaseRef } from '../../src/providers/types.ts';
import { startNeonEmulator, type NeonEmulator, type NeonEmulatorCall } from '../emulators/neonEmulator.ts';
import { controlDb } from '../support/controlDb.ts';
import { provision, sleep, type Ready } from '../support/neonProvision.ts';
import { rejection } from '../support/rejection.ts';

const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/postgres';
const PREFIX = `nprov${Date.now().toString(36)}`;
// The provider's own request timeout (15 s): deleting a branch drops real databases, slow on a loaded machine.
const OPTIONS: NeonProviderOptions = { pollInitialMs: 150, pollMaxMs: 1_000 };

const newName = () => `claw_${randomBytes(8).toString('hex')}`;

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

const requestsOf = (calls: NeonEmulatorCall[]) =>
  calls.map((c) => `${c.method} ${c.template.replace('/projects/{project_id}', '')}${c.status && c.status >= 400 ? ` →${c.status}` : ''}`);

const posts = (emulator: NeonEmulator) => {
  const c = emulator.counts();
  return {
    branches: c['POST /projects/{project_id}/branches'] ?? 0,
    roles: c['POST /projects/{project_id}/branches/{branch_id}/roles'] ?? 0,
    databases: c['POST /projects/{project_id}/branches/{branch_id}/databases'] ?? 0,
    endpoints: c['POST /projects/{project_id}/endpoints'] ?? 0,
  };
};

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

/** The seven requests of a provision that nothing got in the way of. */
const ONE_PROVISION = [
  'POST /branches',
  'GET /operations/{operation_id}',
  'POST /branches/{branch_id}/roles',
  'POST /branches/{branch_id}/databases',
  'POST /endpoints',
  'GET /operations/{operation_id}',
  'GET /connection_uri',
];

describe('NeonDatabaseProvider against the Neon emulator', function () {
  this.timeout(60_000);
  let emulator: NeonEmulator;
  let control: Awaited<ReturnType<typeof controlDb>>;
  let db: Db;
  let projectA: string;
  let projectB: string;
  let provider: NeonDatabaseProvider;
  let first: { name: string; projectId: string; ready: Ready };

  const providerFor = (overrides: Partial<{ apiUrl: string; apiKey: string; projectIds: string[] }> = {}, options = OPTIONS) =>
    new NeonDatabaseProvider(
      { apiUrl: emulator.url, apiKey: emulator.apiKey, projectIds: [projectA, projectB], branchLimit: 5_000, ...overrides },
      new PgNeonPlacements(db),
      options,
    );
  const branchOf = (projectId: string, name: string) => emulator.branches(projectId).find((b) => b.branch.name === name);
  const placedIn = async (name: string) => (await db.query('SELECT project_id FROM neon_placements WHERE name = $1', [name])).rows[0]?.project_id as string;
  /** Forgets the turns booked so far (as if they had all been used): the next provision starts at once. */
  const turnsFree = () => db.query('UPDATE neon_projects SET free_at = now()');

  before(async () => {
    emulator = await startNeonEmulator({ prefix: PREFIX, operationMs: 100 });
    // Like real projects: the default branch has neondb_owner/neondb, which every new branch inherits.
    projectA = (await emulator.createProject({ projectId: 'clawdbot-pool-a', defaultDatabase: true })).projectId;
    projectB = (await emulator.createProject({ projectId: 'clawdbot-pool-b', defaultDatabase: true, existingBranches: 1 })).projectId;
    control = await controlDb('nprov_cp');
    db = control.db;
    provider = providerFor();
  });

  after(async () => {
    await emulator?.close();
    await control?.drop();
    const leftovers = await query(
      PG_ADMIN,
      `SELECT datname AS name FROM pg_database WHERE datname LIKE '${PREFIX}%' UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE '${PREFIX}%'`,
    );
    expect(leftovers).to.deep.equal([]);
  });

  it('counts each project of the pool once, from Neon, when it is first used', async () => {
    const before = emulator.calls.length;
    const name = newName();
    const run = await provision(provider, name, { settle: emulator });
    const counts = emulator.calls.slice(before).filter((c) => c.template.endsWith('/branches/count'));
    expect(counts.map((c) => c.path).sort()).to.deep.equal([`/api/v2/projects/${projectA}/branches/count`, `/api/v2/projects/${projectB}/branches/count`]);
    // A had main only, B main and one more: the customer went to A (more room), which now holds two.
    const { rows } = await db.query('SELECT project_id, branches FROM neon_projects ORDER BY project_id');
    expect(rows).to.deep.equal([
      { project_id: projectA, branches: 2 },
      { project_id: projectB, branches: 2 },
    ]);
    expect(run.ready.branchId.startsWith(`${projectA}/`)).to.equal(true);

    // Another process (a restart) counts nothing again: the counts are in the database.
    const again = emulator.calls.length;
    await provision(providerFor(), newName(), { settle: emulator });
    expect(emulator.calls.slice(again).filter((c) => c.template.endsWith('/branches/count'))).to.deep.equal([]);
  });

  it('makes the branch, then role, database and endpoint together, then reads the URI: 3 runs, 7 requests', async () => {
    await turnsFree();
    const name = newName();
    const before = emulator.calls.length;
    const apiBefore = provider.apiCalls;
    const run = await provision(provider, name, { settle: emulator });
    const calls = emulator.calls.slice(before);
    console.log(`      one provision: ${calls.length} Neon requests over ${run.steps} runs: ${requestsOf(calls).join(', ')}`);
    expect(requestsOf(calls)).to.deep.equal(ONE_PROVISION);
    expect(run.steps).to.equal(3);
    expect(provider.apiCalls - apiBefore).to.equal(calls.length);
    expect(run.transient).to.deep.equal([]);

    const projectId = await placedIn(name);
    const snapshot = branchOf(projectId, name)!;
    expect(snapshot, 'the branch, named after the customer').to.not.equal(undefined);
    expect(snapshot.endpoints.map((e) => [e.type, e.current_state])).to.deep.equal([['read_write', 'active']]);
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
    expect(run.progresses).to.have.length(2);
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

  it('operations that usually end at once are looked at in the same run: one run and the same 7 requests', async () => {
    const instant = await startNeonEmulator({ prefix: PREFIX, operationMs: 0 });
    try {
      const { projectId } = await instant.createProject({ projectId: 'clawdbot-pool-instant', defaultDatabase: true });
      // A shortest wait of 200 ms: operations the emulator ends at once count as "usually done before it" even when a
      // loaded machine stretches their measured time to tens of milliseconds.
      const fast = new NeonDatabaseProvider({ apiUrl: instant.url, apiKey: instant.apiKey, projectIds: [projectId], branchLimit: 5_000 }, new PgNeonPlacements(db), { ...OPTIONS, pollInitialMs: 300, pollMinMs: 200 });
      // The first provision learns that the operations take no time (it waits its first guess for each).
      const learning = await provision(fast, newName(), { settle: instant });
      expect(learning.steps).to.equal(3);
      await turnsFree();
      const before = instant.calls.length;
      const run = await provision(fast, newName(), { settle: instant });
      expect(run.steps).to.equal(1);
      expect(requestsOf(instant.calls.slice(before))).to.deep.equal(ONE_PROVISION);
      expect(await query(run.ready.connectionUrl, 'SELECT 1 AS ok')).to.deep.equal([{ ok: 1 }]);
      for (const ready of [learning.ready, run.ready]) await fast.deleteDatabase(ready);
    } finally {
      await instant.close();
    }
  });

  it('a second full run finds everything by name (409s): nothing created, the same URL, in one run', async () => {
    await turnsFree();
    const postsBefore = posts(emulator);
    const before = emulator.calls.length;
    const run = await provision(provider, first.name);
    const calls = emulator.calls.slice(before);
    console.log(`      re-run of a finished provision: ${calls.length} Neon requests: ${requestsOf(calls).join(', ')}`);
    expect(calls.filter((c) => c.method === 'POST').every((c) => c.status === 409)).to.equal(true);
    expect(posts(emulator)).to.deep.equal({ ...postsBefore, branches: postsBefore.branches + 1, roles: postsBefore.roles + 1, databases: postsBefore.databases + 1, endpoints: postsBefore.endpoints + 1 });
    expect(run.steps).to.equal(1);
    expect(run.ready).to.deep.equal(first.ready);
    expect(emulator.branches(first.projectId).filter((b) => b.branch.name === first.name)).to.have.length(1);
  });

  it('a crash after any run (its progress lost) makes no second branch, endpoint, role or database', async () => {
    const name = newName();
    // Every run is done twice from the same saved progress: the first time the worker died before saving its result.
    let progress;
    let ready: Ready | undefined;
    for (let runs = 0; runs < 10 && !ready; runs++) {
      await provider.ensureDatabase(name, progress);
      await emulator.idle();
      const again = await provider.ensureDatabase(name, progress);
      if ('ready' in again) ready = again.ready;
      else {
        await sleep(again.retryInMs);
        await emulator.idle();
        progress = again.pending;
      }
    }
    if (!ready) throw new Error('not ready after 10 runs');
    const projectId = await placedIn(name);
    const mine = emulator.branches(projectId).filter((b) => b.branch.name === name);
    expect(mine).to.have.length(1);
    expect(mine[0]!.endpoints).to.have.length(1);
    expect(mine[0]!.roles.filter((r) => r.name === name)).to.have.length(1);
    expect(mine[0]!.databases.filter((d) => d.name === NEON_DATABASE_NAME)).to.have.length(1);
    const conflicts = emulator.counts();
    expect(conflicts['POST /projects/{project_id}/endpoints']).to.be.at.least(1);
    expect(await query(ready.connectionUrl, 'SELECT 1 AS one')).to.deep.equal([{ one: 1 }]);
  });

  it('a project busy with an operation (423, natural or injected) is a wait for a turn, never an error', async () => {
    const solo = providerFor({ projectIds: [projectA] });
    emulator.holdOperations(); // another customer's operation still runs, however slow the machine
    await turnsFree();
    const other = await solo.ensureDatabase(newName());
    if (!('pending' in other)) throw new Error('expected pending after creating the other branch');
    // As if that operation were not booked here (someone else's): our mutation meets Neon's 423.
    await turnsFree();
    const name = newName();
    const before = emulator.calls.length;
    const busy = await solo.ensureDatabase(name);
    const naturally = emulator.calls.slice(before).filter((c) => c.status === 423 && !c.injected);
    emulator.releaseOperations();
    expect(naturally, 'the emulator answered 423 while the operation ran').to.have.length(1);
    if (!('pending' in busy)) throw new Error('a 423 is a pending');
    expect(busy.detail).to.match(/busy/);
    expect(busy.pending).to.include({ stage: 'branch', projectId: projectA });
    await emulator.idle();
    const run = await provision(solo, name, { start: busy.pending, settle: emulator });
    expect(run.transient).to.deep.equal([]);
    expect(emulator.branches(projectA).filter((s) => s.branch.name === name)).to.have.length(1);

    // Injected on the first mutation of a fresh provision.
    await turnsFree();
    emulator.failNext(1, 423, {}, { match: (r) => r.method === 'POST' });
    const injectedBefore = emulator.calls.length;
    const injected = await provision(provider, newName(), { settle: emulator });
    expect(injected.transient).to.deep.equal([]);
    expect(emulator.calls.slice(injectedBefore).filter((c) => c.status === 423 && c.injected)).to.have.length(1);
  });

  it('concurrent first runs of one name make one branch', async () => {
    const name = newName();
    const [r1, r2] = await Promise.all([provider.ensureDatabase(name), provider.ensureDatabase(name)]);
    if (!('pending' in r1) || !('pending' in r2)) throw new Error('expected both pending');
    const [a, b] = await Promise.all([provision(provider, name, { start: r1.pending }), provision(provider, name, { start: r2.pending })]);
    expect(a.ready).to.deep.equal(b.ready);
    expect(emulator.branches(await placedIn(name)).filter((s) => s.branch.name === name)).to.have.length(1);
  });

  it('concurrent sign-ups take turns in their project instead of meeting 423s: requests per provision stay flat', async () => {
    await emulator.idle();
    await turnsFree();
    // Turns as long as a slow machine needs (creating a real database can take a while here): 390 ms each.
    const patient = providerFor({}, { ...OPTIONS, pollInitialMs: 300, learn: false });
    const names = Array.from({ length: 6 }, newName);
    const before = emulator.calls.length;
    const runs = await Promise.all(names.map((n) => provision(patient, n)));
    const calls = emulator.calls.slice(before);
    const busy = calls.filter((c) => c.status === 423).length;
    const pollsLate = calls.filter((c) => c.template.endsWith('/operations/{operation_id}')).length - 2 * names.length;
    console.log(
      `      ${names.length} concurrent provisions: ${calls.length / names.length} requests and ${runs.reduce((n, r) => n + r.steps, 0) / names.length} runs each, ${busy} × 423, ${pollsLate} extra looks at operations`,
    );
    // Seven requests each, four of them creates; only an operation still running costs one more look, and a 423 (a
    // turn that came too early: the one before overran its booking) the repeat of at most four requests.
    expect(calls.filter((c) => c.method === 'POST' && c.status === 201)).to.have.length(4 * names.length);
    expect(calls.length).to.be.at.most(7 * names.length + 4 * busy + pollsLate);
    expect(busy, 'turns keep concurrent sign-ups off Neon’s 423').to.be.below(names.length);
    for (const n of names) expect(emulator.branches(await placedIn(n)).filter((b) => b.branch.name === n)).to.have.length(1);
  });

  it('503 waits like a busy project (Neon: always safe to retry); timeouts are TransientErrors', async () => {
    const name = newName();
    emulator.failNext(1, 503);
    await turnsFree();
    const r0 = await provider.ensureDatabase(name);
    if (!('pending' in r0)) throw new Error('expected pending');
    expect(r0.detail).to.match(/503/).and.not.include(emulator.apiKey);

    // 503 while polling an operation and on a mutation, mid-way: waited out, and the provision completes.
    const r1 = await provider.ensureDatabase(name, r0.pending);
    if (!('pending' in r1)) throw new Error('expected pending');
    emulator.failNext(1, 503, {}, { match: (r) => r.template.includes('/operations/') });
    emulator.failNext(1, 503, {}, { match: (r) => r.method === 'POST' });
    await sleep(r1.retryInMs);
    const run = await provision(provider, name, { start: r1.pending });
    expect(run.transient.length).to.equal(0);
    expect(emulator.branches(await placedIn(name)).filter((s) => s.branch.name === name)).to.have.length(1);

    // A timeout (the answer held back beyond the client's timeout) and a refused connection.
    await emulator.idle();
    await turnsFree();
    emulator.slowNext(1, 600);
    const slow = await rejection(providerFor({}, { ...OPTIONS, timeoutMs: 200 }).ensureDatabase(newName()));
    expect(slow).to.be.instanceOf(TransientError);
    expect(slow.message).to.match(/did not answer/).and.match(/ECONNABORTED|ETIMEDOUT/);
    const refused = await rejection(providerFor({ apiUrl: `http://127.0.0.1:${await closedPort()}/api/v2` }).ensureDatabase(name, r1.pending));
    expect(refused).to.be.instanceOf(TransientError);
    expect(refused.message).to.match(/ECONNREFUSED/);
  });

  it('429 is a RateLimitedError carrying Retry-After (else 1 s)', async () => {
    await emulator.idle();
    await turnsFree();
    emulator.failNext(1, 429, { 'Retry-After': '7' });
    const err = await rejection(provider.ensureDatabase(newName()));
    expect(err).to.be.instanceOf(RateLimitedError);
    expect((err as RateLimitedError).retryAfterMs).to.equal(7_000);
    await turnsFree();
    emulator.failNext(1, 429, { 'Retry-After': '' });
    const bare = await rejection(provider.ensureDatabase(newName()));
    expect(bare).to.be.instanceOf(RateLimitedError);
    expect((bare as RateLimitedError).retryAfterMs).to.equal(1_000);
  });

  it('a failed operation is a PermanentError naming the action and the error', async () => {
    await emulator.idle();
    const name = newName();
    emulator.failNextOperation('failed', 'timeline creation failed: disk full');
    const err = await rejection(provision(provider, name, { settle: emulator }));
    expect(err).to.be.instanceOf(PermanentError);
    expect(err.message).to.match(/create_branch/).and.match(/ended failed/).and.match(/disk full/).and.match(/br-/);
    // What it left behind is removed by name (abandon's path when no branch id was recorded), and its room freed.
    const projectId = await placedIn(name);
    const count = async () => (await db.query('SELECT branches FROM neon_projects WHERE project_id = $1', [projectId])).rows[0].branches as number;
    const counted = await count();
    await provider.deleteDatabase({ branchId: name, databaseName: NEON_DATABASE_NAME, roleName: name });
    expect(branchOf(projectId, name)).to.equal(undefined);
    expect(await placedIn(name)).to.equal(undefined);
    expect(await count()).to.equal(counted - 1);
  });

  it('configuration faults are PermanentErrors with a clear message and no secret', async () => {
    const badKey = 'neon-key-that-is-wrong-0123456789';
    const unauthorized = await rejection(providerFor({ apiKey: badKey, projectIds: ['clawdbot-never-counted'] }).ensureDatabase(newName()));
    expect(unauthorized).to.be.instanceOf(PermanentError);
    expect(unauthorized.message).to.match(/API key/).and.match(/401/).and.not.include(badKey);

    const missing = await rejection(providerFor({ projectIds: ['no-such-project'] }).ensureDatabase(newName()));
    expect(missing).to.be.instanceOf(PermanentError);
    expect(missing.message).to.match(/no-such-project/).and.match(/not found/);
  });

  it('lists every branch of every project in the pool, by <project>/<branch> (the reconciler)', async () => {
    const before = emulator.calls.length;
    const listed = await providerFor().listDatabases();
    const lists = emulator.calls.slice(before).map((c) => `${c.method} ${c.path}`);
    expect(lists).to.deep.equal([`GET /api/v2/projects/${projectA}/branches`, `GET /api/v2/projects/${projectB}/branches`]);
    const branches = [projectA, projectB].flatMap((p) => emulator.branches(p).map((b) => `${p}/${b.branch.id} ${b.branch.name}`));
    expect(listed.map((d) => `${d.branchId} ${d.name}`).sort()).to.deep.equal(branches.sort());
    expect(listed.find((d) => d.name === first.name)).to.deep.equal({
      branchId: first.ready.branchId,
      databaseName: NEON_DATABASE_NAME,
      roleName: first.name,
      name: first.name,
      missing: [],
    });
  });

  it('deleteDatabase drops the branch and its real objects, freeing its room; a second delete is a no-op; 423 is transient', async () => {
    await emulator.idle(); // earlier tests' operations (a delete) must not make the project busy here
    const branchId = first.ready.branchId.split('/')[1]!;
    const realDb = emulator.realDatabaseName(first.projectId, branchId, NEON_DATABASE_NAME);
    const realRole = emulator.realRoleName(first.projectId, branchId, first.name);
    expect(emulator.realObjects().databases).to.include(realDb);
    const ref: DatabaseRef = { branchId: first.ready.branchId, databaseName: first.ready.databaseName, roleName: first.ready.roleName };
    const count = async () => (await db.query('SELECT branches FROM neon_projects WHERE project_id = $1', [first.projectId])).rows[0].branches as number;
    const counted = await count();

    emulator.failNext(1, 423, {}, { match: (r) => r.method === 'DELETE' });
    const busy = await rejection(provider.deleteDatabase(ref));
    expect(busy).to.be.instanceOf(TransientError);
    expect(busy).to.not.be.instanceOf(RateLimitedError);
    expect(await count()).to.equal(counted);

    await provider.deleteDatabase(ref);
    expect(branchOf(first.projectId, first.name)).to.equal(undefined);
    expect(emulator.realObjects().databases).to.not.include(realDb);
    expect(emulator.realObjects().roles).to.not.include(realRole);
    expect(await rejection(query(first.ready.connectionUrl, 'SELECT 1'))).to.be.instanceOf(Error);
    expect(await count()).to.equal(counted - 1);

    const before = emulator.calls.length;
    await provider.deleteDatabase(ref);
    expect(emulator.calls.slice(before).map((c) => `${c.method} ${c.status}`)).to.deep.equal(['DELETE 204']);
    expect(await count()).to.equal(counted - 1);

    // By name (no branch id recorded): found and deleted, then nothing to find.
    await emulator.idle();
    const name = newName();
    await provision(provider, name, { settle: emulator });
    const placed = await placedIn(name);
    await emulator.idle();
    const byName: DatabaseRef = { branchId: name, databaseName: name, roleName: name };
    await provider.deleteDatabase(byName);
    expect(branchOf(placed, name)).to.equal(undefined);
    await provider.deleteDatabase(byName);
    await provider.close();
  });
});
