/**
 * Docker compute provider: each service is one hardened container of the runtime image on a Docker engine, made anew
 * at every deploy and found again by its name and labels (nothing about a container is kept only in this process, so
 * a worker that restarts finds every one). What must outlive a container is a row of docker_services: the port the
 * runtime is published on (the customer's access URL names it), its image and limits; its variables are sealed in
 * secrets, as the local provider keeps them.
 *
 * Isolation: every container drops all capabilities, may not gain privileges, runs as a non-root user on a read-only
 * root filesystem (a small tmpfs for /tmp), within the plan's CPU, memory and process limits. All runtimes share one
 * bridge network on which containers cannot reach each other (inter-container traffic is off), and each publishes its
 * port on DOCKER_PUBLISH_HOST (loopback by default, which no container can reach). The host's services a runtime needs
 * (its database, the control plane's callbacks, the model API) are reached through the engine's host gateway: the
 * URLs it calls itself that name a loopback host are handed to it naming `hostAlias` instead, so only what listens on
 * the gateway is reachable, never what listens on loopback alone (the control plane's own database, Redis).
 */
import { randomInt } from 'node:crypto';
import { createServer } from 'node:net';
import Docker from 'dockerode';
import type { ContainerCreateOptions, ContainerInspectInfo } from 'dockerode';
import type { Db } from '../../db/pool.ts';
import type { SecretStore } from '../../secrets.ts';
import type { Plan } from '../../../core/plans.ts';
import { PermanentError } from '../../errors.ts';
import { imageWithVersion } from '../../fleet/settings.ts';
import { logger, maskSecrets } from '../../../core/logger.ts';
import { DOCKER_LABELS } from './dockerLabels.ts';
import type { ComputeProvider, DeploymentState, ListedService, ServiceConfigurationInput, ServiceSettings, ServiceState } from '../types.ts';

export interface DockerComputeOptions {
  /** The engine's address: a unix socket path, or the http(s) URL of an engine or a socket proxy. */
  host: string;
  /** The socket proxy's bearer token (src/dockerProxy), when the engine is reached through one that asks for it. */
  token: string | null;
  image: string;
  network: string;
  publishHost: string;
  /** The host named in access URLs (a public name in front of publishHost); publishHost by default. */
  accessHost: string;
  ports: { from: number; to: number };
  /** The name containers reach the Docker host by (mapped to the engine's host gateway). */
  hostAlias: string;
  /** This control plane's label value: its containers are told apart from others' on a shared engine. */
  scope: string;
}

export interface ServiceRow {
  name: string;
  port: number;
  image: string | null;
  limits: Partial<Pick<Plan, 'cpu' | 'memoryMb' | 'pidsLimit'>>;
}

/** The port the runtime listens on inside its container. */
const RUNTIME_PORT = 8080;
/** How long a container must stay up before its deployment counts as a success (one that cannot start exits at once). */
const STEADY_MS = 1_000;
/** A container made but not started after this long never will be (its deploy died between the two). */
const NEVER_STARTED_MS = 30_000;
/** Restarts by the engine while a deployment is young that still count as starting (say, its database not up yet). */
const STARTING_RESTARTS = 3;
/**
 * The variables holding URLs the runtime calls itself (its database, the control plane, the model and OAuth APIs):
 * a loopback host in them is the Docker host's. Others are left alone: PUBLIC_URL and the OAuth authorize URLs are
 * followed by the customer's browser, for which loopback means their own machine.
 */
const URLS_THE_RUNTIME_CALLS = new Set([
  'DATABASE_URL', 'CONTROL_PLANE_URL', 'ANTHROPIC_BASE_URL', 'GOOGLE_TOKEN_URL', 'GOOGLE_REVOKE_URL', 'GMAIL_API_URL', 'CALENDAR_API_URL', 'GITHUB_API_URL',
]);
const LOG_TAIL_LINES = 20;
const MIB = 1024 * 1024;
const DEFAULT_PIDS_LIMIT = 128;

const log = logger('compute.docker');

