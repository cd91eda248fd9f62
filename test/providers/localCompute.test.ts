/**
 * LocalComputeProvider against the real local Postgres and real child processes: a throwaway control-plane
 * database (prov_test_<hex>), a customer database + role for the real runtime (prov_cust_<hex>), a temp log dir.
 * after() removes all of it and checks that no database, role, process or directory is left.
 *
 * The tests of the real runtime ('rt') run in order: deploy → redeploy → SIGKILL + restart → close + adoption.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.ts';
import { createPool, ensureDatabase, type Db } from '../../src/db/pool.ts';
import { quoteIdent } from '../../core/postgres.ts';
import { setLogLevel } from '../../core/logger.ts';
import { LocalComputeProvider, type LocalComputeOptions } from '../../src/providers/compute/local.ts';
import type { DeploymentState } from '../../src/providers/types.ts';
import { SecretStore } from '../../src/secrets.ts';
import { applyRuntimeSchema } from '../../core/runtimeSchema.ts';
import { CONTRACT_STUB, computeProviderContract } from './computeContract.ts';

const SERVER = 'postgres://postgres@127.0.0.1:5432';
const RUNTIME_MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../runtime/src/main.ts');
/** What a child may see besides the variables it was given. */
const PROVIDER_ENV = ['PATH', 'NODE_ENV', 'HOST', 'PORT', 'NODE_OPTIONS', 'WORKSPACE_DIR'];
/** A stand-in runtime: answers every request with its whole environment as JSON. */
const ENV_ECHO = [
  '-e',
  `require('node:http').createServer((req, res) => {
     res.setHeader('content-type', 'application/json');
     res.end(JSON.stringify(process.env));
   }).listen(Number(process.env.PORT), process.env.HOST);`,
];

interface Row {
  name: string;
  port: number;
  desired_state: string;
  pid: number | null;
  deployment_id: string | null;
  limits: Record<string, number>;
}

/** GET over a fresh connection (no keep-alive: a runtime's server.close() must not wait on us). */
function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 2_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Whether nothing listens on the port (connection refused). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNREFUSED' ? resolve(true) : reject(err)));
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}


/** The service and its address, as create-service asks for them. */
async function service(p: LocalComputeProvider, name: string): Promise<{ serviceId: string; accessUrl: string }> {
  const { serviceId } = await p.createService(name);
  return { serviceId, accessUrl: await p.accessUrl(serviceId) };
}

