// Proves the Neon emulator against the real `@neondatabase/api-client` (2.7.3) and the real local Postgres.
import { expect } from 'chai';
import pg from 'pg';
import { createApiClient, EndpointType, type Api, type Operation } from '@neondatabase/api-client';
import { NEON_LOCKED_MESSAGE, startNeonEmulator, type NeonEmulator } from './neonEmulator.ts';

const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/postgres';
const PREFIX = `nemu${Date.now().toString(36)}`;

interface HttpFailure { status: number; headers: Record<string, string>; data: { code: string; message: string; request_id?: string } }

/** Awaits a request that must fail with an AxiosError and returns its response. */
async function rejection(promise: Promise<unknown>): Promise<HttpFailure> {
  try {
    await promise;
  } catch (error) {
    const e = error as { isAxiosError?: boolean; name?: string; response?: HttpFailure };
    expect(e.isAxiosError, 'an AxiosError').to.equal(true);
    expect(e.name).to.equal('AxiosError');
    expect(e.response, 'a response').to.not.equal(undefined);
    return e.response!;
  }
  throw new Error('expected the request to fail');
}

async function query(uri: string, text: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: uri });
  await client.connect();
  try {
    return (await client.query(text)).rows as Record<string, unknown>[];
  } finally {
    await client.end();
  }
}

