/**
 * Placement by capacity over NEON_PROJECT_IDS, against the Neon emulator (which enforces a branch limit per project
 * and answers 422 BRANCHES_LIMIT_EXCEEDED past it) with the placements in a real control-plane database: sign-ups go
 * where there is most room, the 80 % alert comes once per crossing, a project Neon calls full is skipped, and only
 * when all are full does a sign-up fail.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { PgNeonPlacements } from '../../src/db/neonPlacements.ts';
import type { Db } from '../../src/db/pool.ts';
import { PermanentError } from '../../src/errors.ts';
import { NEON_DATABASE_NAME, NeonDatabaseProvider } from '../../src/providers/database/neon.ts';
import { startNeonEmulator, type NeonEmulator } from '../emulators/neonEmulator.ts';
import { controlDb } from '../support/controlDb.ts';
import { provision } from '../support/neonProvision.ts';
import { rejection } from '../support/rejection.ts';

const newName = () => `claw_${randomBytes(8).toString('hex')}`;

describe('Neon placement by capacity', function () {
  this.timeout(60_000);
  let emulator: NeonEmulator;
  let control: Awaited<ReturnType<typeof controlDb>>;
  let db: Db;

  const providerFor = (projectIds: string[], branchLimit: number) =>
    new NeonDatabaseProvider({ apiUrl: emulator.url, apiKey: emulator.apiKey, projectIds, branchLimit }, new PgNeonPlacements(db), {
      pollInitialMs: 60,
    });
  const project = async (options: { maxBranches?: number; existingBranches?: number } = {}) => (await emulator.createProject(options)).projectId;
  const placedIn = async (name: string) => (await db.query('SELECT project_id FROM neon_placements WHERE name = $1', [name])).rows[0]?.project_id as string;
  const counted = async (projectId: string) => (await db.query('SELECT branches FROM neon_projects WHERE project_id = $1', [projectId])).rows[0]?.branches as number;
  const postsTo = (projectId: string, from: number) =>
    emulator.calls.slice(from).filter((c) => c.method === 'POST' && c.path === `/api/v2/projects/${projectId}/branches`);

  before(async () => {
    emulator = await startNeonEmulator({ prefix: `nplace${Date.now().toString(36)}`, operationMs: 30 });
    control = await controlDb('nplace_cp');
    db = control.db;
  });
  after(async () => {
    await emulator?.close();
    await control?.drop();
  });

  it('places each sign-up in the project with the most room, so a pre-filled project and an empty one fill evenly', async () => {
    const filled = await project({ existingBranches: 3 }); // 4 branches with main
    const empty = await project(); // main only
    const provider = providerFor([filled, empty], 10);
    const placements: string[] = [];
    for (let i = 0; i < 5; i++) {
      const name = newName();
      await provision(provider, name, { settle: emulator });
      placements.push((await placedIn(name)) === filled ? 'filled' : 'empty');
    }
    // Room 6 against 9: the empty one takes three, then (tied, the first listed wins) they alternate.
    expect(placements).to.deep.equal(['empty', 'empty', 'empty', 'filled', 'empty']);
    expect([emulator.branches(filled).length, emulator.branches(empty).length]).to.deep.equal([5, 5]);
    expect([await counted(filled), await counted(empty)]).to.deep.equal([5, 5]);
  });

  it('alerts once when a project reaches 80 % (kept across a restart), and again only after it fell below 75 %', async () => {
    const pool = await project(); // main only; with a limit of 5, the third sign-up brings it to 4 of 5
    let provider = providerFor([pool], 5);
    const keysOf = (alerts: { key: string }[]) => alerts.map((a) => a.key);
    const [a, b] = [await provision(provider, newName(), { settle: emulator }), await provision(provider, newName(), { settle: emulator })];
    expect([...a.alerts, ...b.alerts]).to.deep.equal([]);

    const crossing = newName();
    const c = await provision(provider, crossing, { settle: emulator });
    expect(keysOf(c.alerts)).to.deep.equal([`neon-capacity/${pool}/1`]);
    expect(c.alerts[0]!.title).to.equal(`Neon project ${pool} reached 80 % of its branch limit`);
    expect(c.alerts[0]!.reason).to.include('holds 4 of 5 branches (80 %)');
    // Its first run repeated (the worker died before saving it): the same alert again, which the step raises once.
    const repeated = await provider.ensureDatabase(crossing);
    expect(keysOf(repeated.alerts ?? [])).to.deep.equal([`neon-capacity/${pool}/1`]);

    provider = providerFor([pool], 5); // a restart: what was alerted is in the database
    const d = await provision(provider, newName(), { settle: emulator });
    expect(d.alerts).to.deep.equal([]);
    expect(await counted(pool)).to.equal(5);

    // Two customers leave (3 of 5, below 75 %): the next crossing is a new incident.
    await emulator.idle();
    await provider.deleteDatabase({ branchId: a.ready.branchId, databaseName: NEON_DATABASE_NAME, roleName: a.ready.roleName });
    await emulator.idle();
    await provider.deleteDatabase({ branchId: b.ready.branchId, databaseName: NEON_DATABASE_NAME, roleName: b.ready.roleName });
    await emulator.idle();
    expect(await counted(pool)).to.equal(3);
    const again = await provision(provider, newName(), { settle: emulator });
    expect(keysOf(again.alerts)).to.deep.equal([`neon-capacity/${pool}/2`]);
  });

  it('a project Neon says is full is recounted and skipped: the customer goes to another in the same run', async () => {
    const small = await project({ maxBranches: 2 }); // Neon refuses its third branch, whatever we configured
    const roomy = await project();
    const provider = providerFor([small, roomy], 10);
    for (let i = 0; i < 2; i++) await provision(provider, newName(), { settle: emulator }); // one in each
    expect([await counted(small), await counted(roomy)]).to.deep.equal([2, 2]);

    // Tied again: the first listed, which Neon refuses; recounted (a limit of 2 learnt) and placed in the other.
    const name = newName();
    await db.query('UPDATE neon_projects SET free_at = now()'); // no turn to wait for: the first run goes to Neon
    const before = emulator.calls.length;
    const first = await provider.ensureDatabase(name);
    if (!('pending' in first)) throw new Error('expected pending');
    const refusals = emulator.calls.slice(before).filter((c) => c.status === 422);
    expect(refusals.map((c) => c.path)).to.deep.equal([`/api/v2/projects/${small}/branches`]);
    expect(await placedIn(name)).to.equal(roomy);
    expect(first.pending).to.include({ projectId: roomy, stage: 'setup' });
    expect(first.alerts?.map((a) => a.key)).to.deep.equal([`neon-capacity/${small}/1`]);
    expect(first.alerts?.[0]!.title).to.equal(`Neon project ${small} reached its branch limit`);
    const run = await provision(provider, name, { start: first.pending, settle: emulator });
    expect(run.ready.branchId.startsWith(`${roomy}/`)).to.equal(true);

    // From now on the full project is skipped without asking Neon.
    const later = emulator.calls.length;
    await provision(provider, newName(), { settle: emulator });
    expect(postsTo(small, later)).to.deep.equal([]);
    expect(emulator.branches(small)).to.have.length(2);
  });

  it('fails a sign-up with a clear reason only when every project is full, making nothing', async () => {
    const [one, two] = [await project({ maxBranches: 1 }), await project({ maxBranches: 1 })];
    const provider = providerFor([one, two], 10);
    const err = await rejection(provider.ensureDatabase(newName()));
    expect(err).to.be.instanceOf(PermanentError);
    expect(err.message).to.match(/every Neon project in NEON_PROJECT_IDS has reached its branch limit/);
    expect(err.message).to.include(`${one} holds 1 of 1 branches`).and.include(`${two} holds 1 of 1 branches`);
    expect([emulator.branches(one).length, emulator.branches(two).length]).to.deep.equal([1, 1]);

    // Our own count says so too (configured limit reached): refused without a request to Neon.
    const third = await project();
    const counting = providerFor([third], 2);
    await provision(counting, newName(), { settle: emulator });
    const before = emulator.calls.length;
    const full = await rejection(counting.ensureDatabase(newName()));
    expect(full.message).to.include(`${third} holds 2 of 2 branches`);
    expect(emulator.calls.slice(before)).to.deep.equal([]);
  });

  it('many sign-ups at once never overfill a project', async () => {
    const placements = new PgNeonPlacements(db);
    const ids = [`clawdbot-conc-${randomBytes(3).toString('hex')}`, `clawdbot-conc-${randomBytes(3).toString('hex')}`];
    for (const id of ids) await placements.counted(id, 1);
    const results = await Promise.all(Array.from({ length: 8 }, () => placements.place(newName(), ids, 4)));
    const placed = results.filter((r) => 'projectId' in r).map((r) => (r as { projectId: string }).projectId);
    expect(placed.filter((p) => p === ids[0])).to.have.length(3);
    expect(placed.filter((p) => p === ids[1])).to.have.length(3);
    expect(results.filter((r) => 'full' in r)).to.have.length(2);
    expect(await placements.loads(ids, 4)).to.deep.equal(ids.map((projectId) => ({ projectId, branches: 4, limit: 4 })));
  });
});
