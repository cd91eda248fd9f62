/**
 * The Docker socket proxy's policy: each allowed request, each refusal rule (a hardened create body passes, each
 * single weakening is refused naming its field), bodies read as the engine reads them, and what the scope check asks.
 */
import { expect } from 'chai';
import { ConfigError } from '../../src/config.ts';
import { loadDockerProxyConfig } from '../../src/dockerProxy/config.ts';
import { decide, scopeCheck, type DockerRequest, type PolicyOptions } from '../../src/dockerProxy/policy.ts';
import { parseStrictJson } from '../../src/dockerProxy/strictJson.ts';
import { containerSpec } from '../../src/providers/compute/docker.ts';

const LABEL = 'ai.clawdbot.scope';
const options = { label: LABEL };

type Body = Record<string, any>;

function hardenedCreate(): Body {
  return {
    Image: 'clawdbot-runtime:1.4.0',
    User: 'node',
    Env: ['ANTHROPIC_API_KEY=sk-ant-secret'],
    Labels: { [LABEL]: 'tenant-a' },
    HostConfig: {
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges:true'],
      ReadonlyRootfs: true,
      Mounts: [{ Type: 'tmpfs', Target: '/tmp' }],
      PidsLimit: 64,
      Memory: 256 * 1024 * 1024,
      NetworkMode: 'tenant-a-net',
    },
  };
}

/** What the Docker compute provider sends, made by its own containerSpec with its defaults: the proxy must let it through. */
function providerCreate(): Body {
  return containerSpec(
    { name: 'claw-1a2b3c', port: 20000, image: 'clawdbot-runtime:local', limits: { cpu: 0.5, memoryMb: 512, pidsLimit: 128 } },
    { ANTHROPIC_API_KEY: 'sk-ant-secret', DATABASE_URL: 'postgres://c:pw@127.0.0.1:5434/c', WORKSPACE_ID: 'ws-1a2b3c' },
    {
      host: '/var/run/docker.sock', token: null, image: 'clawdbot-runtime:local', network: 'clawdbot-runtimes', publishHost: '127.0.0.1',
      accessHost: '127.0.0.1', ports: { from: 20000, to: 29999 }, hostAlias: 'host.docker.internal', scope: 'tenant-a',
    },
  ) as Body;
}

function allowed(request: DockerRequest, given: PolicyOptions = options): void {
  expect(decide(request, given)).to.deep.equal({ allow: true });
}

/** The reason a request is refused (failing the test when it is allowed). */
function reason(request: DockerRequest, given: PolicyOptions = options): string {
  const decision = decide(request, given);
  if (decision.allow) expect.fail(`${request.method} ${request.path} was allowed`);
  return decision.reason;
}

function createWith(change: (body: Body) => void): DockerRequest {
  const body = hardenedCreate();
  change(body);
  return { method: 'POST', path: '/v1.41/containers/create?name=tenant-a-runtime', body };
}