describe('Neon emulator with @neondatabase/api-client', function () {
  this.timeout(20_000);
  let emulator: NeonEmulator;
  let api: Api<unknown>;
  let projectId: string;
  let defaultBranchId: string;
  let branchId: string;
  let uri: string;

  /** Polls every operation until it is terminal, as a provisioner would. */
  async function waitFor(operations: Operation[]): Promise<Operation[]> {
    const done: Operation[] = [];
    for (const op of operations) {
      for (;;) {
        const { data } = await api.getProjectOperation(projectId, op.id);
        if (['finished', 'skipped', 'failed', 'error', 'cancelled'].includes(data.operation.status)) {
          done.push(data.operation);
          break;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    return done;
  }

  before(async () => {
    emulator = await startNeonEmulator({ prefix: PREFIX });
    api = createApiClient({ apiKey: emulator.apiKey, baseURL: emulator.url });
    ({ projectId, defaultBranchId } = await emulator.createProject());
  });

  after(async () => {
    await emulator?.close();
    const leftovers = await query(
      PG_ADMIN,
      `SELECT datname AS name FROM pg_database WHERE datname LIKE '${PREFIX}%' UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE '${PREFIX}%'`,
    );
    expect(leftovers).to.deep.equal([]);
  });

  it('creates a branch with a read_write endpoint whose operations run, then finish; mutations meanwhile get 423', async () => {
    emulator.holdOperations(); // the operations stay unfinished until released, however slow this test runs
    const created = await api.createProjectBranch(projectId, {
      branch: { name: 'cust-42' },
      endpoints: [{ type: EndpointType.ReadWrite }],
      annotation_value: { customer: '42' },
    });
    expect(created.status).to.equal(201);
    const { branch, endpoints, operations, roles, databases } = created.data;
    branchId = branch.id;
    expect(branch).to.include({ name: 'cust-42', project_id: projectId, parent_id: defaultBranchId, current_state: 'init', default: false });
    expect(branch.id).to.match(/^br-[a-z0-9-]+$/);
    expect(endpoints).to.have.length(1);
    expect(endpoints[0]).to.include({ type: 'read_write', branch_id: branch.id, current_state: 'init' });
    expect(endpoints[0]!.host).to.match(/^ep-[a-z0-9-]+\.us-east-2\.aws\.neon\.tech$/);
    expect(operations.map((o) => [o.action, o.status])).to.deep.equal([['create_branch', 'running'], ['start_compute', 'scheduling']]);
    expect(roles).to.deep.equal([]);
    expect(databases).to.deep.equal([]);

    const locked = await rejection(api.createProjectBranchRole(projectId, branchId, { role: { name: 'app_owner' } }));
    expect(locked.status).to.equal(423);
    expect(locked.data).to.include({ code: '', message: NEON_LOCKED_MESSAGE });
    expect(locked.data.request_id).to.be.a('string');
    // GETs are never locked.
    expect((await api.getProjectBranch(projectId, branchId)).data.branch.current_state).to.equal('init');
    expect((await api.getProjectOperation(projectId, operations[0]!.id)).data.operation.status).to.equal('running');

    emulator.releaseOperations();
    const finished = await waitFor(operations);
    expect(finished.map((o) => o.status)).to.deep.equal(['finished', 'finished']);
    expect(finished[0]!.total_duration_ms).to.be.greaterThan(0);
    const { data } = await api.getProjectBranch(projectId, branchId);
    expect(data.branch.current_state).to.equal('ready');
    expect(data.annotation.value).to.deep.equal({ customer: '42' });
    expect((await api.listProjectBranchEndpoints(projectId, branchId)).data.endpoints[0]!.current_state).to.equal('active');
  });

  it('creates a role and a database whose connection URI opens the real database', async () => {
    const role = await api.createProjectBranchRole(projectId, branchId, { role: { name: 'app_owner' } });
    expect(role.status).to.equal(201);
    expect(role.data.role).to.include({ name: 'app_owner', branch_id: branchId });
    const password = role.data.role.password!;
    expect(password).to.match(/^npg_[A-Za-z0-9]{12}$/);
    expect(role.data.operations.map((o) => o.action)).to.deep.equal(['apply_config']);
    await waitFor(role.data.operations);
    expect((await api.getProjectBranchRolePassword(projectId, branchId, 'app_owner')).data.password).to.equal(password);

    const db = await api.createProjectBranchDatabase(projectId, branchId, { database: { name: 'app', owner_name: 'app_owner' } });
    expect(db.status).to.equal(201);
    expect(db.data.database).to.include({ name: 'app', owner_name: 'app_owner', branch_id: branchId });
    expect(db.data.database.id).to.be.a('number');
    await waitFor(db.data.operations);
    const dup = await rejection(api.createProjectBranchDatabase(projectId, branchId, { database: { name: 'app', owner_name: 'app_owner' } }));
    expect(dup.status).to.equal(409);

    const { data } = await api.getConnectionUri({ projectId, branch_id: branchId, database_name: 'app', role_name: 'app_owner', pooled: true });
    uri = data.uri;
    const parsed = new URL(uri);
    const realDb = emulator.realDatabaseName(projectId, branchId, 'app');
    const realRole = emulator.realRoleName(projectId, branchId, 'app_owner');
    expect(parsed.protocol).to.equal('postgresql:');
    expect(parsed.hostname).to.equal('127.0.0.1');
    expect(decodeURIComponent(parsed.password)).to.equal(password);
    expect(parsed.pathname).to.equal(`/${realDb}`);
    expect(realDb.length).to.be.at.most(63);

    const rows = await query(uri, 'SELECT current_user, current_database()');
    expect(rows).to.deep.equal([{ current_user: realRole, current_database: realDb }]);
    // The owner can create tables in its own database.
    await query(uri, 'CREATE TABLE t (id int); INSERT INTO t VALUES (1)');
    const owner = await query(PG_ADMIN, `SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = '${realDb}'`);
    expect(owner).to.deep.equal([{ owner: realRole }]);
    expect(emulator.branches(projectId).find((b) => b.branch.id === branchId)?.databases.map((d) => d.realName)).to.deep.equal([realDb]);
  });

  it("keeps branches apart: another branch's role cannot connect to this branch's database", async () => {
    const other = await api.createProjectBranch(projectId, { branch: { name: 'cust-420' }, endpoints: [{ type: EndpointType.ReadWrite }] });
    await waitFor(other.data.operations);
    const otherId = other.data.branch.id;
    // Same Neon role name on another branch: a different real role.
    await waitFor((await api.createProjectBranchRole(projectId, otherId, { role: { name: 'app_owner' } })).data.operations);
    await waitFor((await api.createProjectBranchDatabase(projectId, otherId, { database: { name: 'app', owner_name: 'app_owner' } })).data.operations);
    const otherUri = (await api.getConnectionUri({ projectId, branch_id: otherId, database_name: 'app', role_name: 'app_owner' })).data.uri;
    expect(otherUri).to.not.equal(uri);
    expect(await query(otherUri, 'SELECT count(*)::int AS n FROM pg_class WHERE relname = $$t$$')).to.deep.equal([{ n: 0 }]);

    const intruder = new URL(otherUri);
    intruder.pathname = new URL(uri).pathname;
    let message = '';
    await query(intruder.toString(), 'SELECT 1').catch((e: Error) => (message = e.message));
    expect(message).to.match(/permission denied for database/);
  });

  it('searches branches by partial name or id (exact filtering is the client’s job) and paginates with pagination.next', async () => {
    await waitFor((await api.createProjectBranch(projectId, { branch: { name: 'cust-4' } })).data.operations);
    const found = await api.listProjectBranches({ projectId, search: 'cust-42' });
    expect(found.data.branches.map((b) => b.name).sort()).to.deep.equal(['cust-42', 'cust-420']);
    expect(found.data.branches.filter((b) => b.name === 'cust-42').map((b) => b.id)).to.deep.equal([branchId]);
    expect(found.data.annotations[branchId]?.value).to.deep.equal({ customer: '42' });
    const byId = await api.listProjectBranches({ projectId, search: branchId.slice(0, -2) });
    expect(byId.data.branches.map((b) => b.id)).to.include(branchId);

    const names: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await api.listProjectBranches({ projectId, sort_by: 'name', sort_order: 'asc', limit: 2, ...(cursor ? { cursor } : {}) });
      pages++;
      expect(page.data.branches.length).to.be.at.most(2);
      expect(page.data.pagination).to.include({ sort_by: 'name', sort_order: 'asc' });
      names.push(...page.data.branches.map((b) => b.name));
      cursor = page.data.pagination?.next;
    } while (cursor);
    expect(pages).to.equal(2);
    expect(names).to.deep.equal(['cust-4', 'cust-42', 'cust-420', 'main']);
    const desc = await api.listProjectBranches({ projectId, sort_by: 'created_at', limit: 1 });
    expect(desc.data.branches.map((b) => b.name)).to.deep.equal(['cust-4']);
    expect((await api.countProjectBranches({ projectId, search: 'cust' })).data.count).to.equal(3);

    const dup = await rejection(api.createProjectBranch(projectId, { branch: { name: 'cust-42' }, endpoints: [{ type: EndpointType.ReadWrite }] }));
    expect(dup.status).to.equal(409);
    expect(dup.data.message).to.equal('branch already exists');
  });

  it('deletes a branch (object signature): the real database goes, a second delete answers 204, the default branch is refused', async () => {
    const deleted = await api.deleteProjectBranch({ projectId, branchId });
    expect(deleted.status).to.equal(200);
    expect(deleted.data.branch.id).to.equal(branchId);
    expect(deleted.data.operations.map((o) => o.action)).to.deep.equal(['suspend_compute', 'delete_timeline']);
    let message = '';
    await query(uri, 'SELECT 1').catch((e: Error) => (message = e.message));
    expect(message).to.match(/does not exist/);
    const roleLeft = await query(PG_ADMIN, `SELECT 1 FROM pg_roles WHERE rolname = '${emulator.realRoleName(projectId, branchId, 'app_owner')}'`);
    expect(roleLeft).to.deep.equal([]);

    const again = await api.deleteProjectBranch({ projectId, branchId });
    expect(again.status).to.equal(204);
    expect(again.data).to.equal('');
    expect((await rejection(api.getProjectBranch(projectId, branchId))).status).to.equal(404);
    await waitFor(deleted.data.operations);
    expect((await rejection(api.deleteProjectBranch({ projectId, branchId: defaultBranchId }))).status).to.equal(400);
    expect(emulator.branches(projectId).map((b) => b.branch.name)).to.deep.equal(['main', 'cust-420', 'cust-4']);
  });

  it('surfaces injected 429 (with Retry-After), 503, 401 and the rate limit as AxiosErrors', async () => {
    emulator.failNext(1, 429, { 'Retry-After': '3' });
    const limited = await rejection(api.listProjectBranches({ projectId }));
    expect(limited.status).to.equal(429);
    expect(limited.headers['retry-after']).to.equal('3');
    expect(limited.data.message).to.be.a('string');

    emulator.failNext(1, 503);
    const unavailable = await rejection(api.createProjectBranch(projectId, { branch: { name: 'never' } }));
    expect(unavailable.status).to.equal(503);
    expect(emulator.branches(projectId).map((b) => b.branch.name)).to.not.include('never');

    const bad = createApiClient({ apiKey: 'wrong', baseURL: emulator.url });
    expect((await rejection(bad.listProjectBranches({ projectId }))).status).to.equal(401);

    emulator.setRateLimit(2);
    await api.listProjectBranches({ projectId });
    await api.listProjectBranches({ projectId });
    const rate = await rejection(api.listProjectBranches({ projectId }));
    expect(rate.status).to.equal(429);
    expect(Number(rate.headers['retry-after'])).to.be.within(1, 60);
    emulator.setRateLimit(undefined);

    // A slow answer: the client times out, yet the mutation happened (as with real Neon).
    emulator.slowNext(1, 300);
    const impatient = createApiClient({ apiKey: emulator.apiKey, baseURL: emulator.url, timeout: 100 });
    const timedOut = await impatient.createProjectBranch(projectId, { branch: { name: 'slow' } }).catch((e: { code?: string }) => e.code);
    expect(timedOut).to.equal('ECONNABORTED');
    expect(emulator.branches(projectId).map((b) => b.branch.name)).to.include('slow');
    await emulator.idle(projectId);
  });

  it('reports an injected failed operation through getProjectOperation and listProjectOperations', async () => {
    emulator.failNextOperation('failed');
    const branchOther = emulator.branches(projectId).find((b) => b.branch.name === 'cust-420')!.branch.id;
    const created = await api.createProjectBranchRole(projectId, branchOther, { role: { name: 'reader' } });
    expect(created.status).to.equal(201);
    const [op] = await waitFor(created.data.operations);
    expect(op).to.include({ status: 'failed', action: 'apply_config', failures_count: 1 });
    expect(op!.error).to.be.a('string');

    const listed = await api.listProjectOperations({ projectId, limit: 2 });
    expect(listed.data.operations[0]!.id).to.equal(op!.id);
    expect(listed.data.pagination?.cursor).to.be.a('string');
    const next = await api.listProjectOperations({ projectId, limit: 2, cursor: listed.data.pagination!.cursor });
    expect(next.data.operations.map((o) => o.id)).to.not.include(op!.id);

    const counts = emulator.counts();
    expect(counts['POST /projects/{project_id}/branches']).to.equal(6);
    expect(counts['DELETE /projects/{project_id}/branches/{branch_id}']).to.equal(3);
    expect(counts['GET /projects/{project_id}/connection_uri']).to.equal(2);
    expect(emulator.calls.filter((c) => c.status === 423)).to.have.length(1);
  });

  it('inherits a default role and database (like neondb_owner/neondb) with connection_uris; concurrent creates get one 201 and one 423', async () => {
    const project = await emulator.createProject({ defaultDatabase: true });
    const [main] = emulator.branches(project.projectId);
    expect(main!.roles.map((r) => r.name)).to.deep.equal(['neondb_owner']);
    const results = await Promise.allSettled([
      api.createProjectBranch(project.projectId, { branch: { name: 'a' }, endpoints: [{ type: EndpointType.ReadWrite }] }),
      api.createProjectBranch(project.projectId, { branch: { name: 'b' }, endpoints: [{ type: EndpointType.ReadWrite }] }),
    ]);
    const ok = results.find((r) => r.status === 'fulfilled');
    const locked = results.find((r) => r.status === 'rejected');
    expect(ok && locked).to.not.equal(undefined);
    expect((await rejection(Promise.reject((locked as PromiseRejectedResult).reason))).status).to.equal(423);
    const { data } = (ok as PromiseFulfilledResult<Awaited<ReturnType<Api<unknown>['createProjectBranch']>>>).value;
    expect(data.roles.map((r) => r.name)).to.deep.equal(['neondb_owner']);
    expect(data.databases.map((d) => [d.name, d.owner_name])).to.deep.equal([['neondb', 'neondb_owner']]);
    expect(data.connection_uris).to.have.length(1);
    expect(data.connection_uris![0]!.connection_parameters.password).to.equal(main!.roles[0]!.password);
    await emulator.idle(project.projectId);
    const rows = await query(data.connection_uris![0]!.connection_uri, 'SELECT current_database()');
    expect(rows).to.deep.equal([{ current_database: emulator.realDatabaseName(project.projectId, data.branch.id, 'neondb') }]);
  });

  it('creates a read-write endpoint for a branch without one (start_compute, then active), refuses a second (409)', async () => {
    const project = await emulator.createProject({ defaultDatabase: true });
    const created = await api.createProjectBranch(project.projectId, { branch: { name: 'no-compute' } });
    expect(created.data.endpoints).to.deep.equal([]);
    expect(created.data.operations.map((o) => o.action)).to.deep.equal(['create_branch']);
    await emulator.idle(project.projectId);
    const branchId = created.data.branch.id;
    // Without a compute, a role and a database start no operation.
    const role = await api.createProjectBranchRole(project.projectId, branchId, { role: { name: 'owner' } });
    expect(role.data.operations).to.deep.equal([]);
    const db = await api.createProjectBranchDatabase(project.projectId, branchId, { database: { name: 'app', owner_name: 'owner' } });
    expect(db.data.operations).to.deep.equal([]);

    emulator.holdOperations();
    const endpoint = await api.createProjectEndpoint(project.projectId, { endpoint: { branch_id: branchId, type: EndpointType.ReadWrite } });
    expect(endpoint.status).to.equal(201);
    expect(endpoint.data.endpoint).to.include({ branch_id: branchId, type: 'read_write', current_state: 'init' });
    expect(endpoint.data.operations.map((o) => [o.action, o.endpoint_id])).to.deep.equal([['start_compute', endpoint.data.endpoint.id]]);
    const second = await rejection(api.createProjectEndpoint(project.projectId, { endpoint: { branch_id: branchId, type: EndpointType.ReadWrite } }));
    expect(second.status).to.equal(409);
    const locked = await rejection(api.createProjectBranchRole(project.projectId, branchId, { role: { name: 'other' } }));
    expect(locked.status).to.equal(423);
    emulator.releaseOperations();
    await emulator.idle(project.projectId);
    expect((await api.getProjectEndpoint(project.projectId, endpoint.data.endpoint.id)).data.endpoint.current_state).to.equal('active');
    const { data } = await api.getConnectionUri({ projectId: project.projectId, branch_id: branchId, database_name: 'app', role_name: 'owner' });
    expect(await query(data.uri, 'SELECT current_user AS u')).to.deep.equal([{ u: emulator.realRoleName(project.projectId, branchId, 'owner') }]);
    expect((await rejection(api.createProjectEndpoint(project.projectId, { endpoint: { branch_id: 'br-none-000000', type: EndpointType.ReadWrite } }))).status).to.equal(404);
  });

  it('enforces a branch limit per project (default branch included): 422 BRANCHES_LIMIT_EXCEEDED, after the name check', async () => {
    const project = await emulator.createProject({ maxBranches: 3, existingBranches: 1 });
    expect(emulator.branches(project.projectId).map((b) => [b.branch.name, b.branch.current_state])).to.deep.equal([
      ['main', 'ready'],
      ['existing-1', 'ready'],
    ]);
    expect((await api.countProjectBranches({ projectId: project.projectId })).data.count).to.equal(2);
    await api.createProjectBranch(project.projectId, { branch: { name: 'third' } });
    await emulator.idle(project.projectId);
    const full = await rejection(api.createProjectBranch(project.projectId, { branch: { name: 'fourth' } }));
    expect(full.status).to.equal(422);
    expect(full.data.code).to.equal('BRANCHES_LIMIT_EXCEEDED');
    expect(full.data.message).to.match(/limit of 3/);
    expect((await rejection(api.createProjectBranch(project.projectId, { branch: { name: 'third' } }))).status).to.equal(409);
    // Other projects keep the emulator's default.
    const other = await emulator.createProject();
    for (const name of ['x', 'y', 'z']) {
      await api.createProjectBranch(other.projectId, { branch: { name } });
      await emulator.idle(other.projectId);
    }
    expect(emulator.branches(other.projectId)).to.have.length(4);
  });
});