describe('LocalComputeProvider (real processes)', function () {
  this.timeout(30_000);

  const id = randomBytes(4).toString('hex');
  const controlDbName = `prov_test_${id}`;
  const customerName = `prov_cust_${id}`;
  const customerPassword = randomBytes(16).toString('hex');
  let admin: pg.Client;
  let pool: Db;
  let secrets: SecretStore;
  let logDir: string;
  const providers: LocalComputeProvider[] = [];
  /** Every pid a provider ever recorded, to prove in after() that none outlives the tests. */
  const pids = new Set<number>();

  const provider = (options: Partial<LocalComputeOptions> = {}) => {
    const p = new LocalComputeProvider(pool, secrets, {
      command: process.execPath,
      args: ['--import', 'tsx', RUNTIME_MAIN],
      logDir,
      workspacesDir: path.join(logDir, 'workspaces'),
      ...options,
    });
    providers.push(p);
    return p;
  };
  const row = async (name: string): Promise<Row | undefined> => {
    const r = (await pool.query<Row>('SELECT * FROM local_services WHERE name = $1', [name])).rows[0];
    if (r?.pid) pids.add(r.pid);
    return r;
  };
  const portOf = (accessUrl: string) => Number(new URL(accessUrl).port);
  const stateOf = async (p: LocalComputeProvider, name: string, deploymentId: string, want: DeploymentState) =>
    waitFor(`deployment ${deploymentId} to be ${want}`, async () => {
      const s = await p.deploymentState(name, deploymentId);
      return s.state === want ? s : undefined;
    });
  const healthy = (accessUrl: string) =>
    waitFor(`${accessUrl}/health to answer 200`, async () => {
      const res = await get(`${accessUrl}/health`);
      return res.status === 200 ? res : undefined;
    });
  const secretRows = async (owner: string) =>
    Number((await pool.query('SELECT count(*) AS n FROM secrets WHERE owner = $1', [owner])).rows[0].n);

  before(async () => {
    setLogLevel('error'); // restarts log warnings; keep the test output readable
    logDir = await mkdtemp(path.join(tmpdir(), 'prov-compute-'));
    admin = new pg.Client({ connectionString: `${SERVER}/postgres` });
    await admin.connect();

    await ensureDatabase(`${SERVER}/${controlDbName}`);
    pool = createPool(`${SERVER}/${controlDbName}`);
    await migrate(pool);
    secrets = new SecretStore(pool, randomBytes(32));

    // The real runtime's customer database, made by hand: a login role owning its database, with the schema.
    await admin.query(`CREATE ROLE ${quoteIdent(customerName)} LOGIN PASSWORD '${customerPassword}'`);
    await admin.query(`CREATE DATABASE ${quoteIdent(customerName)} OWNER ${quoteIdent(customerName)}`);
    const customer = new pg.Client({ connectionString: `postgres://${customerName}:${customerPassword}@127.0.0.1:5432/${customerName}` });
    await customer.connect();
    try {
      await applyRuntimeSchema(customer);
    } finally {
      await customer.end();
    }
  });

  after(async () => {
    setLogLevel('info');
    for (const p of providers) await p.close().catch(() => undefined);
    if (pool) {
      const { rows } = await pool.query<Row>('SELECT * FROM local_services').catch(() => ({ rows: [] as Row[] }));
      for (const r of rows) if (r.pid) pids.add(r.pid);
      await pool.end();
    }
    // Anything a provider started and did not stop (a failed test midway) is ours to end.
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    if (admin) {
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(controlDbName)} WITH (FORCE)`);
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(customerName)} WITH (FORCE)`);
      await admin.query(`DROP ROLE IF EXISTS ${quoteIdent(customerName)}`);
    }
    if (logDir) await rm(logDir, { recursive: true, force: true });

    const leftDbs = admin
      ? (await admin.query('SELECT datname FROM pg_database WHERE datname IN ($1, $2)', [controlDbName, customerName])).rows
      : [];
    const leftRoles = admin ? (await admin.query('SELECT rolname FROM pg_roles WHERE rolname = $1', [customerName])).rows : [];
    await admin?.end();
    const alive = await waitFor('killed processes to be gone', async () => {
      const still = [...pids].filter(isAlive);
      return still.length === 0 ? still : undefined;
    }, 3_000).catch(() => [...pids].filter(isAlive));
    expect({ leftDbs, leftRoles, alive, logDir: logDir ? existsSync(logDir) : false }, 'left behind').to.deep.equal({
      leftDbs: [],
      leftRoles: [],
      alive: [],
      logDir: false,
    });
  });

  computeProviderContract('local', () => ({ provider: provider({ args: ['-e', CONTRACT_STUB] }), name: `contract-${id}` }));

  it('createService is idempotent by name (one row, one port); another name gets another port', async () => {
    const p = provider();
    expect(await p.createService('svc-a')).to.deep.equal({ serviceId: 'svc-a', created: true });
    expect(await p.createService('svc-a')).to.deep.equal({ serviceId: 'svc-a', created: false });
    const a1 = await service(p, 'svc-a');
    const a2 = await service(p, 'svc-a');
    const b = await service(p, 'svc-b');
    expect(a1.serviceId).to.equal('svc-a');
    expect(a1.accessUrl).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(a2).to.deep.equal(a1);
    expect(b.serviceId).to.equal('svc-b');
    expect(portOf(b.accessUrl)).to.not.equal(portOf(a1.accessUrl));
    const r = await row('svc-a');
    expect(r).to.include({ port: portOf(a1.accessUrl), desired_state: 'stopped', pid: null, deployment_id: null });

    await p.deleteService('svc-a');
    await p.deleteService('svc-b');
    expect(await row('svc-a')).to.equal(undefined);
    expect(await row('svc-b')).to.equal(undefined);
  });

  it('5 concurrent createService calls for a new name make one row and agree on it', async () => {
    const p = provider();
    const refs = await Promise.all([1, 2, 3, 4, 5].map(() => service(p, 'svc-conc')));
    expect(new Set(refs.map((r) => JSON.stringify(r))).size).to.equal(1);
    const { rows } = await pool.query<Row>('SELECT * FROM local_services WHERE name = $1', ['svc-conc']);
    expect(rows).to.have.length(1);
    expect(refs[0]!.accessUrl).to.equal(`http://127.0.0.1:${rows[0]!.port}`);
    await p.deleteService('svc-conc');
  });

  it('setVariables, setLimits, configure, accessUrl and deploy refuse a service that does not exist (and create none)', async () => {
    const p = provider();
    for (const call of [
      () => p.setVariables('svc-ghost', { A: 'b' }),
      () => p.setLimits('svc-ghost', { cpu: 1, memoryMb: 512 }),
      () => p.configure('svc-ghost', { variables: { A: 'b' }, limits: { cpu: 1, memoryMb: 512, pidsLimit: 128 } }),
      () => p.accessUrl('svc-ghost'),
      () => p.deploy('svc-ghost'),
    ]) {
      let error: Error | undefined;
      await call().catch((err: Error) => (error = err));
      expect(error?.message).to.match(/svc-ghost does not exist/);
    }
    expect(await row('svc-ghost')).to.equal(undefined);
    expect(await secretRows('local-service/svc-ghost')).to.equal(0);
  });

  describe('the real runtime', () => {
    let rt: LocalComputeProvider;
    let accessUrl: string;
    let deploymentId: string;
    const variables = () => ({
      DATABASE_URL: `postgres://${customerName}:${customerPassword}@127.0.0.1:5432/${customerName}`,
      WORKSPACE_ID: `ws_${id}`,
      PLAN: 'starter',
      MESSAGE_LIMIT: '5000',
      RUNTIME_VERSION: 'v-test',
      SETTINGS_GENERATION: '3',
    });

    before(() => {
      rt = provider();
    });

    it('setVariables + setLimits + deploy → in_progress, then success, and /health answers 200', async () => {
      ({ accessUrl } = await service(rt, 'rt'));
      await rt.setVariables('rt', variables());
      await rt.setLimits('rt', { cpu: 0.5, memoryMb: 512 });
      // A deployment is only a success once the runtime has stayed up a moment (a few hundred ms): with the clock
      // standing still from the deploy to the first look, however slow the machine, that moment has not passed.
      const realNow = Date.now;
      const frozen = realNow();
      Date.now = () => frozen;
      let early: Awaited<ReturnType<LocalComputeProvider['deploymentState']>>;
      try {
        ({ deploymentId } = await rt.deploy('rt'));
        early = await rt.deploymentState('rt', deploymentId);
      } finally {
        Date.now = realNow;
      }
      expect(deploymentId).to.match(/^dep-/);
      expect(early.state, 'right after deploy').to.equal('in_progress');

      await stateOf(rt, 'rt', deploymentId, 'success');
      const health = await healthy(accessUrl);
      expect(JSON.parse(health.body)).to.deep.equal({ status: 'ok', version: 'v-test', settingsGeneration: 3 });

      const r = (await row('rt'))!;
      expect(r).to.include({ desired_state: 'running', deployment_id: deploymentId, port: portOf(accessUrl) });
      expect(r.limits).to.deep.equal({ cpu: 0.5, memoryMb: 512 });
      expect(r.pid).to.be.a('number');
      expect(isAlive(r.pid!)).to.equal(true);

      // The runtime process's own environment, as the kernel holds it.
      const environ = readFileSync(`/proc/${r.pid}/environ`, 'utf8').split('\0').filter(Boolean);
      const env = Object.fromEntries(environ.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
      expect(Object.keys(env).sort()).to.deep.equal([...PROVIDER_ENV, ...Object.keys(variables())].sort());
      expect(env).to.include({ ...variables(), HOST: '127.0.0.1', PORT: String(portOf(accessUrl)) });
      expect(env.NODE_OPTIONS).to.equal('--max-old-space-size=384');

      // Variables are kept sealed, not in clear.
      expect(JSON.parse((await secrets.get('local-service/rt', 'variables'))!)).to.deep.equal(variables());
      const sealed = await pool.query<{ ciphertext: Buffer }>(`SELECT ciphertext FROM secrets WHERE owner = 'local-service/rt'`);
      expect(sealed.rows).to.have.length(1);
      expect(sealed.rows[0]!.ciphertext.includes(Buffer.from(customerPassword))).to.equal(false);

      const log = await readFile(path.join(logDir, 'rt.log'), 'utf8');
      expect(log).to.include(`"port":${portOf(accessUrl)},"message":"listening"`);
    });

    it('a second deploy gets a new deploymentId; the old one reports failed (superseded), the new one success', async () => {
      const oldPid = (await row('rt'))!.pid!;
      const second = await rt.deploy('rt');
      expect(second.deploymentId).to.not.equal(deploymentId);
      const old = await rt.deploymentState('rt', deploymentId);
      expect(old.state).to.equal('failed');
      expect(old.detail).to.match(/superseded/);
      expect(isAlive(oldPid), 'the replaced runtime is gone').to.equal(false);

      await stateOf(rt, 'rt', second.deploymentId, 'success');
      expect((await rt.deploymentState('rt', deploymentId)).state, 'old stays failed').to.equal('failed');
      const newPid = (await row('rt'))!.pid!;
      expect(newPid).to.not.equal(oldPid);
      await healthy(accessUrl);
      deploymentId = second.deploymentId;
    });

    it('records a runtime killed with SIGKILL as exited without restarting it; restart() brings it back on its port', async () => {
      const pid = (await row('rt'))!.pid!;
      expect(isAlive(pid)).to.equal(true);
      expect(await rt.serviceState('rt')).to.include({ running: true });
      process.kill(pid, 'SIGKILL');
      const exited = await waitFor('the exit to be recorded', async () => {
        const r = await row('rt');
        return r && r.pid === null ? r : undefined;
      });
      expect((exited as Row & { exit_detail: string }).exit_detail).to.match(/SIGKILL/);
      const state = await rt.serviceState('rt');
      expect(state.running).to.equal(false);
      expect(state.detail).to.match(/killed by SIGKILL/);
      expect(await rt.recentLog('rt'), 'the runtime log shows').to.be.an('array').that.is.not.empty;
      await new Promise((r) => setTimeout(r, 300));
      expect((await row('rt'))!.pid, 'not restarted by the provider itself').to.equal(null);

      const { action } = await rt.restart('rt');
      expect(action).to.match(/pid \d+/);
      const newPid = (await row('rt'))!.pid!;
      expect(newPid).to.not.equal(pid);
      await healthy(accessUrl);
      await stateOf(rt, 'rt', deploymentId, 'success');
      expect((await row('rt'))!.desired_state).to.equal('running');
    });

    it('close() as the last supervisor stops the processes but keeps desired_state; a new supervisor starts them again', async () => {
      await rt.startSupervising();
      const pid = (await row('rt'))!.pid!;
      await rt.close();
      expect(isAlive(pid), 'closed runtime').to.equal(false);
      expect(await refused(portOf(accessUrl)), 'port after close').to.equal(true);
      expect((await row('rt'))!.desired_state).to.equal('running');

      const restarted = provider(); // a new control plane process
      expect(await restarted.startSupervising()).to.equal(1);
      const newPid = (await row('rt'))!.pid!;
      expect(newPid).to.not.equal(pid);
      await healthy(accessUrl);
      await stateOf(restarted, 'rt', deploymentId, 'success');
      expect((await pool.query('SELECT owner FROM local_services WHERE name = $1', ['rt'])).rows[0].owner).to.equal(restarted.supervisorId);

      await restarted.deleteService('rt');
      expect(isAlive(newPid)).to.equal(false);
      expect(await refused(portOf(accessUrl))).to.equal(true);
      expect(await row('rt')).to.equal(undefined);
      expect(await secretRows('local-service/rt')).to.equal(0);
      await restarted.close();
    });
  });

  it("gives the child only the variables it was given: the parent's environment does not leak", async () => {
    const p = provider({ args: ENV_ECHO });
    const { accessUrl } = await service(p, 'svc-env');
    const marker = `PROV_TEST_LEAK_${id.toUpperCase()}`;
    process.env[marker] = 'must-not-leak';
    try {
      // PORT and HOST are the provider's to set: a variable cannot move the service off its port.
      await p.setVariables('svc-env', { GIVEN_VAR: 'given-value', PORT: '1', HOST: '0.0.0.0' });
      await p.setLimits('svc-env', { cpu: 1, memoryMb: 256 });
      const { deploymentId } = await p.deploy('svc-env');
      const res = await waitFor('the env echo to answer', async () => {
        const r = await get(`${accessUrl}/`);
        return r.status === 200 ? r : undefined;
      });
      const env = JSON.parse(res.body) as Record<string, string>;
      expect(process.env[marker], 'the marker is set in the parent').to.equal('must-not-leak');
      expect(env).to.not.have.property(marker);
      expect(env.GIVEN_VAR).to.equal('given-value');
      expect(env.PORT).to.equal(String(portOf(accessUrl)));
      expect(env.HOST).to.equal('127.0.0.1');
      expect(env.NODE_OPTIONS).to.equal('--max-old-space-size=192');
      expect(env.PATH).to.equal(process.env.PATH);
      expect(Object.keys(env).sort()).to.deep.equal([...PROVIDER_ENV, 'GIVEN_VAR'].sort());
      await stateOf(p, 'svc-env', deploymentId, 'success');
    } finally {
      delete process.env[marker];
    }
    await p.deleteService('svc-env');
    expect(await refused(portOf(accessUrl))).to.equal(true);
  });

  it('fails the deployment of a runtime that exits at once, with how it ended and its last log lines, and does not restart it', async () => {
    const p = provider({ args: ['-e', 'console.error("cannot reach the database"); process.exit(3)'] });
    await service(p, 'svc-crash');
    await p.setVariables('svc-crash', {});
    const { deploymentId } = await p.deploy('svc-crash');
    const firstPid = (await row('svc-crash'))!.pid;
    expect(firstPid).to.be.a('number');

    const failed = await stateOf(p, 'svc-crash', deploymentId, 'failed');
    expect(failed.detail).to.match(/exited with code 3/);
    expect(failed.detail).to.match(/cannot reach the database/);
    await new Promise((r) => setTimeout(r, 300));
    expect((await row('svc-crash'))!.pid, 'not restarted').to.equal(null);

    await p.deleteService('svc-crash');
    expect(await row('svc-crash')).to.equal(undefined);
  });

  it('hands its runtimes over when it stops while another supervisor lives; adopts those whose supervisor died', async () => {
    const a = provider({ args: ENV_ECHO, leaseMs: 600 });
    const b = provider({ args: ENV_ECHO, leaseMs: 600 });
    const { accessUrl } = await service(a, 'svc-hand');
    await a.setVariables('svc-hand', {});
    await a.startSupervising();
    await b.startSupervising();
    const { deploymentId } = await a.deploy('svc-hand');
    await stateOf(a, 'svc-hand', deploymentId, 'success');
    const pid = (await row('svc-hand'))!.pid!;
    const owner = async () => (await pool.query('SELECT owner FROM local_services WHERE name = $1', ['svc-hand'])).rows[0].owner;
    expect(await owner()).to.equal(a.supervisorId);

    await a.close(); // another supervisor lives: the runtime keeps running and is handed over
    expect(isAlive(pid), 'the runtime outlives its supervisor').to.equal(true);
    await waitFor('b to adopt it', async () => ((await owner()) === b.supervisorId ? true : undefined));
    expect((await row('svc-hand'))!.pid, 'the same process, not a second one').to.equal(pid);
    expect((await get(`${accessUrl}/`)).status).to.equal(200);

    // A supervisor that died holds a lease nobody renews: once it runs out, a live supervisor takes the runtime.
    await pool.query(`UPDATE local_services SET owner = 'dead-worker', lease_until = now() - interval '1 second' WHERE name = $1`, ['svc-hand']);
    await waitFor('b to adopt it again', async () => ((await owner()) === b.supervisorId ? true : undefined));
    expect((await row('svc-hand'))!.pid).to.equal(pid);
    // Adopted processes are watched too: one that ends is recorded as exited.
    process.kill(pid, 'SIGKILL');
    await waitFor('the exit to be recorded', async () => ((await row('svc-hand'))!.pid === null ? true : undefined));
    await b.deleteService('svc-hand');
    await b.close();
  });

  it('stop: desired_state stopped, process gone, deployment no longer success; a new supervisor leaves it; deleteService removes row and secret', async () => {
    const p = provider({ args: ENV_ECHO });
    const { accessUrl } = await service(p, 'svc-stop');
    await p.setVariables('svc-stop', { GIVEN_VAR: 'x' });
    const { deploymentId } = await p.deploy('svc-stop');
    await stateOf(p, 'svc-stop', deploymentId, 'success');
    await waitFor('the service to answer', async () => ((await get(`${accessUrl}/`)).status === 200 ? true : undefined));
    const pid = (await row('svc-stop'))!.pid!;

    await p.stop('svc-stop');
    const r = (await row('svc-stop'))!;
    expect(r.desired_state).to.equal('stopped');
    expect(r.pid).to.equal(null);
    expect(isAlive(pid), 'stopped process').to.equal(false);
    expect(await refused(portOf(accessUrl)), 'port after stop').to.equal(true);
    expect((await p.deploymentState('svc-stop', deploymentId)).state).to.not.equal('success');

    const supervisor = provider({ args: ENV_ECHO });
    expect(await supervisor.startSupervising(), 'a stopped service is not adopted').to.equal(0);
    expect((await row('svc-stop'))!.pid).to.equal(null);
    expect(await refused(portOf(accessUrl)), 'port after a supervisor started').to.equal(true);
    await supervisor.close();

    expect(await secretRows('local-service/svc-stop')).to.equal(1);
    await p.deleteService('svc-stop');
    expect(await row('svc-stop')).to.equal(undefined);
    expect(await secretRows('local-service/svc-stop')).to.equal(0);
  });

  it('two worker processes on one machine: a redeploy or delete by one is not undone by the other', async () => {
    const a = provider({ args: ENV_ECHO });
    const b = provider({ args: ENV_ECHO });
    const { accessUrl } = await service(a, 'svc-two');
    await a.setVariables('svc-two', { GENERATION: 'one' });
    const first = await a.deploy('svc-two');
    await stateOf(a, 'svc-two', first.deploymentId, 'success');
    const firstPid = (await row('svc-two'))!.pid!;

    await b.setVariables('svc-two', { GENERATION: 'two' });
    const second = await b.deploy('svc-two');
    await stateOf(b, 'svc-two', second.deploymentId, 'success');
    await new Promise((r) => setTimeout(r, 600)); // A must not bring its old child back
    expect(isAlive(firstPid), 'the replaced runtime').to.equal(false);
    expect(JSON.parse((await get(`${accessUrl}/`)).body).GENERATION).to.equal('two');
    expect((await row('svc-two'))!.deployment_id).to.equal(second.deploymentId);

    const secondPid = (await row('svc-two'))!.pid!;
    await a.deleteService('svc-two'); // deleted through the worker that does not supervise it
    await waitFor('the runtime to stop', async () => (isAlive(secondPid) ? undefined : true));
    await new Promise((r) => setTimeout(r, 600));
    expect(await refused(portOf(accessUrl)), 'port after delete').to.equal(true);
    expect(await row('svc-two')).to.equal(undefined);
  });
});

