/**
 * Local compute provider: each service is a runtime process on this machine, on its own loopback port, restarted
 * if it dies. What should run is kept in Postgres (local_services, variables encrypted in secrets), so a restarted
 * control plane brings its customers' runtimes back.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import type { Db } from '../../db/pool.ts';
import type { SecretStore } from '../../secrets.ts';
import type { Plan } from '../../../core/plans.ts';
import type { ComputeProvider, DeploymentState, ListedService, ServiceSettings } from '../types.ts';
import { logger } from '../../../core/logger.ts';

export interface LocalComputeOptions {
  command: string;
  args: string[];
  logDir: string;
  /** Each runtime keeps its workspace files under <workspacesDir>/<service>, filled from its database at start. */
  workspacesDir: string;
  /** Restarts within a minute after which a service counts as crash-looping. */
  maxRestartsPerMinute?: number;
  /** First delay before restarting a runtime that exited; doubles up to 30 s. */
  restartBaseMs?: number;
}

interface ServiceRow {
  name: string;
  port: number;
  desired_state: 'running' | 'stopped';
  pid: number | null;
  deployment_id: string | null;
  limits: Partial<Pick<Plan, 'cpu' | 'memoryMb'>>;
}

interface Supervised {
  child: ChildProcess;
  startedAt: number;
  deploymentId: string;
  stopping: boolean;
  restarts: number[];
  crashLooping: boolean;
  spawnError?: string;
  restartTimer?: NodeJS.Timeout;
}

const log = logger('compute.local');
/** How long a new runtime must stay up before its deployment counts as a success. */
const STEADY_MS = 300;

export class LocalComputeProvider implements ComputeProvider {
  readonly kind = 'local';
  private readonly processes = new Map<string, Supervised>();

