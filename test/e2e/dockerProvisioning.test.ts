/**
 * COMPUTE_PROVIDER=docker end to end on the real engine: signed checkouts in, each customer's runtime out as a
 * container of the runtime image (built from runtime/Dockerfile on the base image made from this machine's Node,
 * nothing pulled), its database on a PostgreSQL cluster that asks for passwords (SCRAM) and listens on the Docker
 * bridge's gateway. Checked where it lands: the engine's own report of the container, the emailed key through the
 * access URL, what customer A's container can and cannot reach from inside, the engine restarting a killed runtime,
 * and the container stopped at cancellation and removed at archive.
 * Skipped, with one line saying why, where no Docker engine answers (CI starts one).
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { DOCKER_LABELS } from '../../src/providers/compute/dockerLabels.ts';
import { bridgeGateway, buildImage, docker, skipWithoutDocker } from '../support/dockerImages.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { startPasswordCluster, type PasswordCluster } from '../support/passwordCluster.ts';
import { provision, type Provisioned } from '../support/provision.ts';
import { waitUntil } from '../support/wait.ts';

interface Inspected {
  Id: string;
  State: { Running: boolean; Pid: number };
  RestartCount: number;
  HostConfig: { CapDrop: string[]; SecurityOpt: string[]; ReadonlyRootfs: boolean; PidsLimit: number; Memory: number; NanoCpus: number };
  NetworkSettings: { Networks: Record<string, { IPAddress: string }> };
}

/** What a node inside the container finds at each host:port given, all at once: OPEN, or the error (refused, timed out). */
const PROBE = `const found = {};
Promise.all(process.argv.slice(1).map((target) => new Promise((done) => {
  const [h, p] = target.split(' ');
  const s = require('net').connect(Number(p), h);
  const end = (what) => { found[target] = what; s.destroy(); done(); };
  s.setTimeout(3000);
  s.on('connect', () => end('OPEN'));
  s.on('error', (e) => end(e.code));
  s.on('timeout', () => end('TIMEOUT'));
}))).then(() => console.log(JSON.stringify(found)));`;

/** Logs in from inside the container as its own role (DATABASE_URL) to the database named, and says how that went. */
const LOGIN = `const pg = require('pg');
const url = new URL(process.env.DATABASE_URL);
url.pathname = '/' + process.argv[1];
const c = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 5000 });
c.connect().then(() => c.query('SELECT current_database() AS db')).then((r) => { console.log('IN ' + r.rows[0].db); return c.end(); },
  (e) => console.log('REFUSED ' + e.code));`;