describe('Docker proxy policy', () => {
  describe('allows', () => {
    const plain: [string, string][] = [
      ['GET', '/_ping'],
      ['HEAD', '/_ping'],
      ['GET', '/v1.41/_ping'],
      ['GET', '/version'],
      ['GET', '/networks/clawdbot-tenant-a'],
      ['GET', '/images/clawdbot-runtime:1.4.0/json'],
      ['GET', '/v1.41/images/ghcr.io/owner/runtime@sha256:0123abcd/json'],
      ['GET', '/containers/json?all=1'],
      ['GET', '/containers/abc123/json'],
      ['GET', '/containers/tenant-a_runtime.1/logs?stdout=1&follow=1&tail=100'],
      ['POST', '/containers/abc123/start'],
      ['POST', '/containers/abc123/stop?t=5'],
      ['POST', '/containers/abc123/restart'],
      ['POST', '/containers/abc123/kill?signal=SIGTERM'],
      ['POST', '/containers/abc123/wait?condition=not-running'],
      ['DELETE', '/containers/abc123?force=true'],
      ['DELETE', '/v1.41/containers/abc123'],
    ];
    for (const [method, path] of plain) it(`${method} ${path}`, () => allowed({ method, path }));

    it('a hardened create body, with the other accepted spellings of its hardening', () => {
      allowed(createWith(() => undefined));
      allowed(createWith((b) => (b.HostConfig.SecurityOpt = ['no-new-privileges'])));
      allowed(createWith((b) => (b.HostConfig.Mounts = undefined)));
      allowed(createWith((b) => (b.User = '1000:1000')));
      allowed(createWith((b) => (b.name = 'tenant-a-runtime')));
      allowed(createWith((b) => (b.HostConfig.NetworkMode = 'none')));
      allowed(createWith((b) => (b.HostConfig.PortBindings = { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '20000' }], '9090/tcp': null })));
      allowed(createWith((b) => (b.HostConfig.PortBindings = { '8080/tcp': [{ HostIp: '::1', HostPort: '20000' }, { hostip: '127.0.0.2' }] })));
      allowed(createWith((b) => Object.assign(b.HostConfig, { Runtime: 'runc', CgroupnsMode: 'private', OomScoreAdj: 500, OomKillDisable: false, Sysctls: {}, GroupAdd: [] })));
    });
    it('the create body of the Docker compute provider', () => {
      allowed({ method: 'POST', path: '/v1.41/containers/create?name=claw-1a2b3c', body: providerCreate() });
    });
    it('a port published on every interface when the proxy allows public ports', () => {
      const everywhere = createWith((b) => (b.HostConfig.PortBindings = { '8080/tcp': [{ HostIp: '0.0.0.0', HostPort: '20000' }, { HostPort: '20001' }] }));
      allowed(everywhere, { ...options, allowPublicPorts: true });
      expect(reason(everywhere)).to.include('HostIp');
      // Publishing every exposed port stays refused: its host addresses and ports are the engine's pick.
      expect(reason(createWith((b) => (b.HostConfig.PublishAllPorts = true)), { ...options, allowPublicPorts: true })).to.include('HostConfig.PublishAllPorts');
    });
    it('an update of limits and restart policy', () => {
      allowed({ method: 'POST', path: '/containers/abc/update', body: { Memory: 1 << 29, MemorySwap: 1 << 29, NanoCpus: 5e8, PidsLimit: 64, CpuQuota: 50000, CpuPeriod: 100000, RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 3 } } });
    });
    it('the options dockerode repeats in an action’s body', () => {
      allowed({ method: 'POST', path: '/containers/abc/stop?t=5', body: { t: 5 } });
    });
    it('a bridge network labelled for a scope, internal or not', () => {
      allowed({ method: 'POST', path: '/networks/create', body: { Name: 'n', Driver: 'bridge', Internal: true, Labels: { [LABEL]: 'tenant-a' } } });
      allowed({ method: 'POST', path: '/networks/create', body: { Name: 'n', Labels: { [LABEL]: 'tenant-a' }, Options: { 'com.docker.network.bridge.enable_icc': 'false' } } });
      allowed({ method: 'POST', path: '/networks/create', body: { Name: 'n', Labels: { [LABEL]: 'tenant-a' }, IPAM: { Driver: 'default', Config: [], Options: {} } } });
    });
  });

  describe('refuses a create body that is not hardened, naming the field', () => {
    const weakenings: [string, (b: Body) => void, string][] = [
      ['no scope label', (b) => (b.Labels = { other: 'x' }), 'Labels'],
      ['no labels', (b) => delete b.Labels, 'Labels'],
      ['privileged', (b) => (b.HostConfig.Privileged = true), 'HostConfig.Privileged'],
      ['capabilities kept', (b) => (b.HostConfig.CapDrop = ['NET_RAW']), 'HostConfig.CapDrop'],
      ['a capability added', (b) => (b.HostConfig.CapAdd = ['SYS_ADMIN']), 'HostConfig.CapAdd'],
      ['new privileges allowed', (b) => (b.HostConfig.SecurityOpt = []), 'HostConfig.SecurityOpt'],
      ['seccomp unconfined', (b) => b.HostConfig.SecurityOpt.push('seccomp=unconfined'), 'HostConfig.SecurityOpt'],
      ['a writable root', (b) => (b.HostConfig.ReadonlyRootfs = false), 'HostConfig.ReadonlyRootfs'],
      ['a bind mount', (b) => (b.HostConfig.Binds = ['/:/host']), 'HostConfig.Binds'],
      ['a bind in Mounts', (b) => b.HostConfig.Mounts.push({ Type: 'bind', Source: '/', Target: '/host' }), 'HostConfig.Mounts'],
      ['a volume in Mounts', (b) => b.HostConfig.Mounts.push({ Type: 'volume', Source: 'v', Target: '/v' }), 'HostConfig.Mounts'],
      ['the host network', (b) => (b.HostConfig.NetworkMode = 'host'), 'HostConfig.NetworkMode'],
      ['another container’s network', (b) => (b.HostConfig.NetworkMode = 'container:db'), 'HostConfig.NetworkMode'],
      ['the host pid namespace', (b) => (b.HostConfig.PidMode = 'host'), 'HostConfig.PidMode'],
      ['the host ipc namespace', (b) => (b.HostConfig.IpcMode = 'host'), 'HostConfig.IpcMode'],
      ['the host uts namespace', (b) => (b.HostConfig.UTSMode = 'host'), 'HostConfig.UTSMode'],
      ['the host user namespace', (b) => (b.HostConfig.UsernsMode = 'host'), 'HostConfig.UsernsMode'],
      ['a device', (b) => (b.HostConfig.Devices = [{ PathOnHost: '/dev/sda', PathInContainer: '/dev/sda', CgroupPermissions: 'rwm' }]), 'HostConfig.Devices'],
      ['no pids limit', (b) => delete b.HostConfig.PidsLimit, 'HostConfig.PidsLimit'],
      ['an unlimited pids limit', (b) => (b.HostConfig.PidsLimit = -1), 'HostConfig.PidsLimit'],
      ['no memory limit', (b) => (b.HostConfig.Memory = 0), 'HostConfig.Memory'],
      ['no user', (b) => delete b.User, 'User'],
      ['root by name', (b) => (b.User = 'root'), 'User'],
      ['root by id', (b) => (b.User = '0'), 'User'],
      ['root with a group', (b) => (b.User = '0:0'), 'User'],
      ['root with another group', (b) => (b.User = '0:1000'), 'User'],
      ['volumes of another container', (b) => (b.HostConfig.VolumesFrom = ['db']), 'HostConfig.VolumesFrom'],
      ['anonymous volumes', (b) => (b.Volumes = { '/data': {} }), 'Volumes'],
      ['a link to another container (its environment)', (b) => (b.HostConfig.Links = ['db:db']), 'HostConfig.Links'],
      ['unmasked /proc paths', (b) => (b.HostConfig.MaskedPaths = []), 'HostConfig.MaskedPaths'],
      ['a log driver that ships elsewhere', (b) => (b.HostConfig.LogConfig = { Type: 'syslog', Config: {} }), 'HostConfig.LogConfig'],
      ['no HostConfig', (b) => delete b.HostConfig, 'HostConfig'],
      ['a HostConfig field at the top level', (b) => (b.Privileged = true), 'Privileged'],
      ['Privileged in another case', (b) => (b.HostConfig.privileged = true), 'HostConfig.Privileged'],
      ['Binds spelt with a long s', (b) => (b.HostConfig['Bind\u017f'] = ['/:/host']), 'HostConfig.Binds'],
      ['a field given twice by case', (b) => (b.HostConfig.readonlyrootfs = false), 'HostConfig.ReadonlyRootfs'],
      ['a network name that is a path', (b) => (b.NetworkingConfig = { EndpointsConfig: { '../x': {} } }), 'network name'],
      ['every exposed port published', (b) => (b.HostConfig.PublishAllPorts = true), 'HostConfig.PublishAllPorts'],
      ['a port published with no host address', (b) => (b.HostConfig.PortBindings = { '8080/tcp': [{ HostPort: '20000' }] }), 'HostIp'],
      ['a port published on an empty host address', (b) => (b.HostConfig.PortBindings = { '8080/tcp': [{ HostIp: '', HostPort: '20000' }] }), 'HostIp'],
      ['a port published on 0.0.0.0', (b) => (b.HostConfig.PortBindings = { '8080/tcp': [{ HostIp: '0.0.0.0', HostPort: '20000' }] }), 'HostIp'],
      ['a port published on ::', (b) => (b.HostConfig.PortBindings = { '8080/tcp': [{ HostIp: '::', HostPort: '20000' }] }), 'HostIp'],
      ['a second binding on every interface', (b) => (b.HostConfig.PortBindings = { '8080/tcp': [{ HostIp: '127.0.0.1' }, { HostIp: '0:0::0' }] }), 'HostIp'],
      // The engine binds an address it cannot parse on every interface; any other host address is reachable from containers.
      ['a port published on a name', (b) => (b.HostConfig.PortBindings = { '8080/tcp': [{ HostIp: 'localhost' }] }), 'HostIp'],
      ['a port published on a zoned address', (b) => (b.HostConfig.PortBindings = { '8080/tcp': [{ HostIp: 'fe80::1%eth0' }] }), 'HostIp'],
      ['a port published on the bridge gateway', (b) => (b.HostConfig.PortBindings = { '8080/tcp': [{ HostIp: '172.17.0.1' }] }), 'HostIp'],
      ['no network mode (the default bridge)', (b) => delete b.HostConfig.NetworkMode, 'HostConfig.NetworkMode'],
      ['an empty network mode', (b) => (b.HostConfig.NetworkMode = ''), 'HostConfig.NetworkMode'],
      ['the default network', (b) => (b.HostConfig.NetworkMode = 'default'), 'HostConfig.NetworkMode'],
      ['the default bridge', (b) => (b.HostConfig.NetworkMode = 'bridge'), 'HostConfig.NetworkMode'],
      ['a network mode that is not a name', (b) => (b.HostConfig.NetworkMode = ['tenant-a-net']), 'HostConfig.NetworkMode'],
      ['an endpoint on the default bridge', (b) => (b.NetworkingConfig = { EndpointsConfig: { bridge: {} } }), 'NetworkingConfig.EndpointsConfig'],
      ['an endpoint on the host network', (b) => (b.NetworkingConfig = { EndpointsConfig: { host: {} } }), 'NetworkingConfig.EndpointsConfig'],
      ['the host cgroup namespace', (b) => (b.HostConfig.CgroupnsMode = 'host'), 'HostConfig.CgroupnsMode'],
      ['kernel parameters', (b) => (b.HostConfig.Sysctls = { 'net.ipv4.ip_unprivileged_port_start': '0' }), 'HostConfig.Sysctls'],
      ['extra groups', (b) => (b.HostConfig.GroupAdd = ['0']), 'HostConfig.GroupAdd'],
      ['a capability set that replaces CapDrop (on a 19.03 engine)', (b) => (b.HostConfig.Capabilities = ['CAP_SYS_ADMIN']), 'HostConfig.Capabilities'],
      ['another runtime', (b) => (b.HostConfig.Runtime = 'nvidia'), 'HostConfig.Runtime'],
      ['the OOM killer told to spare it', (b) => (b.HostConfig.OomScoreAdj = -1000), 'HostConfig.OomScoreAdj'],
      ['the OOM killer turned off', (b) => (b.HostConfig.OomKillDisable = true), 'HostConfig.OomKillDisable'],
    ];
    for (const [what, change, field] of weakenings) {
      it(what, () => expect(reason(createWith(change))).to.include(field));
    }
    it('a body that is not an object', () => {
      expect(reason({ method: 'POST', path: '/containers/create' })).to.include('body');
      expect(reason({ method: 'POST', path: '/containers/create', body: [hardenedCreate()] })).to.include('body');
    });
  });

  describe('refuses', () => {
    const refused: [string, string, string][] = [
      ['POST', '/containers/abc/exec', 'exec'],
      ['POST', '/v1.41/exec/abc/start', 'exec'],
      ['POST', '/containers/abc/attach?stream=1', 'attach'],
      ['GET', '/containers/abc/archive?path=/', 'archive'],
      ['PUT', '/containers/abc/archive?path=/', 'archive'],
      ['GET', '/containers/abc/export', 'export'],
      ['POST', '/commit?container=abc', 'commit'],
      ['POST', '/images/create?fromImage=busybox', 'images/create'],
      ['POST', '/build', 'build'],
      ['POST', '/volumes/create', 'volumes'],
      ['GET', '/volumes', 'volumes'],
      ['POST', '/swarm/init', 'swarm'],
      ['GET', '/plugins', 'plugins'],
      ['GET', '/secrets', 'secrets'],
      ['GET', '/configs', 'configs'],
      ['GET', '/system/df', 'system'],
      ['GET', '/events', 'events'],
      ['GET', '/info', 'info'],
      ['DELETE', '/networks/n', 'networks'],
      ['POST', '/networks/n/connect', 'connect'],
      ['DELETE', '/images/busybox', 'images'],
      ['POST', '/containers/abc/pause', 'pause'],
      ['POST', '/containers/abc/rename?name=x', 'rename'],
      ['POST', '/_ping', '_ping'],
      ['GET', '/containers/create', 'containers/create'],
      ['DELETE', '/containers/abc?link=1', 'link'],
      ['POST', '/v1.23/containers/abc/start', 'v1.23'],
    ];
    for (const [method, path, named] of refused) {
      it(`${method} ${path}`, () => expect(reason({ method, path })).to.include(named));
    }
    it('path traversal, encoded slashes and names that are not names', () => {
      expect(reason({ method: 'GET', path: '/containers/../info/json' })).to.include('..');
      expect(reason({ method: 'GET', path: '/v1.41/../../info' })).to.include('..');
      expect(reason({ method: 'POST', path: '/containers/abc%2F..%2Fexec/start' })).to.include('percent-encoded');
      expect(reason({ method: 'GET', path: '/images/a%2fb/json' })).to.include('percent-encoded');
      expect(reason({ method: 'GET', path: '/containers//json' })).to.include('empty segment');
      expect(reason({ method: 'POST', path: '/containers/-abc/start' })).to.include('not a valid name');
      expect(reason({ method: 'GET', path: '/networks/a:b' })).to.include('not a valid name');
    });
    it('a body where none is taken, or a nested one on an action (a HostConfig on start)', () => {
      expect(reason({ method: 'GET', path: '/containers/json', body: {} })).to.include('takes no body');
      expect(reason({ method: 'POST', path: '/containers/abc/start', body: { HostConfig: { Privileged: true } } })).to.include('HostConfig');
    });
    it('an update of anything but limits, or one that lifts a limit', () => {
      expect(reason({ method: 'POST', path: '/containers/abc/update', body: { Privileged: true } })).to.include('Privileged');
      expect(reason({ method: 'POST', path: '/containers/abc/update', body: { CpusetCpus: '0-63' } })).to.include('CpusetCpus');
      expect(reason({ method: 'POST', path: '/containers/abc/update', body: { PidsLimit: -1 } })).to.include('PidsLimit');
      expect(reason({ method: 'POST', path: '/containers/abc/update', body: { Memory: 1, memory: 0 } })).to.include('Memory');
      expect(reason({ method: 'POST', path: '/containers/abc/update' })).to.include('body');
    });
    it('an update that lifts or zeroes any limit, naming it', () => {
      const lifting: Body[] = [
        { NanoCpus: 0 }, { CpuQuota: -1 }, { CpuQuota: 0 }, { Memory: 0 }, { PidsLimit: 0 }, { MemorySwap: -1 }, { MemorySwap: 0 }, { CpuPeriod: 0 }, { nanocpus: -1 },
      ];
      for (const body of lifting) {
        const [name] = Object.keys(body);
        expect(reason({ method: 'POST', path: '/containers/abc/update', body }).toLowerCase()).to.include(name!.toLowerCase());
      }
    });
    it('a network that is not a plain bridge of the scope', () => {
      const network = (change: Body): DockerRequest => ({ method: 'POST', path: '/networks/create', body: { Name: 'n', Labels: { [LABEL]: 'a' }, ...change } });
      expect(reason(network({ Driver: 'overlay' }))).to.include('Driver');
      expect(reason(network({ Driver: 'macvlan' }))).to.include('Driver');
      expect(reason(network({ Ingress: true }))).to.include('Ingress');
      expect(reason(network({ ConfigOnly: true }))).to.include('ConfigOnly');
      expect(reason(network({ ConfigFrom: { Network: 'other' } }))).to.include('ConfigFrom');
      expect(reason(network({ Labels: {} }))).to.include('Labels');
      expect(reason(network({ Options: { 'com.docker.network.bridge.name': 'docker0' } }))).to.include('Options');
      expect(reason(network({ Scope: 'swarm' }))).to.include('Scope');
      expect(reason(network({ IPAM: { Config: [{ Subnet: '10.0.0.0/8' }] } }))).to.include('IPAM.Config');
      expect(reason(network({ IPAM: { Driver: 'dhcp' } }))).to.include('IPAM.Driver');
    });
  });

  describe('scope check', () => {
    const scoped = { label: LABEL, scope: 'tenant-a' };

    it('asks for the target container’s label on each action on one, and forwards to its full id', () => {
      for (const [method, path, forwarded] of [
        ['POST', '/v1.41/containers/runtime/stop?t=5', '/v1.41/containers/FULL/stop?t=5'],
        ['DELETE', '/containers/runtime?force=true', '/containers/FULL?force=true'],
        ['GET', '/containers/runtime/logs?stdout=1', '/containers/FULL/logs?stdout=1'],
        ['GET', '/containers/runtime/json', '/containers/FULL/json'],
        ['POST', '/containers/runtime/update', '/containers/FULL/update'],
      ] as const) {
        const check = scopeCheck({ method, path, body: path.endsWith('update') ? { Memory: 1 } : undefined }, scoped);
        if (check.kind !== 'container') expect.fail(`${method} ${path}: ${check.kind}`);
        expect(check.id).to.equal('runtime');
        expect(check.pathFor('FULL')).to.equal(forwarded);
      }
    });
    it('asks nothing for a ping, a version, an image or a network read', () => {
      for (const path of ['/_ping', '/version', '/images/x/json', '/networks/n']) {
        expect(scopeCheck({ method: 'GET', path }, scoped)).to.deep.equal({ kind: 'forward', path });
      }
    });
    it('lists only the scope’s containers, keeping the client’s filters (either shape)', () => {
      const listing = (path: string): Record<string, Record<string, boolean>> => {
        const check = scopeCheck({ method: 'GET', path }, scoped);
        if (check.kind !== 'forward') expect.fail(check.kind);
        const query = new URL(check.path, 'http://x').searchParams;
        return JSON.parse(query.get('filters')!);
      };
      expect(listing('/containers/json?all=1')).to.deep.equal({ label: { [`${LABEL}=tenant-a`]: true } });
      const filters = encodeURIComponent(JSON.stringify({ status: ['running'], label: [`${LABEL}=tenant-b`] }));
      expect(listing(`/v1.41/containers/json?filters=${filters}`)).to.deep.equal({
        status: { running: true },
        label: { [`${LABEL}=tenant-b`]: true, [`${LABEL}=tenant-a`]: true },
      });
      expect(scopeCheck({ method: 'GET', path: '/containers/json?filters=nope' }, scoped)).to.deep.equal({ kind: 'refuse', reason: 'the filters are not valid JSON' });
    });
    it('refuses a create or a network labelled for another scope', () => {
      const other = createWith((b) => (b.Labels[LABEL] = 'tenant-b'));
      expect(scopeCheck(other, scoped).kind).to.equal('refuse');
      const network = { method: 'POST', path: '/networks/create', body: { Name: 'n', Labels: { [LABEL]: 'tenant-b' } } };
      expect(scopeCheck(network, scoped).kind).to.equal('refuse');
      network.body.Labels[LABEL] = 'tenant-a';
      expect(scopeCheck(network, scoped)).to.deep.equal({ kind: 'networks', names: [] });
    });
    it('names the user networks a new container joins, for their labels to be checked', () => {
      const joining = createWith((b) => {
        b.HostConfig.NetworkMode = 'tenant-a-net';
        b.NetworkingConfig = { EndpointsConfig: { 'tenant-a-net': {}, 'tenant-a-db': {}, bridge: {} } };
      });
      expect(scopeCheck(joining, scoped)).to.deep.equal({ kind: 'networks', names: ['tenant-a-net', 'tenant-a-db'] });
      expect(scopeCheck(createWith(() => undefined), scoped)).to.deep.equal({ kind: 'networks', names: ['tenant-a-net'] });
      expect(scopeCheck(createWith((b) => (b.HostConfig.NetworkMode = 'none')), scoped)).to.deep.equal({ kind: 'networks', names: [] });
    });
  });

  describe('strict JSON', () => {
    it('refuses a key given twice in an object, by case, by escape or at depth, and accepts the same key in two objects', () => {
      expect(parseStrictJson('{"HostConfig":{"Privileged":true},"HostConfig":{"CapDrop":["ALL"]}}')).to.have.property('problem').that.includes('hostconfig');
      expect(parseStrictJson('{"a":{"Privileged":false,"privileged":true}}')).to.have.property('problem');
      expect(parseStrictJson('{"Binds":[],"\\u0042inds":["/:/h"]}')).to.have.property('problem');
      expect(parseStrictJson('[{"x":1},{"x":2,"y":{"x":"\\"}\\\\"}}]')).to.deep.equal({ value: [{ x: 1 }, { x: 2, y: { x: '"}\\' } }] });
      expect(parseStrictJson('{"x":')).to.deep.equal({ problem: 'the body is not valid JSON' });
    });
  });

  describe('process settings', () => {
    it('reads the defaults and names every missing or invalid variable at once', () => {
      expect(loadDockerProxyConfig({ DOCKER_PROXY_SCOPE: 'tenant-a' })).to.deep.equal({
        upstreamSocket: '/var/run/docker.sock', host: '127.0.0.1', port: 2375, label: LABEL, scope: 'tenant-a', allowPublicPorts: false,
      });
      expect(loadDockerProxyConfig({ DOCKER_PROXY_SCOPE: 'a', DOCKER_PROXY_PUBLIC_PORTS: 'true' }).allowPublicPorts).to.equal(true);
      expect(loadDockerProxyConfig({ DOCKER_PROXY_SCOPE: 'a', DOCKER_PROXY_TOKEN: 't0ken' }).token).to.equal('t0ken');
      try {
        loadDockerProxyConfig({ DOCKER_PROXY_PORT: '70000', DOCKER_PROXY_SOCKET: 'docker.sock' });
        expect.fail('accepted');
      } catch (err) {
        expect(err).to.be.instanceOf(ConfigError);
        const problems = (err as ConfigError).problems.join('\n');
        for (const name of ['DOCKER_PROXY_PORT', 'DOCKER_PROXY_SOCKET', 'DOCKER_PROXY_SCOPE']) expect(problems).to.include(name);
      }
      expect(() => loadDockerProxyConfig({ DOCKER_PROXY_SCOPE: 'a', DOCKER_PROXY_PUBLIC_PORTS: 'maybe' })).to.throw(ConfigError, 'DOCKER_PROXY_PUBLIC_PORTS');
    });
    it('listens beyond loopback only with a token (any container reaching it could drive the engine)', () => {
      for (const host of ['127.0.0.1', '127.0.0.53', '::1', 'localhost']) {
        expect(loadDockerProxyConfig({ DOCKER_PROXY_SCOPE: 'a', DOCKER_PROXY_HOST: host }).host).to.equal(host);
      }
      for (const host of ['0.0.0.0', '::', '172.17.0.1', 'proxy.internal']) {
        expect(() => loadDockerProxyConfig({ DOCKER_PROXY_SCOPE: 'a', DOCKER_PROXY_HOST: host }), host).to.throw(ConfigError, 'DOCKER_PROXY_HOST');
        expect(loadDockerProxyConfig({ DOCKER_PROXY_SCOPE: 'a', DOCKER_PROXY_HOST: host, DOCKER_PROXY_TOKEN: 't0ken' }).host).to.equal(host);
      }
    });
  });
});
