/**
 * Local compute provider: each service is a runtime process on this machine, on its own loopback port. What should
 * run is kept in Postgres (local_services, variables encrypted in secrets). A runtime is its own process group and
 * writes its log straight to a file, so it outlives the worker that started it: each worker supervising runtimes
 * holds a lease on them, renewed while it lives, and a worker that is alive adopts the runtimes whose lease ran out
 * (their worker died) or was handed over (their worker stopped while another one was alive). The lease is taken in
 * one statement, so two workers never run one runtime twice. A runtime that exits is recorded, not restarted: the
 * health monitor restarts it through restart(), counting restarts and stopping a crash loop.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { ensurePrivateDirSync, PRIVATE_FILE_MODE } from '../../../core/privateFiles.ts';
import { open, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Db } from '../../db/pool.ts';
import type { SecretStore } from '../../secrets.ts';
import type { Plan } from '../../../core/plans.ts';
import type { ComputeProvider, DeploymentState, ListedService, ServiceConfigurationInput, ServiceSettings, ServiceState } from '../types.ts';
import { releaseEntry } from '../../fleet/releases.ts';
import { logger, maskSecrets } from '../../../core/logger.ts';

export interface LocalComputeOptions {
  command: string;
  args: string[];
  logDir: string;
  /** Each runtime keeps its workspace files under <workspacesDir>/<service>, filled from its database at start. */
  workspacesDir: string;
  /** How long a worker's hold on its runtimes lasts unless renewed (it is renewed every third of it). Default 6 s. */
  leaseMs?: number;
  /**
   * Runtime versions on disk (RUNTIME_RELEASES_DIR): a service whose RUNTIME_VERSION names one runs its entry in place
   * of the last of `args`; other versions run the built-in runtime.
   */
  releasesDir?: string | null;
}

interface ServiceRow {
  name: string;
  port: number;
  desired_state: 'running' | 'stopped';
  pid: number | null;
  deployment_id: string | null;
  limits: Partial<Pick<Plan, 'cpu' | 'memoryMb'>>;
  deployed_at: Date | null;
  owner: string | null;
  exit_detail: string | null;
}

/** A runtime this worker supervises: its own child, or one adopted from a worker that left (no child handle). */
interface Watched {
  pid: number;
  port: number;
  child?: ChildProcess;
  startedAt: number;
  deploymentId: string | null;
  /** Set when this worker ends it on purpose (stop, redeploy, close): its exit is not a crash. */
  stopping: boolean;
  spawnError?: string;
}

const log = logger('compute.local');
/** How long a new runtime must stay up before its deployment counts as a success. */
const STEADY_MS = 300;
/** Lines of a runtime's log shown to operators with a failure. */
const LOG_TAIL_LINES = 20;
const DEFAULT_LEASE_MS = 6_000;

export class LocalComputeProvider implements ComputeProvider {
  readonly kind = 'local';
  readonly serviceStateIsCheap = true;
  /** This process as a supervisor, unique across restarts and machines. */
  readonly supervisorId = `${hostname()}/${process.pid}/${randomBytes(4).toString('hex')}`;
  private readonly watched = new Map<string, Watched>();
  private readonly leaseMs: number;
  private tick?: NodeJS.Timeout;
  private ticking?: Promise<void>;

  constructor(
    private readonly db: Db,
    private readonly secrets: SecretStore,
    private readonly options: LocalComputeOptions,
  ) {
    ensurePrivateDirSync(options.logDir);
    ensurePrivateDirSync(options.workspacesDir);
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  }

  /** A local service is its row, one per name: creating is idempotent, so `mayExist` changes nothing here. */
  async createService(name: string): Promise<{ serviceId: string; created: boolean }> {
    let created = false;
    let row = await this.row(name);
    // A port the OS calls free may already belong to a service that is not running yet: then take another.
    for (let tries = 0; !row && tries < 5; tries++) {
      const inserted = await this.db.query(
        `INSERT INTO local_services (name, port, desired_state) VALUES ($1, $2, 'stopped') ON CONFLICT DO NOTHING`,
        [name, await freePort()],
      );
      created ||= inserted.rowCount === 1;
      row = await this.row(name);
    }
    if (!row) throw new Error(`no free port found for local service ${name}`);
    return { serviceId: name, created };
  }

  async accessUrl(serviceId: string): Promise<string> {
    return `http://127.0.0.1:${(await this.requireRow(serviceId)).port}`;
  }

