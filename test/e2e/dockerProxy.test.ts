/**
 * The Docker socket proxy in front of the real engine, driven by dockerode as the control plane would: a hardened
 * container of its scope is made, started, inspected, listed, stopped and removed through it; what would reach the
 * host (a privileged container, a bind mount of /, an exec, a pull) or another scope's container is refused with a
 * 403 whose message the client shows. Skipped, with one line saying why, where no Docker engine answers.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import Docker from 'dockerode';
import { logTo, setLogLevel } from '../../core/logger.ts';
import { freePort } from '../../src/providers/compute/local.ts';
import { startDockerProxy, type DockerProxy } from '../../src/dockerProxy/server.ts';
import { buildNodeBase, docker, skipWithoutDocker } from '../support/dockerImages.ts';
import { SCOPE_LABEL as LABEL } from '../../src/dockerProxy/config.ts';

describe('the Docker socket proxy on the real engine', function () {
  this.timeout(300_000);
  const suffix = randomBytes(5).toString('hex');
  const scope = `proxy-test-${suffix}`;
  const name = `proxy_mine_${suffix}`;
  const otherName = `proxy_other_${suffix}`;
  const network = `proxy_net_${suffix}`;
  const otherNetwork = `proxy_othernet_${suffix}`;
  const token = randomBytes(24).toString('hex');
  const secret = `secret-${randomBytes(8).toString('hex')}`;
  let proxy: DockerProxy | undefined;
  let client: Docker;
  let image: string;
  let otherId: string | undefined;

  /** A create body as the control plane would send it: every hardening the proxy asks for. */
  const hardened = (overrides: Record<string, unknown> = {}): Docker.ContainerCreateOptions => ({
    name,
    Image: image,
    Cmd: ['/usr/local/bin/node', '-e', 'setInterval(() => console.log("alive"), 200)'],
    User: 'node',
    Env: [`RUNTIME_SECRET=${secret}`],
    Labels: { [LABEL]: scope },
    HostConfig: {
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges:true'],
      ReadonlyRootfs: true,
      Mounts: [{ Type: 'tmpfs', Target: '/tmp' } as Docker.MountSettings],
      PidsLimit: 32,
      Memory: 128 * 1024 * 1024,
      NetworkMode: 'none',
    },
    ...overrides,
  });

  /** The error a refused call fails with: its status and the message dockerode read from the proxy's answer. */
  const refusal = (call: Promise<unknown>): Promise<{ statusCode: number; message: string }> =>
    call.then(
      () => expect.fail('the proxy let the request through'),
      (err: { statusCode: number; message: string }) => err,
    );

  before(async function () {
    await skipWithoutDocker.call(this);
    image = await buildNodeBase();
    const port = await freePort();
    proxy = await startDockerProxy({ upstreamSocket: '/var/run/docker.sock', host: '127.0.0.1', port, label: LABEL, scope, token });
    client = new Docker({ host: '127.0.0.1', port, protocol: 'http', headers: { authorization: `Bearer ${token}` } });
    // Another scope's container, made on the engine directly.
    otherId = await docker(['create', '--name', otherName, '--label', `${LABEL}=other-${suffix}`, image, '/usr/local/bin/node', '-e', 'setInterval(() => {}, 1000)']);
  });

  after(async () => {
    await proxy?.close();
    for (const leftover of [name, otherName]) await docker(['rm', '-f', leftover]).catch(() => undefined);
    for (const leftover of [network, otherNetwork]) await docker(['network', 'rm', leftover]).catch(() => undefined);
  });

  it('answers a ping; 401 without the token, 413 over 1 MiB', async () => {
    expect(String(await client.ping())).to.equal('OK');
    const anonymous = await fetch(`${proxy!.url}/_ping`);
    expect(anonymous.status).to.equal(401);
    expect(((await anonymous.json()) as { message: string }).message).to.match(/^docker proxy: /);
    const oversized = await fetch(`${proxy!.url}/containers/create`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ Env: ['X='.padEnd(1024 * 1024 + 1, 'x')] }),
    });
    expect(oversized.status).to.equal(413);
  });

  it('makes, starts, inspects, lists, reads the logs of, stops and removes a hardened container of its scope', async () => {
    const container = await client.createContainer(hardened());
    await container.start();
    const inspected = await client.getContainer(name).inspect();
    expect(inspected.State.Running).to.equal(true);
    expect(inspected.HostConfig).to.deep.include({ CapDrop: ['ALL'], ReadonlyRootfs: true, PidsLimit: 32, Privileged: false });
    expect(inspected.Config.Labels[LABEL]).to.equal(scope);

    const listed = await client.listContainers({ all: true });
    const names = listed.flatMap((c) => c.Names);
    expect(names).to.include(`/${name}`);
    expect(names).to.not.include(`/${otherName}`);
    expect(listed.every((c) => c.Labels[LABEL] === scope)).to.equal(true);
    // A client's own label filter for another scope is kept too: the two together list nothing.
    expect(await client.listContainers({ all: true, filters: { label: [`${LABEL}=other-${suffix}`] } })).to.deep.equal([]);

    let logs = '';
    for (let i = 0; i < 50 && !logs.includes('alive'); i++) {
      logs = (await container.logs({ stdout: true, tail: 5 })).toString('utf8');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(logs).to.include('alive');
    // A followed log streams as it is written, until the client leaves.
    const followed = (await container.logs({ stdout: true, follow: true, since: Math.floor(Date.now() / 1000) })) as NodeJS.ReadableStream & { destroy(): void };
    const lines: string[] = [];
    await new Promise<void>((resolve) =>
      followed.on('data', (chunk: Buffer) => {
        lines.push(chunk.toString('utf8'));
        if (lines.length > 3) resolve();
      }),
    );
    followed.destroy();
    expect(lines.join('')).to.include('alive');

    await container.stop({ t: 1 });
    expect((await container.inspect()).State.Running).to.equal(false);
    await container.remove({ force: true });
    expect(await docker(['ps', '-aq', '--filter', `name=^${name}$`])).to.equal('');
    expect((await refusal(container.inspect())).statusCode).to.equal(404);
  });

  it('refuses a privileged container and one with / bind-mounted, naming the field, and makes neither', async () => {
    const privileged = hardened();
    privileged.HostConfig!.Privileged = true;
    const lines: string[] = [];
    setLogLevel('warn'); // whatever an earlier test file in this worker process left it at: refusals are warnings
    logTo({ write: (line: string) => lines.push(line) });
    const one = await refusal(client.createContainer(privileged)).finally(() => logTo(undefined));
    // The refusal is logged with its reason, never with the body (its environment holds secrets).
    expect(lines.join('')).to.include('HostConfig.Privileged must be false').and.not.include(secret);
    expect(one.statusCode).to.equal(403);
    expect(one.message).to.include('HostConfig.Privileged');

    const bound = hardened();
    bound.HostConfig!.Binds = ['/:/host'];
    const two = await refusal(client.createContainer(bound));
    expect(two.statusCode).to.equal(403);
    expect(two.message).to.include('HostConfig.Binds');
    expect(await docker(['ps', '-aq', '--filter', `name=^${name}$`])).to.equal('');
  });

  it('refuses an exec, stopping another scope’s container and pulling an image', async () => {
    await client.createContainer(hardened());
    const mine = client.getContainer(name);
    await mine.start();
    const exec = await refusal(mine.exec({ Cmd: ['/bin/sh', '-c', 'id'], AttachStdout: true }));
    expect(exec.statusCode).to.equal(403);
    expect(exec.message).to.match(/exec is not allowed/);

    await docker(['start', otherName]);
    const stop = await refusal(client.getContainer(otherName).stop());
    expect(stop.statusCode).to.equal(403);
    expect(stop.message).to.include("not in this proxy's scope");
    // Nor by its id, nor by an id prefix.
    expect((await refusal(client.getContainer(otherId!).stop())).statusCode).to.equal(403);
    expect((await refusal(client.getContainer(otherId!.slice(0, 12)).remove({ force: true }))).statusCode).to.equal(403);
    expect(await docker(['inspect', '--format', '{{.State.Running}}', otherName])).to.equal('true');

    const pull = await refusal(client.pull('busybox:latest'));
    expect(pull.statusCode).to.equal(403);
    expect(pull.message).to.match(/images\/create is not allowed/);
    await mine.remove({ force: true });
  });

  it('makes a network of its scope and joins it, publishing on loopback; joins no other scope’s network nor the default bridge, publishes nowhere else', async () => {
    await client.createNetwork({ Name: network, Driver: 'bridge', Internal: true, Labels: { [LABEL]: scope } });
    await docker(['network', 'create', '--label', `${LABEL}=other-${suffix}`, otherNetwork]);
    const joining = hardened();
    joining.HostConfig!.NetworkMode = otherNetwork;
    const refused = await refusal(client.createContainer(joining));
    expect(refused.statusCode).to.equal(403);
    expect(refused.message).to.include(`the network "${otherNetwork}"`);
    joining.HostConfig!.NetworkMode = 'bridge';
    expect((await refusal(client.createContainer(joining))).message).to.include('HostConfig.NetworkMode');

    joining.HostConfig!.NetworkMode = network;
    const hostPort = String(await freePort());
    joining.HostConfig!.PortBindings = { '8080/tcp': [{ HostIp: '0.0.0.0', HostPort: hostPort }] };
    expect((await refusal(client.createContainer(joining))).message).to.include('HostIp "0.0.0.0" is not a loopback address');
    expect(await docker(['ps', '-aq', '--filter', `name=^${name}$`])).to.equal('');

    joining.HostConfig!.PortBindings = { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: hostPort }] };
    const container = await client.createContainer(joining);
    const inspected = await container.inspect();
    expect(Object.keys(inspected.NetworkSettings.Networks)).to.deep.equal([network]);
    expect(inspected.HostConfig.PortBindings).to.deep.equal({ '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: hostPort }] });
    await container.remove({ force: true });
  });

  it('updates a limit but lifts none, and refuses a body whose keys repeat (as the engine would merge them)', async () => {
    const container = await client.createContainer(hardened());
    await container.update({ PidsLimit: 48 });
    expect((await container.inspect()).HostConfig.PidsLimit).to.equal(48);
    expect((await refusal(container.update({ PidsLimit: -1 }))).statusCode).to.equal(403);
    expect((await refusal(container.update({ Privileged: true }))).statusCode).to.equal(403);
    await container.remove({ force: true });

    const body = JSON.stringify(hardened());
    const forged = `{"HostConfig":{"Privileged":true},${body.slice(1)}`;
    const answer = await fetch(`${proxy!.url}/containers/create?name=${name}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: forged,
    });
    expect(answer.status).to.equal(400);
    expect(((await answer.json()) as { message: string }).message).to.include('twice');
    expect(await docker(['ps', '-aq', '--filter', `name=^${name}$`])).to.equal('');
  });
});