export class DockerComputeProvider implements ComputeProvider {
  readonly kind = 'docker';
  readonly serviceStateIsCheap = true;
  private readonly docker: Docker;
  private networkReady?: Promise<void>;

  constructor(
    private readonly db: Db,
    private readonly secrets: SecretStore,
    private readonly options: DockerComputeOptions,
  ) {
    this.docker = new Docker({ ...engineAddress(options.host), ...(options.token && { headers: { authorization: `Bearer ${options.token}` } }) });
  }

  /** The engine answers, and the runtimes' network exists with inter-container traffic off (made when missing). */
  async init(): Promise<void> {
    await this.docker.ping();
    await this.ensureNetwork();
  }

  /** A service is its row, one per name: creating is idempotent, so `mayExist` changes nothing here. */
  async createService(name: string): Promise<{ serviceId: string; created: boolean }> {
    checkName(name);
    let created = false;
    let row = await this.row(name);
    // Another control plane on the engine (or any program) may hold a port this database calls free: then another.
    for (let tries = 0; !row && tries < 10; tries++) {
      const port = randomInt(this.options.ports.from, this.options.ports.to + 1);
      if (!(await this.bindable(port))) continue;
      const inserted = await this.db.query(`INSERT INTO docker_services (name, port) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [name, port]);
      created ||= inserted.rowCount === 1;
      row = await this.row(name);
    }
    if (!row) throw new Error(`no free port found in ${this.options.ports.from}-${this.options.ports.to} for service ${name}`);
    return { serviceId: name, created };
  }

  async accessUrl(serviceId: string): Promise<string> {
    return `http://${this.options.accessHost}:${(await this.requireRow(serviceId)).port}`;
  }

  /** Kept for the next deploy: a container's configuration is fixed when it is made. */
  async configure(serviceId: string, settings: ServiceConfigurationInput): Promise<void> {
    await this.requireRow(serviceId);
    await this.secrets.put(secretOwner(serviceId), 'variables', JSON.stringify(settings.variables));
    const image = settings.version ? imageWithVersion(this.options.image, settings.version) : this.options.image;
    const { cpu, memoryMb, pidsLimit } = settings.limits;
    await this.db.query('UPDATE docker_services SET image = $2, limits = $3 WHERE name = $1', [serviceId, image, JSON.stringify({ cpu, memoryMb, pidsLimit })]);
  }

  /**
   * Replaces the service's container (if any) by a new one of its configuration, started; its id is the deployment's.
   * What the new one needs (its image, the network) is made sure of first, so a deploy that cannot succeed leaves the
   * running container alone; the old one is then stopped gracefully (in-flight requests finish) and removed.
   */
  async deploy(serviceId: string): Promise<{ deploymentId: string }> {
    const row = await this.requireRow(serviceId);
    const variables = await this.variables(serviceId);
    const spec = containerSpec(row, variables, this.options);
    await this.requireImage(spec.Image!);
    await this.ensureNetwork();
    await this.removeContainer(serviceId, { graceful: true });
    let container: Docker.Container;
    try {
      container = await this.docker.createContainer(spec);
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
      // The image is there, so the network is what went missing (removed since it was made): made again, once.
      this.networkReady = undefined;
      await this.ensureNetwork();
      container = await this.docker.createContainer(spec);
    }
    await container.start();
    log.info('runtime container started', { service: serviceId, container: container.id.slice(0, 12), port: row.port });
    return { deploymentId: container.id };
  }

  async deploymentState(serviceId: string, deploymentId: string): Promise<{ state: DeploymentState; detail?: string }> {
    const info = await this.inspect(serviceId);
    if (!info || info.Id !== deploymentId) return { state: 'failed', detail: 'deployment was superseded or removed' };
    const { State } = info;
    if (State.Running && !State.Restarting) {
      return { state: Date.now() - Date.parse(State.StartedAt) >= STEADY_MS ? 'success' : 'in_progress' };
    }
    if (State.Status === 'created' && !State.Error && Date.now() - Date.parse(info.Created) < NEVER_STARTED_MS) return { state: 'in_progress' };
    if (State.Restarting && info.RestartCount < STARTING_RESTARTS) return { state: 'in_progress' };
    const lines = (await this.recentLog(serviceId)).slice(-5);
    return { state: 'failed', detail: `${describeState(info)}${lines.length ? `; last log lines: ${lines.join(' | ')}` : ''}` };
  }

  /** The container, unless it was made and never started (a deploy that died between the two): that one is deployed anew. */
  async latestDeployment(serviceId: string): Promise<{ deploymentId: string; createdAt: Date } | null> {
    const info = await this.inspect(serviceId);
    return info && info.State.Status !== 'created' ? { deploymentId: info.Id, createdAt: new Date(info.Created) } : null;
  }

  async serviceState(serviceId: string): Promise<ServiceState> {
    const info = await this.inspect(serviceId);
    if (!info) return { running: false, detail: 'the container does not exist' };
    return { running: info.State.Running && !info.State.Restarting, detail: describeState(info) };
  }

  /** Restarts the container; one that is gone (removed by hand, pruned) is made again from the configuration. */
  async restart(serviceId: string): Promise<{ action: string }> {
    const info = await this.inspect(serviceId);
    if (!info) {
      const { deploymentId } = await this.deploy(serviceId);
      return { action: `made container ${deploymentId.slice(0, 12)} again (the service had none)` };
    }
    await this.docker.getContainer(info.Id).restart({ t: 10 });
    return { action: `restarted container ${info.Id.slice(0, 12)} (${info.State.Status} before)` };
  }

  /** Stopped containers stay stopped: the engine restarts only those that crash. */
  async stop(serviceId: string): Promise<void> {
    const info = await this.inspect(serviceId);
    if (!info) return;
    try {
      await this.docker.getContainer(info.Id).stop({ t: 10 });
    } catch (err) {
      if (statusOf(err) !== 304 && statusOf(err) !== 404) throw err; // already stopped, or gone
    }
  }

  async deleteService(serviceId: string): Promise<void> {
    await this.removeContainer(serviceId);
    await this.db.query('DELETE FROM docker_services WHERE name = $1', [serviceId]);
    await this.secrets.delete(secretOwner(serviceId), 'variables');
  }

  /** Every service row, and every container of this control plane's scope (one whose row is gone is an orphan). */
  async listServices(): Promise<ListedService[]> {
    const { rows } = await this.db.query<{ name: string }>('SELECT name FROM docker_services ORDER BY name');
    const names = new Set(rows.map((row) => row.name));
    for (const container of await this.docker.listContainers({ all: true, filters: { label: [`${DOCKER_LABELS.scope}=${this.options.scope}`] } })) {
      const name = container.Labels[DOCKER_LABELS.service];
      if (name) names.add(name);
    }
    return [...names].map((name) => ({ serviceId: name, name }));
  }

  /** The variables as configured; the limits as the container holds them (as configured when it has none yet). */
  async readSettings(serviceId: string): Promise<ServiceSettings | null> {
    const row = await this.row(serviceId);
    if (!row) return null;
    const variables = await this.variables(serviceId);
    const info = await this.inspect(serviceId);
    if (info?.HostConfig.NanoCpus && info.HostConfig.Memory) {
      return { variables, limits: { cpu: info.HostConfig.NanoCpus / 1e9, memoryMb: info.HostConfig.Memory / MIB } };
    }
    const { cpu, memoryMb } = row.limits;
    return { variables, limits: typeof cpu === 'number' && typeof memoryMb === 'number' ? { cpu, memoryMb } : null };
  }

  /** The container's last log lines, credentials masked. */
  async recentLog(serviceId: string): Promise<string[]> {
    try {
      const info = await this.inspect(serviceId);
      if (!info) return [];
      const output = await this.docker.getContainer(info.Id).logs({ stdout: true, stderr: true, tail: LOG_TAIL_LINES, follow: false });
      return maskSecrets(demultiplex(Buffer.from(output))).split('\n').filter(Boolean).slice(-LOG_TAIL_LINES);
    } catch {
      return [];
    }
  }

  async close(): Promise<void> {}

  private ensureNetwork(): Promise<void> {
    this.networkReady ??= this.makeNetwork().catch((err: unknown) => {
      this.networkReady = undefined; // asked again next time
      throw err;
    });
    return this.networkReady;
  }

  /** Made under a lock of this control plane's: two workers starting at once would otherwise make two of one name. */
  private async makeNetwork(): Promise<void> {
    const client = await this.db.connect();
    try {
      await client.query('SELECT pg_advisory_lock(hashtext($1))', [`docker-network/${this.options.network}`]);
      await this.findOrMakeNetwork();
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [`docker-network/${this.options.network}`]).catch(() => undefined);
      client.release();
    }
  }

  private async findOrMakeNetwork(): Promise<void> {
    const { network } = this.options;
    let info = await this.docker.getNetwork(network).inspect().catch((err: unknown) => (statusOf(err) === 404 ? null : Promise.reject(err)));
    if (!info) {
      try {
        await this.docker.createNetwork({
          Name: network,
          Driver: 'bridge',
          CheckDuplicate: true,
          Options: { 'com.docker.network.bridge.enable_icc': 'false' },
          Labels: { [DOCKER_LABELS.scope]: this.options.scope },
        });
      } catch (err) {
        if (statusOf(err) !== 409) throw err; // made meanwhile by another worker
      }
      info = await this.docker.getNetwork(network).inspect();
    }
    const options = (info as { Options?: Record<string, string> }).Options ?? {};
    if (options['com.docker.network.bridge.enable_icc'] !== 'false') {
      throw new PermanentError(`Docker network ${network} lets its containers reach each other: remove it, or name another in DOCKER_NETWORK`);
    }
  }

  private async requireImage(image: string): Promise<void> {
    try {
      await this.docker.getImage(image).inspect();
    } catch (err) {
      if (statusOf(err) === 404) throw new PermanentError(`the runtime image ${image} is not on the Docker engine (build it with npm run build:images)`);
      throw err;
    }
  }

  private async removeContainer(serviceId: string, options: { graceful?: boolean } = {}): Promise<void> {
    const info = await this.inspect(serviceId);
    if (!info) return;
    try {
      if (options.graceful && info.State.Running) await this.docker.getContainer(info.Id).stop({ t: 10 }).catch(() => undefined);
      await this.docker.getContainer(info.Id).remove({ force: true });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }

  /** The service's container, when it exists and is this control plane's (a name is not proof enough on a shared engine). */
  private async inspect(serviceId: string): Promise<ContainerInspectInfo | null> {
    try {
      const info = await this.docker.getContainer(serviceId).inspect();
      return info.Config.Labels?.[DOCKER_LABELS.scope] === this.options.scope ? info : null;
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  private async variables(serviceId: string): Promise<Record<string, string>> {
    return JSON.parse((await this.secrets.get(secretOwner(serviceId), 'variables')) ?? '{}') as Record<string, string>;
  }

  private async row(name: string): Promise<ServiceRow | undefined> {
    const { rows } = await this.db.query<ServiceRow>('SELECT name, port, image, limits FROM docker_services WHERE name = $1', [name]);
    return rows[0];
  }

  private async requireRow(name: string): Promise<ServiceRow> {
    const row = await this.row(name);
    if (!row) throw new Error(`docker service ${name} does not exist`);
    return row;
  }

  /** Whether nothing on this machine holds the port on the publish address (an address not of this machine: unknown, yes). */
  private bindable(port: number): Promise<boolean> {
    return new Promise((resolve) => {
      const server = createServer();
      server.unref();
      server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRNOTAVAIL'));
      server.listen(port, this.options.publishHost, () => server.close(() => resolve(true)));
    });
  }
}

/** What the engine is asked to make: the hardened container of a service's configuration (the socket proxy lets it through). */
export function containerSpec(row: ServiceRow, variables: Record<string, string>, options: DockerComputeOptions): ContainerCreateOptions {
  const { cpu = 0.5, memoryMb = 512, pidsLimit = DEFAULT_PIDS_LIMIT } = row.limits;
  const env: Record<string, string> = {
    NODE_ENV: 'production',
    ...Object.fromEntries(
      Object.entries(variables).map(([name, value]) => [name, URLS_THE_RUNTIME_CALLS.has(name) ? throughGateway(value, options.hostAlias) : value]),
    ),
    HOST: '0.0.0.0',
    PORT: String(RUNTIME_PORT),
    NODE_OPTIONS: `--max-old-space-size=${Math.floor(memoryMb * 0.75)}`,
  };
  return {
    name: row.name,
    Image: row.image ?? options.image,
    User: '1000:1000',
    Env: Object.entries(env).map(([name, value]) => `${name}=${value}`),
    Labels: {
      [DOCKER_LABELS.scope]: options.scope,
      [DOCKER_LABELS.service]: row.name,
      [DOCKER_LABELS.workspace]: variables.WORKSPACE_ID ?? '',
    },
    ExposedPorts: { [`${RUNTIME_PORT}/tcp`]: {} },
    HostConfig: {
      // A minimal init as PID 1: SIGTERM reaches the runtime, and the processes its tools start are reaped.
      Init: true,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges:true'],
      ReadonlyRootfs: true,
      Tmpfs: { '/tmp': 'rw,noexec,nosuid,nodev,size=64m' },
      Memory: memoryMb * MIB,
      MemorySwap: memoryMb * MIB, // no swap beyond the memory limit
      NanoCpus: Math.round(cpu * 1e9),
      PidsLimit: pidsLimit,
      // Up again after a crash, an engine restart or a reboot; stopped only when stopped on purpose (a cancellation).
      RestartPolicy: { Name: 'unless-stopped' },
      NetworkMode: options.network,
      PortBindings: { [`${RUNTIME_PORT}/tcp`]: [{ HostIp: options.publishHost, HostPort: String(row.port) }] },
      ExtraHosts: [`${options.hostAlias}:host-gateway`],
      LogConfig: { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '3' } },
    },
  };
}

function secretOwner(serviceName: string): string {
  return `docker-service/${serviceName}`;
}

/** Container names the engine takes: the service names this control plane makes (claw-<slug>) always are. */
function checkName(name: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(name)) throw new PermanentError(`invalid service name ${JSON.stringify(name)}`);
}

/** dockerode's options for an engine address: a socket path (unix:// or bare), or an http(s)/tcp URL. */
function engineAddress(host: string): Docker.DockerOptions {
  if (host.startsWith('/') || host.startsWith('unix://')) return { socketPath: host.replace(/^unix:\/\//, '') };
  const url = new URL(host.replace(/^tcp:\/\//, 'http://'));
  return { protocol: url.protocol === 'https:' ? 'https' : 'http', host: url.hostname, port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)) };
}

/** A URL naming a loopback host, as a container must write it: through the Docker host's gateway. Other values as they are. */
export function throughGateway(value: string, hostAlias: string): string {
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?)(?:127\.0\.0\.1|localhost|\[::1\])(?=[:/?#]|$)/i, `$1${hostAlias}`);
}

function statusOf(err: unknown): number | undefined {
  return (err as { statusCode?: number }).statusCode;
}

/** What the engine says of a container, for operators: running since when, or how it ended. */
function describeState(info: ContainerInspectInfo): string {
  const { State } = info;
  const id = info.Id.slice(0, 12);
  if (State.Running && !State.Restarting) return `container ${id} running since ${State.StartedAt}`;
  const how = State.OOMKilled ? 'was killed for want of memory' : `exited with code ${State.ExitCode}`;
  const restarts = info.RestartCount ? `, restarted ${info.RestartCount} times` : '';
  return `container ${id} ${State.Restarting ? 'is restarting: it ' : ''}${State.Status === 'created' ? 'has not started' : how}${restarts}${State.Error ? ` (${State.Error})` : ''}`;
}

/** A container log as the engine sends it without a TTY: frames of an 8-byte header (stream, size) and their bytes. */
export function demultiplex(output: Buffer): string {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= output.length && output[offset]! <= 2 && output.readUInt16BE(offset + 1) === 0) {
    const size = output.readUInt32BE(offset + 4);
    parts.push(output.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  return offset === 0 ? output.toString('utf8') : Buffer.concat(parts).toString('utf8');
}
