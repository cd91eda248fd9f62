/**
 * DockerComputeProvider against the real Docker engine: the provider contract with a stand-in runtime image (built
 * on the base image made from this machine's Node: nothing pulled), then what only containers promise: the hardening
 * the engine reports, a new worker finding the containers by their labels, the engine restarting a crashed runtime,
 * loopback URLs handed over through the host gateway, and an unsafe network or a missing image refused.
 * Without an engine, everything here is skipped with one line saying why.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setLogLevel } from '../../core/logger.ts';
import { demultiplex, DockerComputeProvider, throughGateway, type DockerComputeOptions } from '../../src/providers/compute/docker.ts';
import { DOCKER_LABELS } from '../../src/providers/compute/dockerLabels.ts';
import { PermanentError } from '../../src/errors.ts';
import { SecretStore } from '../../src/secrets.ts';
import { buildNodeBase, docker, skipWithoutDocker } from '../support/dockerImages.ts';
import { controlDb } from '../support/controlDb.ts';
import { rejection } from '../support/rejection.ts';
import { waitUntil } from '../support/wait.ts';
import { CONTRACT_STUB, computeProviderContract } from './computeContract.ts';
import type { Db } from '../../src/db/pool.ts';

const STUB_IMAGE = 'clawdbot/contract-stub';

describe('throughGateway', () => {
  it('names the host alias in place of a loopback host, and leaves every other value as it is', () => {
    const alias = 'host.docker.internal';
    expect(throughGateway('postgres://u:p@127.0.0.1:5433/db', alias)).to.equal('postgres://u:p@host.docker.internal:5433/db');
    expect(throughGateway('http://localhost:3000', alias)).to.equal('http://host.docker.internal:3000');
    expect(throughGateway('http://[::1]/x', alias)).to.equal('http://host.docker.internal/x');
    for (const kept of ['https://api.anthropic.com', 'http://127.0.0.10:80', 'http://localhost.example.com', '127.0.0.1', 'pro']) {
      expect(throughGateway(kept, alias)).to.equal(kept);
    }
  });
});

describe('demultiplex', () => {
  const frame = (stream: number, text: string) => {
    const header = Buffer.alloc(8);
    header[0] = stream;
    header.writeUInt32BE(Buffer.byteLength(text), 4);
    return Buffer.concat([header, Buffer.from(text)]);
  };

  it('joins the stdout and stderr frames of a container log in order, and takes a log with no frames as it is', () => {
    expect(demultiplex(Buffer.concat([frame(1, 'listening\n'), frame(2, 'warn: slow\n'), frame(1, 'ok\n')]))).to.equal('listening\nwarn: slow\nok\n');
    expect(demultiplex(Buffer.from('plain line\n'))).to.equal('plain line\n');
  });
});

describe('DockerComputeProvider (real engine)', function () {
  this.timeout(120_000);
  const id = randomBytes(4).toString('hex');
  const network = `clawdbot-test-${id}`;
  const scope = `test-${id}`;
  let control: Awaited<ReturnType<typeof controlDb>>;
  let secrets: SecretStore;
  let image: string;
  const made: DockerComputeProvider[] = [];

  const provider = (over: Partial<DockerComputeOptions> = {}, db: Db = control.db) => {
    const p = new DockerComputeProvider(db, secrets, {
      host: '/var/run/docker.sock',
      token: null,
      image,
      network,
      publishHost: '127.0.0.1',
      accessHost: '127.0.0.1',
      ports: { from: 20000, to: 29999 },
      hostAlias: 'host.docker.internal',
      scope,
      ...over,
    });
    made.push(p);
    return p;
  };

  before(async function () {
    await skipWithoutDocker.call(this);
    setLogLevel('error');
    control = await controlDb('prov_docker');
    secrets = new SecretStore(control.db, randomBytes(32));
    // The stand-in runtime as an image: the contract's stub as its command, run as the image's node user.
    const base = await buildNodeBase();
    image = `${STUB_IMAGE}:${id}`;
    const context = await mkdtemp(path.join(tmpdir(), 'contract-stub-'));
    try {
      await writeFile(path.join(context, 'Dockerfile'), `FROM ${base}\nUSER node\nCMD ["node", "-e", ${JSON.stringify(CONTRACT_STUB)}]\n`);
      await docker(['build', '-q', '-t', image, context]);
    } finally {
      await rm(context, { recursive: true, force: true });
    }
  });

  after(async () => {
    setLogLevel('info');
    if (!control) return;
    const ours = await docker(['ps', '-aq', '--filter', `label=${DOCKER_LABELS.scope}=${scope}`]);
    if (ours) await docker(['rm', '-f', ...ours.split('\n')]);
    await docker(['network', 'rm', network]).catch(() => undefined);
    await docker(['rmi', image]).catch(() => undefined);
    await control.drop();
  });

  computeProviderContract('docker', () => ({ provider: provider(), name: `claw-contract-${id}` }));

  describe('containers', () => {
    let p: DockerComputeProvider;
    let serviceId: string;
    let container: string;
    const inspect = async (what: string) => JSON.parse(await docker(['inspect', '--format', `{{json ${what}}}`, container])) as unknown;

    before(async () => {
      p = provider();
      ({ serviceId } = await p.createService(`claw-hard-${id}`));
      await p.configure(serviceId, {
        variables: { PLAN: 'starter', WORKSPACE_ID: `ws-${id}`, DATABASE_URL: 'postgres://c:secret@127.0.0.1:5999/c', PUBLIC_URL: 'http://127.0.0.1:20001' },
        limits: { cpu: 0.5, memoryMb: 512, pidsLimit: 128 },
      });
      ({ deploymentId: container } = await p.deploy(serviceId));
      await waitUntil(async () => (await p.deploymentState(serviceId, container)).state === 'success', 20_000);
    });

    it('runs hardened, within the plan limits, as the engine reports it', async () => {
      const host = (await inspect('.HostConfig')) as Record<string, unknown>;
      expect(host.Init).to.equal(true);
      expect(host.CapDrop).to.deep.equal(['ALL']);
      expect(host.CapAdd ?? []).to.deep.equal([]);
      expect(host.SecurityOpt).to.deep.equal(['no-new-privileges:true']);
      expect(host.ReadonlyRootfs).to.equal(true);
      expect(host.Privileged).to.equal(false);
      expect(host.PidsLimit).to.equal(128);
      expect(host.Memory).to.equal(512 * 1024 * 1024);
      expect(host.MemorySwap).to.equal(512 * 1024 * 1024);
      expect(host.NanoCpus).to.equal(500_000_000);
      expect(host.RestartPolicy).to.deep.equal({ Name: 'unless-stopped', MaximumRetryCount: 0 });
      expect(host.NetworkMode).to.equal(network);
      expect(host.Binds ?? []).to.deep.equal([]);
      expect(Object.keys(host.Tmpfs as object)).to.deep.equal(['/tmp']);
      const port = new URL(await p.accessUrl(serviceId)).port;
      expect(host.PortBindings).to.deep.equal({ '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: port }] });
      expect(await inspect('.Config.User')).to.equal('1000:1000');
      const labels = (await inspect('.Config.Labels')) as Record<string, string>;
      expect(labels).to.include({ [DOCKER_LABELS.scope]: scope, [DOCKER_LABELS.service]: serviceId, [DOCKER_LABELS.workspace]: `ws-${id}` });
      // Inside: no root, no writing outside /tmp.
      expect(await docker(['exec', container, 'node', '-e', 'process.stdout.write(String(process.getuid()))'])).to.equal('1000');
      expect(await rejection(docker(['exec', container, 'sh', '-c', 'echo x > /app/x']))).to.match(/Read-only file system/);
      const net = JSON.parse(await docker(['network', 'inspect', '--format', '{{json .Options}}', network])) as Record<string, string>;
      expect(net['com.docker.network.bridge.enable_icc']).to.equal('false');
    });

    it('hands the loopback URLs the runtime calls through the host gateway, and keeps them as configured for the reconciler', async () => {
      const env = (await inspect('.Config.Env')) as string[];
      expect(env).to.include('DATABASE_URL=postgres://c:secret@host.docker.internal:5999/c');
      // The customer's browser follows PUBLIC_URL (OAuth redirects): loopback there is theirs, and stays.
      expect(env).to.include('PUBLIC_URL=http://127.0.0.1:20001');
      expect((await p.readSettings(serviceId))?.variables.DATABASE_URL).to.equal('postgres://c:secret@127.0.0.1:5999/c');
      expect((await inspect('.HostConfig.ExtraHosts')) as string[]).to.deep.equal(['host.docker.internal:host-gateway']);
    });

    it('is found again by a new worker (another provider on the same database), by its name and labels', async () => {
      const fresh = provider();
      expect((await fresh.listServices()).map((s) => s.serviceId)).to.include(serviceId);
      expect((await fresh.serviceState(serviceId)).running).to.equal(true);
      expect((await fresh.latestDeployment(serviceId))?.deploymentId).to.equal(container);
      // Another control plane on the same engine sees nothing of it.
      const other = provider({ scope: `other-${id}` });
      expect(await other.serviceState(serviceId)).to.deep.include({ running: false });
      expect(await other.latestDeployment(serviceId)).to.equal(null);
    });

    it('is restarted by the engine when its runtime dies, and by restart() when asked', async () => {
      const pid = Number(await docker(['inspect', '--format', '{{.State.Pid}}', container]));
      process.kill(pid, 'SIGKILL');
      await waitUntil(async () => Number(await docker(['inspect', '--format', '{{.RestartCount}}', container])) === 1, 20_000);
      await waitUntil(async () => (await p.serviceState(serviceId)).running, 20_000);
      const { action } = await p.restart(serviceId);
      expect(action).to.match(/^restarted container [0-9a-f]{12}/);
      expect((await p.serviceState(serviceId)).detail).to.match(/running since/);
    });

    it('refuses a network on which containers reach each other', async () => {
      const open = `clawdbot-test-open-${id}`;
      await docker(['network', 'create', open]);
      try {
        const err = await rejection(provider({ network: open }).init());
        expect(err).to.be.instanceOf(PermanentError);
        expect(err.message).to.match(/lets its containers reach each other/);
      } finally {
        await docker(['network', 'rm', open]);
      }
    });

    it('refuses a deploy of an image the engine does not have, leaving the running container alone', async () => {
      const before = (await p.latestDeployment(serviceId))!.deploymentId;
      const settings = (await p.readSettings(serviceId))!;
      const missing = provider({ image: `clawdbot/no-such-image:${id}` });
      await missing.configure(serviceId, { variables: settings.variables, limits: { cpu: 0.5, memoryMb: 512, pidsLimit: 128 } });
      const err = await rejection(missing.deploy(serviceId));
      expect(err).to.be.instanceOf(PermanentError);
      expect(err.message).to.match(/is not on the Docker engine/);
      expect(await p.serviceState(serviceId)).to.deep.include({ running: true });
      expect((await p.latestDeployment(serviceId))?.deploymentId).to.equal(before);
      await p.configure(serviceId, { variables: settings.variables, limits: { cpu: 0.5, memoryMb: 512, pidsLimit: 128 } });
    });

    it('makes a container again when it is gone, and deploys anew over one made but never started', async () => {
      await docker(['rm', '-f', serviceId]);
      expect(await p.serviceState(serviceId)).to.deep.equal({ running: false, detail: 'the container does not exist' });
      const { action } = await p.restart(serviceId);
      expect(action).to.match(/^made container [0-9a-f]{12} again/);
      await waitUntil(async () => (await p.serviceState(serviceId)).running, 20_000);
      // A deploy that died between making its container and starting it: a re-run does not adopt that one.
      await docker(['rm', '-f', serviceId]);
      await docker(['create', '--name', serviceId, '--label', `${DOCKER_LABELS.scope}=${scope}`, image]);
      expect(await p.latestDeployment(serviceId)).to.equal(null);
      const { deploymentId } = await p.deploy(serviceId);
      await waitUntil(async () => (await p.deploymentState(serviceId, deploymentId)).state === 'success', 20_000);
      container = deploymentId;
    });
  });
});