  constructor(
    private readonly db: Db,
    private readonly secrets: SecretStore,
    private readonly options: LocalComputeOptions,
  ) {
    mkdirSync(options.logDir, { recursive: true });
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

  async configure(serviceId: string, settings: { variables: Record<string, string>; limits: Pick<Plan, 'cpu' | 'memoryMb'> }): Promise<void> {
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
    await this.start(await this.requireRow(serviceId));
    return { deploymentId };
  }

  async deploymentState(serviceId: string, deploymentId: string): Promise<{ state: DeploymentState; detail?: string }> {
    const row = await this.requireRow(serviceId);
    if (row.deployment_id !== deploymentId) return { state: 'failed', detail: 'deployment was superseded or removed' };
    if (row.desired_state === 'stopped') return { state: 'failed', detail: 'the service was stopped' };
    const supervised = this.processes.get(serviceId);
    if (supervised) {
      // Supervised here: up for a moment is success; exiting and restarting is still in progress.
      if (supervised.spawnError) return { state: 'failed', detail: `the runtime command could not start: ${supervised.spawnError}` };
      if (supervised.crashLooping) return { state: 'failed', detail: 'the runtime keeps exiting (crash loop); see its log' };
      const up = supervised.child.exitCode === null && supervised.child.signalCode === null;
      return { state: up && Date.now() - supervised.startedAt >= STEADY_MS ? 'success' : 'in_progress' };
    }
    return { state: row.pid !== null && this.isOurRuntime(row.pid, row.port) ? 'success' : 'in_progress' };
  }

  async latestDeployment(serviceId: string): Promise<{ deploymentId: string; createdAt: Date } | null> {
    const { rows } = await this.db.query<{ deployment_id: string | null; deployed_at: Date | null }>(
      'SELECT deployment_id, deployed_at FROM local_services WHERE name = $1',
      [serviceId],
    );
    const row = rows[0];
    return row?.deployment_id && row.deployed_at ? { deploymentId: row.deployment_id, createdAt: row.deployed_at } : null;
  }

  async stop(serviceId: string): Promise<void> {
    const row = await this.row(serviceId);
    await this.db.query(`UPDATE local_services SET desired_state = 'stopped', pid = NULL WHERE name = $1`, [serviceId]);
    await this.kill(serviceId);
    // A runtime supervised by another worker process on this machine: its supervisor sees the stopped state and
    // does not restart it.
    if (row?.pid && this.isOurRuntime(row.pid, row.port)) process.kill(row.pid, 'SIGTERM');
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
    return runtimeProcesses(this.options.args.join('\0'), this.options.workspacesDir);
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
   * Starts every service that should be running and is not (after a restart of the control plane). A runtime that
   * is still alive, supervised by another worker process on this machine, is left to it.
   */
  async restore(): Promise<number> {
    const { rows } = await this.db.query<ServiceRow>(`SELECT * FROM local_services WHERE desired_state = 'running'`);
    const stopped = rows.filter((row) => row.pid === null || !this.isOurRuntime(row.pid, row.port));
    for (const row of stopped) await this.start(row);
    return stopped.length;
  }

  /** Stops the processes this control plane started, leaving their desired state for restore(). */
  async close(): Promise<void> {
    await Promise.all([...this.processes.keys()].map((name) => this.kill(name)));
  }

  private isOurRuntime(pid: number, port: number): boolean {
    return runsAs(pid, this.options.args.join('\0'), port);
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

  private async start(row: ServiceRow): Promise<void> {
    await this.kill(row.name);
    if (row.pid !== null && this.isOurRuntime(row.pid, row.port)) process.kill(row.pid, 'SIGTERM'); // a redeploy replaces it
    const variables = JSON.parse((await this.secrets.get(secretOwner(row.name), 'variables')) ?? '{}') as Record<string, string>;
    const supervised: Supervised = {
      child: undefined as unknown as ChildProcess,
      startedAt: Date.now(),
      deploymentId: row.deployment_id ?? '',
      stopping: false,
      restarts: [],
      crashLooping: false,
    };
    this.processes.set(row.name, supervised);
    await this.spawnInto(supervised, row, variables);
  }

  private async spawnInto(supervised: Supervised, row: ServiceRow, variables: Record<string, string>): Promise<void> {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      NODE_ENV: process.env.NODE_ENV ?? 'production',
      ...variables,
      WORKSPACE_DIR: this.workspaceDir(row.name),
      HOST: '127.0.0.1',
      PORT: String(row.port),
    };
    if (row.limits.memoryMb) env.NODE_OPTIONS = `--max-old-space-size=${Math.floor(row.limits.memoryMb * 0.75)}`;
    const out = createWriteStream(path.join(this.options.logDir, `${row.name}.log`), { flags: 'a' });
    // A log that cannot be written (disk full, directory gone) loses log lines, never the control plane.
    out.on('error', (err) => log.error('runtime log not writable', { service: row.name, error: err.message }));
    const child = spawn(this.options.command, this.options.args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    supervised.child = child;
    supervised.startedAt = Date.now();
    child.on('exit', (code, signal) => {
      out.end();
      if (supervised.stopping || this.processes.get(row.name) !== supervised) return;
      log.warn('runtime exited; restarting', { service: row.name, code, signal });
      this.scheduleRestart(supervised, row, variables);
    });
    child.on('error', (err) => {
      // The command itself could not run (ENOENT, EACCES): no exit event follows, and retrying will not help.
      supervised.spawnError = err.message;
      log.error('runtime failed to start', { service: row.name, error: err.message });
    });
    await this.db.query('UPDATE local_services SET pid = $2 WHERE name = $1', [row.name, child.pid ?? null]);
  }

  private scheduleRestart(supervised: Supervised, row: ServiceRow, variables: Record<string, string>): void {
    const now = Date.now();
    supervised.restarts = supervised.restarts.filter((t) => now - t < 60_000).concat(now);
    supervised.crashLooping = supervised.restarts.length > (this.options.maxRestartsPerMinute ?? 5);
    const delay = Math.min((this.options.restartBaseMs ?? 250) * 2 ** (supervised.restarts.length - 1), 30_000);
    supervised.restartTimer = setTimeout(() => {
      if (supervised.stopping) return;
      this.restart(supervised, row, variables).catch((err: Error) =>
        log.error('runtime restart failed', { service: row.name, error: err.message }),
      );
    }, delay);
  }

  /** Restarts a runtime only while it is still meant to run this deployment (another process may have moved on). */
  private async restart(supervised: Supervised, row: ServiceRow, variables: Record<string, string>): Promise<void> {
    const current = await this.row(row.name);
    if (!current || current.desired_state !== 'running' || current.deployment_id !== supervised.deploymentId) {
      if (this.processes.get(row.name) === supervised) this.processes.delete(row.name);
      supervised.stopping = true;
      return;
    }
    await this.spawnInto(supervised, row, variables);
  }

  private async kill(name: string): Promise<void> {
    const supervised = this.processes.get(name);
    if (!supervised) return;
    this.processes.delete(name);
    supervised.stopping = true;
    clearTimeout(supervised.restartTimer);
    const { child } = supervised;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => child.kill('SIGKILL'), 5_000);
      child.once('exit', () => {
        clearTimeout(force);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}

function secretOwner(serviceName: string): string {
  return `local-service/${serviceName}`;
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