describe('Docker compute provider end to end (real engine)', function () {
  this.timeout(600_000);
  const id = randomBytes(4).toString('hex');
  const network = `clawdbot-e2e-${id}`;
  let h: Harness | undefined;
  let cluster: PasswordCluster | undefined;
  let a: Provisioned;
  let b: Provisioned;

  const inspect = async (serviceId: string): Promise<Inspected> => (JSON.parse(await docker(['inspect', serviceId])) as Inspected[])[0]!;
  const serviceOf = async (p: Provisioned): Promise<string> =>
    (await h!.db.query<{ service_id: string }>('SELECT service_id FROM instances WHERE id = $1', [p.instanceId])).rows[0]!.service_id;
  const inside = (serviceId: string, script: string, ...args: string[]) => docker(['exec', '-w', '/app', serviceId, 'node', '-e', script, ...args]);

  before(async function () {
    await skipWithoutDocker.call(this);
    const image = await buildImage('runtime/Dockerfile', 'clawdbot-runtime:e2e');
    // Containers reach the Docker host at its bridge's gateway (host.docker.internal): the customers' cluster
    // listens there; the machine's own PostgreSQL and Redis listen on loopback only.
    cluster = await startPasswordCluster({ listen: [await bridgeGateway()] });
    h = await startHarness(
      {
        COMPUTE_PROVIDER: 'docker',
        DOCKER_RUNTIME_IMAGE: image,
        DOCKER_NETWORK: network,
        CUSTOMER_DATABASE_URL: cluster.adminUrl,
        HEALTH_CHECK_TIMEOUT: '120s',
        ARCHIVE_AFTER: '5s',
        PURGE_AFTER: '10m',
      },
      { modelListen: '0.0.0.0' },
    );
    [a, b] = await Promise.all([provision(h, 'ana@example.com', 'Ana', 'starter'), provision(h, 'bo@example.com', 'Bo', 'pro')]);
  });

  after(async () => {
    const scope = h?.config.docker?.scope;
    await h?.close();
    if (scope) {
      const left = await docker(['ps', '-aq', '--filter', `label=${DOCKER_LABELS.scope}=${scope}`]);
      if (left) await docker(['rm', '-f', ...left.split('\n')]);
    }
    await docker(['network', 'rm', network]).catch(() => undefined);
    await cluster?.stop();
  });

  it('runs each customer in a hardened container with the limits of their plan, as the engine reports it', async () => {
    for (const [customer, pids, memoryMb, cpu] of [[a, 128, 512, 0.5], [b, 256, 1024, 1]] as const) {
      const { HostConfig } = await inspect(await serviceOf(customer));
      expect(HostConfig).to.deep.include({ CapDrop: ['ALL'], ReadonlyRootfs: true, PidsLimit: pids, Memory: memoryMb * 1024 * 1024, NanoCpus: cpu * 1e9 });
      expect(HostConfig.SecurityOpt).to.deep.equal(['no-new-privileges:true']);
    }
  });

  it('answers the emailed key at the access URL, and chats through the model reached from the container', async () => {
    const headers = { authorization: `Bearer ${a.apiKey}`, 'content-type': 'application/json' };
    expect(new URL(a.view.accessUrl!).hostname).to.equal('127.0.0.1');
    expect((await fetch(`${a.view.accessUrl}/status`, { headers })).status).to.equal(200);
    expect((await fetch(`${a.view.accessUrl}/status`, { headers: { authorization: `Bearer ${b.apiKey}` } })).status).to.equal(401);
    const calls = h!.model.calls;
    const chat = await fetch(`${a.view.accessUrl}/api/chat`, { method: 'POST', headers, body: JSON.stringify({ message: 'Hello from a container' }) });
    expect(chat.status).to.equal(200);
    expect(((await chat.json()) as { reply: string }).reply).to.be.a('string').and.not.equal('');
    expect(h!.model.calls).to.be.greaterThan(calls);
  });

  it('from inside customer A: B’s container, the control plane’s database and Redis, and the Docker socket are out of reach', async () => {
    const serviceA = await serviceOf(a);
    const containerB = await inspect(await serviceOf(b));
    const addressB = containerB.NetworkSettings.Networks[network]!.IPAddress;
    const portB = new URL(b.view.accessUrl!).port;
    const gatewayTo = (port: string | number) => `host.docker.internal ${port}`;
    const targets = { own: gatewayTo(cluster!.port), b: `${addressB} 8080`, bPublished: gatewayTo(portB), controlDb: gatewayTo(5432), redis: gatewayTo(6379), dockerTcp: gatewayTo(2375) };
    const found = JSON.parse(await inside(serviceA, PROBE, ...Object.values(targets))) as Record<string, string>;
    // The probe sees what is open: A's own database server, through the gateway.
    expect(found[targets.own]).to.equal('OPEN');
    for (const name of ['b', 'bPublished', 'controlDb', 'redis', 'dockerTcp'] as const) {
      expect(found[targets[name]], name).to.be.a('string').and.not.equal('OPEN');
    }
    expect(await inside(serviceA, "console.log(require('fs').existsSync('/var/run/docker.sock'))")).to.equal('false');
  });

  it('lets A’s role into A’s database and refuses it B’s, over the network with passwords', async () => {
    const serviceA = await serviceOf(a);
    const nameOf = (p: Provisioned) => new URL(p.databaseUrl).pathname.slice(1);
    expect(await inside(serviceA, LOGIN, nameOf(a))).to.equal(`IN ${nameOf(a)}`);
    expect(await inside(serviceA, LOGIN, nameOf(b))).to.equal('REFUSED 42501');
    // A's password is not B's role's: B's database refuses it whichever role A names.
    const asB = new URL(b.databaseUrl);
    asB.password = new URL(a.databaseUrl).password;
    expect(await inside(serviceA, LOGIN.replace('process.env.DATABASE_URL', JSON.stringify(asB.toString().replace('127.0.0.1', 'host.docker.internal'))), nameOf(b))).to.equal(
      'REFUSED 28P01',
    );
  });

  it('is restarted by the engine when its runtime is killed', async () => {
    const serviceA = await serviceOf(a);
    const before = await inspect(serviceA);
    process.kill(before.State.Pid, 'SIGKILL');
    await waitUntil(async () => (await inspect(serviceA)).RestartCount > before.RestartCount, 30_000);
    await waitUntil(async () => (await fetch(`${a.view.accessUrl}/health`).catch(() => undefined))?.status === 200, 60_000);
  });

  it('stops the container at cancellation and removes it at archive', async () => {
    const serviceB = await serviceOf(b);
    const { rows } = await h!.db.query<{ stripe_subscription_id: string }>(
      'SELECT s.stripe_subscription_id FROM instances i JOIN subscriptions s ON s.id = i.subscription_id WHERE i.id = $1',
      [b.instanceId],
    );
    const canceled = h!.stripe.updateSubscription(rows[0]!.stripe_subscription_id, { status: 'canceled' });
    expect((await h!.deliver(h!.stripe.event('customer.subscription.deleted', canceled))).status).to.equal(200);
    await h!.waitForStatus(b.customerId, ['cancelled']);
    expect((await inspect(serviceB)).State.Running).to.equal(false);
    await h!.waitForStatus(b.customerId, ['archived'], 60_000);
    expect(await docker(['ps', '-aq', '--filter', `name=^${serviceB}$`])).to.equal('');
    expect((await h!.db.query('SELECT 1 FROM docker_services WHERE name = $1', [serviceB])).rowCount).to.equal(0);
  });
});
