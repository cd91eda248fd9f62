/**
 * A PostgreSQL cluster of its own that asks every login for its password (SCRAM), for tests that must see a password
 * refused: initdb in a temporary directory, on a free port of its own, run as the `postgres` OS user when the test
 * runs as root (PostgreSQL refuses root). stop() removes it all. Never touches the machine's shared cluster.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/providers/compute/local.ts';

const run = promisify(execFile);

export interface PasswordCluster {
  /** The superuser's URL (user postgres, with its password), database postgres. */
  adminUrl: string;
  port: number;
  stop(): Promise<void>;
}

/** The directory of the server's programs (initdb, pg_ctl): the newest installed version. */
export async function binDir(): Promise<string> {
  const versions = (await readdir('/usr/lib/postgresql')).sort((a, b) => Number(b) - Number(a));
  if (!versions[0]) throw new Error('no PostgreSQL server programs under /usr/lib/postgresql');
  return path.join('/usr/lib/postgresql', versions[0], 'bin');
}

/**
 * `listen`: addresses besides loopback to listen on (say, the Docker bridge's gateway, for customers' containers);
 * logins from anywhere are then let in by password (SCRAM) only.
 */
export async function startPasswordCluster(options: { listen?: string[] } = {}): Promise<PasswordCluster> {
  const bin = await binDir();
  const dir = await mkdtemp(path.join(tmpdir(), 'pg-password-'));
  const data = path.join(dir, 'data');
  const password = randomBytes(12).toString('hex');
  const port = await freePort();
  const asRoot = process.getuid?.() === 0;
  const as = (command: string, args: string[]) => (asRoot ? run('runuser', ['-u', 'postgres', '--', command, ...args]) : run(command, args));
  await writeFile(path.join(dir, 'pw'), password);
  if (asRoot) {
    await run('chown', ['-R', 'postgres', dir]);
    await chmod(dir, 0o700);
  }
  await as(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${path.join(dir, 'pw')}`, '-E', 'UTF8', '--no-sync']);
  const listen = ['127.0.0.1', ...(options.listen ?? [])];
  if (options.listen?.length) await as('sh', ['-c', `echo 'host all all 0.0.0.0/0 scram-sha-256' >> '${path.join(data, 'pg_hba.conf')}'`]);
  await as(path.join(bin, 'pg_ctl'), ['-D', data, '-w', '-l', path.join(dir, 'log'), '-o', `-p ${port} -k ${dir} -c listen_addresses=${listen.join(',')} -c fsync=off`, 'start']);
  return {
    adminUrl: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      await as(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', 'stop']).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