  /** The version is the RUNTIME_VERSION variable here: start() picks the runtime's entry by it. */
  async configure(serviceId: string, settings: ServiceConfigurationInput): Promise<void> {
    await this.setVariables(serviceId, settings.variables);
    await this.setLimits(serviceId, settings.limits);
  }

  async setVariables(serviceId: string, variables: Record<string, string>): Promise<void> {
    await this.requireRow(serviceId);
    await this.secrets.put(secretOwner(serviceId), 'variables', JSON.stringify(variables));
  }

  async setLimits(serviceId: string, limits: Pick<Plan, 'cpu' | 'memoryMb'>): Promise<void> {
    await this.requireRow(serviceId);
    await this.db.query('UPDATE local_services SET limits = $2 WHERE name = $1', [
      serviceId,
      JSON.stringify({ cpu: limits.cpu, memoryMb: limits.memoryMb }),
    ]);
  }

  async deploy(serviceId: string): Promise<{ deploymentId: string }> {
    const deploymentId = `dep-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    await this.db.query(
      `UPDATE local_services SET desired_state = 'running', deployment_id = $2, deployed_at = now() WHERE name = $1`,
      [serviceId, deploymentId],
    );
    await this.start(serviceId);
    return { deploymentId };
  }

  async deploymentState(serviceId: string, deploymentId: string): Promise<{ state: DeploymentState; detail?: string }> {
    const row = await this.requireRow(serviceId);
    if (row.deployment_id !== deploymentId) return { state: 'failed', detail: 'deployment was superseded or removed' };
    if (row.desired_state === 'stopped') return { state: 'failed', detail: 'the service was stopped' };
    const watched = this.watched.get(serviceId);
    if (watched?.spawnError) return { state: 'failed', detail: `the runtime command could not start: ${watched.spawnError}` };
    if (row.pid === null) {
      const lines = (await this.recentLog(serviceId)).slice(-5);
      return { state: 'failed', detail: `${row.exit_detail ?? 'the runtime exited'}${lines.length ? `; last log lines: ${lines.join(' | ')}` : ''}` };
    }
    if (!this.isOurRuntime(row.pid, row.port)) return { state: 'in_progress' }; // its supervisor has not recorded it yet
    // Up for a moment is success (a runtime that cannot start exits at once).
    const startedAt = watched?.pid === row.pid ? watched.startedAt : (row.deployed_at?.getTime() ?? 0);
    return { state: Date.now() - startedAt >= STEADY_MS ? 'success' : 'in_progress' };
  }

  async latestDeployment(serviceId: string): Promise<{ deploymentId: string; createdAt: Date } | null> {
    const row = await this.row(serviceId);
    return row?.deployment_id && row.deployed_at ? { deploymentId: row.deployment_id, createdAt: row.deployed_at } : null;
  }

  async serviceState(serviceId: string): Promise<ServiceState> {
    const row = await this.row(serviceId);
    if (!row) return { running: false, detail: 'the service does not exist' };
    if (row.desired_state === 'stopped') return { running: false, detail: 'the service is stopped' };
    if (row.pid !== null && this.isOurRuntime(row.pid, row.port)) return { running: true, detail: `process ${row.pid} on port ${row.port}` };
    return { running: false, detail: row.exit_detail ?? 'the runtime process is not running' };
  }

  async restart(serviceId: string): Promise<{ action: string }> {
    const row = await this.requireRow(serviceId);
    if (row.desired_state !== 'running') throw new Error(`local service ${serviceId} is stopped; deploy it instead`);
    const pid = await this.start(serviceId);
    return { action: `started a new runtime process (pid ${pid}) on port ${row.port}` };
  }

  async stop(serviceId: string): Promise<void> {
    const row = await this.row(serviceId);
    await this.db.query(`UPDATE local_services SET desired_state = 'stopped', pid = NULL, owner = NULL, lease_until = NULL WHERE name = $1`, [serviceId]);
    await this.end(serviceId, row);
  }

  async deleteService(serviceId: string): Promise<void> {
    await this.stop(serviceId);
    this.killStrays(serviceId);
    await this.db.query('DELETE FROM local_services WHERE name = $1', [serviceId]);
    await this.secrets.delete(secretOwner(serviceId), 'variables');
    await rm(this.workspaceDir(serviceId), { recursive: true, force: true });
  }

  /** Every service row, and every runtime process of ours still running for a service without one (see killStrays). */
  async listServices(): Promise<ListedService[]> {
    const { rows } = await this.db.query<{ name: string }>('SELECT name FROM local_services ORDER BY name');
    const names = new Set(rows.map((row) => row.name));
    for (const running of this.runtimeProcesses()) names.add(running.name);
    return [...names].map((name) => ({ serviceId: name, name }));
  }

  /**
   * A deleted service's runtimes that outlived the process supervising them (a worker killed outright leaves its
   * children running): found by their command line and workspace, and stopped.
   */
  private killStrays(serviceId: string): void {
    for (const stray of this.runtimeProcesses().filter((p) => p.name === serviceId)) {
      try {
        process.kill(stray.pid, 'SIGTERM');
      } catch {
        // exited meanwhile
      }
    }
  }

  /**
   * The runtime processes on this machine started by this control plane: its runtime command line, a workspace
   * directly under its workspaces directory (another control plane's runtimes have theirs elsewhere).
   */
  private runtimeProcesses(): { pid: number; name: string }[] {
    return this.commandLines().flatMap((line) => runtimeProcesses(line, this.options.workspacesDir));
  }

  async readSettings(serviceId: string): Promise<ServiceSettings | null> {
    const row = await this.row(serviceId);
    if (!row) return null;
    const variables = JSON.parse((await this.secrets.get(secretOwner(serviceId), 'variables')) ?? '{}') as Record<string, string>;
    const { cpu, memoryMb } = row.limits;
    return { variables, limits: typeof cpu === 'number' && typeof memoryMb === 'number' ? { cpu, memoryMb } : null };
  }

  workspaceDir(serviceId: string): string {
    return path.join(this.options.workspacesDir, serviceId);
  }

  /**
   * Makes this process a supervisor (workers only; the web never runs runtimes): adopts every runtime that should run
   * and has no live supervisor, starting those that are not running, then keeps its leases and adopts again every
   * third of a lease. Answers how many runtimes were adopted at once.
   */
  async startSupervising(): Promise<number> {
    const adopted = await this.supervise();
    this.tick = setInterval(() => {
      this.ticking ??= this.supervise()
        .then(() => undefined, (err: Error) => log.error('supervising local runtimes failed', { error: err.message }))
        .finally(() => (this.ticking = undefined));
    }, Math.max(50, Math.floor(this.leaseMs / 3)));
    this.tick.unref();
    return adopted;
  }

  /**
   * Stops supervising. Another live supervisor adopts these runtimes, which keep running meanwhile; without one (the
   * last worker, or `npm start` alone) they are stopped, and a control plane started later starts them again.
   */
  async close(): Promise<void> {
    clearInterval(this.tick);
    await this.ticking;
    if (!this.supervising()) return;
    const { rows } = await this.db.query<{ others: boolean }>(
      `WITH gone AS (DELETE FROM local_supervisors WHERE id = $1)
       SELECT EXISTS (SELECT 1 FROM local_supervisors WHERE id <> $1 AND lease_until > now()) AS others`,
      [this.supervisorId],
    );
    const handOver = rows[0]!.others;
    if (!handOver) await Promise.all([...this.watched.keys()].map((name) => this.end(name)));
    await this.db.query(`UPDATE local_services SET owner = NULL, lease_until = NULL WHERE owner = $1`, [this.supervisorId]);
    for (const watched of this.watched.values()) {
      watched.stopping = true; // its exit is no longer ours to record
      watched.child?.unref();
    }
    this.watched.clear();
    if (handOver) log.info('local runtimes handed over to another worker', { supervisor: this.supervisorId });
  }

  private supervising(): boolean {
    return this.tick !== undefined;
  }

  /** One supervision round: renew, notice runtimes that ended while unwatched, adopt what has no supervisor. */
  private async supervise(): Promise<number> {
    const lease = `${this.leaseMs} milliseconds`;
    await this.db.query(
      `INSERT INTO local_supervisors (id, lease_until) VALUES ($1, now() + $2::interval)
       ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until`,
      [this.supervisorId, lease],
    );
    // Ours still: renewed. A runtime another worker took over (a restart by the monitor there) is no longer watched.
    const { rows: owned } = await this.db.query<{ name: string }>(
      `UPDATE local_services SET lease_until = now() + $2::interval WHERE owner = $1 RETURNING name`,
      [this.supervisorId, lease],
    );
    const ours = new Set(owned.map((r) => r.name));
    for (const [name, watched] of this.watched) {
      if (!ours.has(name)) this.forget(name, watched);
      else if (!watched.child && !this.isOurRuntime(watched.pid, watched.port)) await this.recordExit(name, watched, 'the runtime process ended');
    }
    // Adopted in one statement: a row is taken by one supervisor only.
    const { rows: adopted } = await this.db.query<ServiceRow>(
      `UPDATE local_services s SET owner = $1, lease_until = now() + $2::interval
       FROM (SELECT name FROM local_services WHERE desired_state = 'running' AND (owner IS NULL OR lease_until < now())
             FOR UPDATE SKIP LOCKED) free
       WHERE s.name = free.name RETURNING s.*`,
      [this.supervisorId, lease],
    );
    for (const row of adopted) {
      if (row.pid !== null && this.isOurRuntime(row.pid, row.port)) {
        this.watched.set(row.name, { pid: row.pid, port: row.port, startedAt: Date.now(), deploymentId: row.deployment_id, stopping: false });
      } else if (row.pid !== null) {
        // It was running when its supervisor left (a restart of the control plane, a worker killed with it): start it.
        await this.start(row.name);
      }
      // A runtime that exited while its supervisor watched (pid NULL) is the health monitor's to restart.
    }
    if (adopted.length) log.info('local runtimes adopted', { count: adopted.length, supervisor: this.supervisorId });
    return adopted.length;
  }

  private isOurRuntime(pid: number, port: number): boolean {
    return this.commandLines().some((line) => runsAs(pid, line, port));
  }

  /** What our runtimes' command lines hold: the built-in runtime's arguments, or those of a release (its directory). */
  private commandLines(): string[] {
    const { args, releasesDir } = this.options;
    return releasesDir ? [args.join('\0'), [...args.slice(0, -1), releasesDir].join('\0')] : [args.join('\0')];
  }

  /** The arguments that start `version`: its release's entry in place of the built-in one, when it is on disk. */
  private argsFor(version: string | undefined): string[] {
    const entry = version ? releaseEntry(this.options.releasesDir ?? null, version) : undefined;
    return entry ? [...this.options.args.slice(0, -1), entry] : this.options.args;
  }

  private async row(name: string): Promise<ServiceRow | undefined> {
    const { rows } = await this.db.query<ServiceRow>('SELECT * FROM local_services WHERE name = $1', [name]);
    return rows[0];
  }

  private async requireRow(name: string): Promise<ServiceRow> {
    const row = await this.row(name);
    if (!row) throw new Error(`local service ${name} does not exist`);
    return row;
  }

  /** Takes the service over, ends whatever runs it now (this worker's or another's), and starts a new process. */
  private async start(name: string): Promise<number> {
    const { rows } = await this.db.query<ServiceRow>(
      `UPDATE local_services SET owner = $2, lease_until = now() + $3::interval WHERE name = $1 RETURNING *`,
      [name, this.supervisorId, `${this.leaseMs} milliseconds`],
    );
    const row = rows[0];
    if (!row) throw new Error(`local service ${name} does not exist`);
    await this.end(name, row);
    const variables = JSON.parse((await this.secrets.get(secretOwner(name), 'variables')) ?? '{}') as Record<string, string>;
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      NODE_ENV: process.env.NODE_ENV ?? 'production',
      ...variables,
      WORKSPACE_DIR: this.workspaceDir(name),
      HOST: '127.0.0.1',
      PORT: String(row.port),
    };
    if (row.limits.memoryMb) env.NODE_OPTIONS = `--max-old-space-size=${Math.floor(row.limits.memoryMb * 0.75)}`;
    // The log file itself is the child's stdout and stderr (no pipe through this process), so the runtime keeps
    // logging when its worker is gone.
    const logFd = openSync(this.logPath(name), 'a', PRIVATE_FILE_MODE);
    let child: ChildProcess;
    try {
      child = spawn(this.options.command, this.argsFor(variables.RUNTIME_VERSION), { env, stdio: ['ignore', logFd, logFd], detached: true });
    } finally {
      closeSync(logFd);
    }
    const watched: Watched = { pid: child.pid ?? -1, port: row.port, child, startedAt: Date.now(), deploymentId: row.deployment_id, stopping: false };
    this.watched.set(name, watched);
    child.on('exit', (code, signal) => {
      if (watched.stopping || this.watched.get(name) !== watched) return;
      const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
      log.warn('runtime exited', { service: name, code, signal });
      this.recordExit(name, watched, `the runtime process ${how}`).catch((err: Error) =>
        log.error('could not record a runtime exit', { service: name, error: err.message }),
      );
    });
    child.on('error', (err) => {
      // The command itself could not run (ENOENT, EACCES): no exit event follows, and retrying will not help.
      watched.spawnError = err.message;
      log.error('runtime failed to start', { service: name, error: err.message });
    });
    await this.db.query('UPDATE local_services SET pid = $2, exited_at = NULL, exit_detail = NULL WHERE name = $1', [name, child.pid ?? null]);
    return child.pid ?? -1;
  }

  /** A watched runtime ended on its own: recorded for the monitor (only while this worker still runs that process). */
  private async recordExit(name: string, watched: Watched, detail: string): Promise<void> {
    this.watched.delete(name);
    await this.db.query(
      `UPDATE local_services SET pid = NULL, exited_at = now(), exit_detail = $3 WHERE name = $1 AND pid = $2 AND owner = $4`,
      [name, watched.pid, detail, this.supervisorId],
    );
  }

  private forget(name: string, watched: Watched): void {
    watched.stopping = true;
    watched.child?.unref();
    this.watched.delete(name);
  }

  /**
   * Ends the service's running process: this worker's own child (SIGTERM, SIGKILL after 5 s), or a runtime another
   * worker process on this machine runs (a redeploy or stop from here replaces it).
   */
  private async end(name: string, row?: ServiceRow): Promise<void> {
    const watched = this.watched.get(name);
    if (watched) {
      this.watched.delete(name);
      watched.stopping = true;
      await terminate(watched.pid, watched.child);
    }
    if (row?.pid && row.pid !== watched?.pid && this.isOurRuntime(row.pid, row.port)) await terminate(row.pid);
  }

  private logPath(name: string): string {
    return path.join(this.options.logDir, `${name}.log`);
  }

  /** The last lines of the runtime's log, credentials masked. */
  async recentLog(name: string): Promise<string[]> {
    try {
      const file = await open(this.logPath(name), 'r');
      try {
        const { size } = await file.stat();
        const length = Math.min(size, 16 * 1024);
        const buffer = Buffer.alloc(length);
        await file.read(buffer, 0, length, size - length);
        return maskSecrets(buffer.toString('utf8')).split('\n').filter(Boolean).slice(-LOG_TAIL_LINES);
      } finally {
        await file.close();
      }
    } catch {
      return [];
    }
  }
}

function secretOwner(serviceName: string): string {
  return `local-service/${serviceName}`;
}

/** SIGTERM, then SIGKILL after 5 s; resolves when the process is gone. */
async function terminate(pid: number, child?: ChildProcess): Promise<void> {
  if (child) {
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => child.kill('SIGKILL'), 5_000);
      child.once('exit', () => {
        clearTimeout(force);
        resolve();
      });
      child.kill('SIGTERM');
    });
    return;
  }
  const signal = (name: NodeJS.Signals | 0) => {
    try {
      process.kill(pid, name);
      return true;
    } catch {
      return false; // gone
    }
  };
  if (!signal('SIGTERM')) return;
  const deadline = Date.now() + 5_000;
  while (signal(0)) {
    if (Date.now() > deadline) {
      signal('SIGKILL');
      return;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Whether pid is still this service's runtime: the configured command line, serving this port (and not an
 * unrelated process, or another customer's runtime, that reused the pid).
 */
function runsAs(pid: number, commandLine: string, port: number): boolean {
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(commandLine)) return false;
    return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`PORT=${port}`);
  } catch {
    return false;
  }
}

/** The processes running this runtime command line with a workspace directly under `workspacesDir`, by service name. */
function runtimeProcesses(commandLine: string, workspacesDir: string): { pid: number; name: string }[] {
  const found: { pid: number; name: string }[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return found; // no /proc (not Linux): no process to find
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(commandLine)) continue;
      const dir = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').find((v) => v.startsWith('WORKSPACE_DIR='))?.slice('WORKSPACE_DIR='.length);
      if (dir && path.dirname(dir) === workspacesDir) found.push({ pid: Number(entry), name: path.basename(dir) });
    } catch {
      // gone meanwhile, or another user's
    }
  }
  return found;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
