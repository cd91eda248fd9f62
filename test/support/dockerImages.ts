/**
 * The real Docker engine for tests, with nothing pulled from a registry: a base image made from this machine's own
 * Node (the binary and the libraries it links, npm, a shell and the few tools the Dockerfiles run, and the machine's
 * CA bundle so npm reaches its registry as the host does) by `docker import`, then the repository's Dockerfiles built
 * on it (`BASE_IMAGE`); and, the same way, Redis and PostgreSQL images from this machine's servers, for
 * docker-compose.yml (REDIS_IMAGE, POSTGRES_IMAGE). Without an engine, dockerUnavailable() says why, and
 * skipWithoutDocker skips a suite with one line saying it.
 */
import { execFile } from 'node:child_process';
import { chmod, chown, cp, mkdir, mkdtemp, readdir, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { binDir } from './passwordCluster.ts';

const run = promisify(execFile);
export const NODE_BASE_IMAGE = 'clawdbot/node-base:local';
export const REDIS_IMAGE = 'clawdbot/redis:local';
export const POSTGRES_IMAGE = 'clawdbot/postgres:local';
const TOOLS = ['sh', 'mkdir', 'chown', 'env', 'cat', 'rm', 'ls', 'cp'];
const CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

export async function docker(args: string[], options: { timeoutMs?: number } = {}): Promise<string> {
  const { stdout } = await run('docker', args, { timeout: options.timeoutMs ?? 300_000, maxBuffer: 64 * 1024 * 1024 });
  return stdout.trim();
}

/** Why no Docker engine answers here, or undefined when one does. */
export async function dockerUnavailable(): Promise<string | undefined> {
  try {
    await docker(['info', '--format', '{{.ServerVersion}}'], { timeoutMs: 10_000 });
    return undefined;
  } catch (err) {
    return `no Docker engine answers (${(err as Error).message.split('\n')[0]})`;
  }
}

/** For a suite's before(): skips it, with one line saying why, where no Docker engine answers. */
/**
 * The Docker host's address on its default bridge (docker0), which a container's host-gateway names: where a service
 * customers' containers must reach listens. Asked of ip, since an interface with no container on it yet is down and
 * left out of Node's list.
 */
export async function bridgeGateway(): Promise<string> {
  const gateway = /inet (\d+\.\d+\.\d+\.\d+)/.exec((await run('ip', ['-4', '-o', 'addr', 'show', 'docker0'])).stdout)?.[1];
  if (!gateway) throw new Error('the Docker engine has no docker0 bridge: the host gateway is unknown');
  return gateway;
}

export async function skipWithoutDocker(this: Mocha.Context): Promise<void> {
  const why = await dockerUnavailable();
  if (why) {
    console.log(`      skipped: ${why}`);
    this.skip();
  }
}

/** Copies every library `ldd` lists for a program or a shared object into the root filesystem, at the same paths. */
async function copyLibraries(root: string, file: string): Promise<void> {
  const { stdout } = await run('ldd', [file]).catch(() => ({ stdout: '' }));
  for (const library of stdout.match(/\/lib[^\s]*/g) ?? []) {
    await mkdir(path.join(root, path.dirname(library)), { recursive: true });
    await cp(await realpath(library), path.join(root, library));
  }
}

/** Copies a binary and the libraries it links into the root filesystem. */
async function copyBinary(root: string, from: string, to: string): Promise<void> {
  const source = await realpath(from);
  await mkdir(path.join(root, path.dirname(to)), { recursive: true });
  await cp(source, path.join(root, to));
  await copyLibraries(root, source);
}

/** Copies programs from this machine's PATH into the root's /bin. */
async function copyTools(root: string, tools: string[]): Promise<void> {
  for (const tool of tools) await copyBinary(root, (await run('sh', ['-c', `command -v ${tool}`])).stdout.trim(), `/bin/${tool}`);
}

/** /etc/passwd and /etc/group of root and the image's one user, whose home is made and given to it. */
async function writeAccounts(root: string, user: string, uid: number, home: string): Promise<void> {
  await mkdir(path.join(root, 'etc'), { recursive: true });
  await writeFile(path.join(root, 'etc/passwd'), `root:x:0:0::/root:/bin/sh\n${user}:x:${uid}:${uid}::${home}:/bin/sh\n`);
  await writeFile(path.join(root, 'etc/group'), `root:x:0:\n${user}:x:${uid}:\n`);
  await mkdir(path.join(root, home), { recursive: true });
  await chown(path.join(root, home), uid, uid);
  await mkdir(path.join(root, 'tmp'), { recursive: true });
  await chmod(path.join(root, 'tmp'), 0o1777);
}

/** Writes an executable script into the root filesystem. */
async function writeScript(root: string, to: string, text: string): Promise<void> {
  await mkdir(path.join(root, path.dirname(to)), { recursive: true });
  await writeFile(path.join(root, to), text, { mode: 0o755 });
}

/**
 * Makes `tag` once per engine (kept when it exists): `fill` writes a fresh root filesystem, which `docker import`
 * turns into the image with `changes`, the Dockerfile instructions it takes (ENV, USER, CMD, ENTRYPOINT, ...).
 */
async function importRoot(tag: string, changes: string[], fill: (root: string) => Promise<void>): Promise<string> {
  if (await docker(['images', '-q', tag])) return tag;
  const root = await mkdtemp(path.join(tmpdir(), 'image-root-'));
  try {
    await fill(root);
    const importArgs = [...changes.flatMap((change) => ['-c', change]), '-', tag];
    await run('sh', ['-c', 'root=$1; shift; tar -C "$root" -c . | docker import "$@"', 'sh', root, ...importArgs], { timeout: 120_000 });
    return tag;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** The base image from this machine's Node (made once per engine; seconds). */
export async function buildNodeBase(): Promise<string> {
  return importRoot(NODE_BASE_IMAGE, [`ENV PATH=/usr/local/bin:/usr/bin:/bin NODE_EXTRA_CA_CERTS=${CA_BUNDLE}`], async (root) => {
    await copyBinary(root, process.execPath, '/usr/local/bin/node');
    await copyTools(root, TOOLS);
    await mkdir(path.join(root, 'usr/bin'), { recursive: true });
    await symlink('/bin/env', path.join(root, 'usr/bin/env'));
    // npm, as the host has it (beside node), started by a small script.
    const npmCli = await realpath((await run('sh', ['-c', 'command -v npm'])).stdout.trim());
    const npmDir = path.resolve(path.dirname(npmCli), '..');
    await cp(npmDir, path.join(root, 'usr/local/lib/npm'), { recursive: true });
    await writeScript(root, '/usr/local/bin/npm', '#!/bin/sh\nexec /usr/local/bin/node /usr/local/lib/npm/bin/npm-cli.js "$@"\n');
    await mkdir(path.join(root, 'etc/ssl/certs'), { recursive: true });
    await cp(CA_BUNDLE, path.join(root, CA_BUNDLE));
    await writeAccounts(root, 'node', 1000, '/home/node');
    await mkdir(path.join(root, 'app'), { recursive: true });
  });
}

// Both images below keep the official images' contracts as far as docker-compose.yml uses them (commands, env, data
// directories, healthcheck programs on PATH) and run as the same non-root uid.
const SERVICE_UID = 999;

// Like the official image, Redis runs without protected mode, which would refuse every client but loopback ones: the
// clients come from outside the container (a published port), and the container's network is what guards it.
const REDIS_ENTRYPOINT = `#!/bin/sh
if [ "$1" = redis-server ]; then
  case " $* " in *" --protected-mode "*) ;; *) set -- "$@" --protected-mode no ;; esac
fi
exec "$@"
`;

/** Redis from this machine's redis-server and redis-cli, as user redis, in /data (made once per engine; a second). */
export async function buildRedisImage(): Promise<string> {
  const changes = ['ENV PATH=/usr/local/bin:/usr/bin:/bin', 'USER redis', 'WORKDIR /data', 'EXPOSE 6379', 'ENTRYPOINT ["docker-entrypoint.sh"]', 'CMD ["redis-server"]'];
  return importRoot(REDIS_IMAGE, changes, async (root) => {
    for (const program of ['redis-server', 'redis-cli']) await copyBinary(root, `/usr/bin/${program}`, `/usr/local/bin/${program}`);
    await copyTools(root, ['sh']);
    await writeScript(root, '/usr/local/bin/docker-entrypoint.sh', REDIS_ENTRYPOINT);
    await writeAccounts(root, 'redis', SERVICE_UID, '/data');
  });
}

// The first start initializes the cluster: superuser POSTGRES_USER with POSTGRES_PASSWORD (SCRAM), which every TCP
// connection must give (from anywhere: the clients come through a published port), the socket inside the container
// trusted (this script's own CREATE DATABASE, `docker exec ... psql`), and POSTGRES_DB made. Then postgres replaces
// the shell, so a stop signal reaches it.
const POSTGRES_ENTRYPOINT = `#!/bin/sh
set -eu
if [ "\${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "\${POSTGRES_PASSWORD:?must be set: the password of the superuser, POSTGRES_USER}"
  user="\${POSTGRES_USER:-postgres}"
  db="\${POSTGRES_DB:-$user}"
  printf '%s\\n' "$POSTGRES_PASSWORD" | initdb -D "$PGDATA" -U "$user" --pwfile=/dev/stdin -E UTF8 --locale=C \\
    --auth-local=trust --auth-host=scram-sha-256
  printf "listen_addresses = '*'\\n" >> "$PGDATA/postgresql.conf"
  printf 'host all all all scram-sha-256\\n' >> "$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start
    echo 'CREATE DATABASE :"db"' | psql -v ON_ERROR_STOP=1 -U "$user" -d postgres -v db="$db"
    pg_ctl -D "$PGDATA" -w -m fast stop
  fi
fi
exec "$@"
`;

/**
 * PostgreSQL from this machine's server programs (the newest installed version), at the paths they were built for:
 * the programs, the modules postgres loads (plpgsql, text search, encodings; not the JIT, which would bring LLVM and
 * is only used when it is there) and what initdb reads (share/, the time zones). As user postgres; made once per engine, in seconds.
 */
export async function buildPostgresImage(): Promise<string> {
  const bin = await binDir();
  const version = path.basename(path.dirname(bin));
  const data = '/var/lib/postgresql/data';
  const changes = [
    `ENV PATH=${bin}:/usr/local/bin:/usr/bin:/bin PGDATA=${data}`,
    'USER postgres', 'EXPOSE 5432', 'ENTRYPOINT ["docker-entrypoint.sh"]', 'CMD ["postgres"]',
  ];
  return importRoot(POSTGRES_IMAGE, changes, async (root) => {
    for (const program of ['postgres', 'initdb', 'pg_ctl', 'pg_isready', 'psql']) await copyBinary(root, path.join(bin, program), path.join(bin, program));
    const lib = path.join(path.dirname(bin), 'lib');
    for (const module of await readdir(lib)) {
      if (!module.endsWith('.so') || module.startsWith('llvmjit')) continue;
      await copyBinary(root, path.join(lib, module), path.join(lib, module));
    }
    for (const dir of [`/usr/share/postgresql/${version}`, '/usr/share/zoneinfo']) await cp(dir, path.join(root, dir), { recursive: true });
    await copyTools(root, ['sh']);
    await writeScript(root, '/usr/local/bin/docker-entrypoint.sh', POSTGRES_ENTRYPOINT);
    await writeAccounts(root, 'postgres', SERVICE_UID, '/var/lib/postgresql');
    // The data directory as initdb wants it (the user's alone); the sockets' directory that Debian's build uses.
    for (const [dir, mode] of [[data, 0o700], ['/var/run/postgresql', 0o755]] as const) {
      await mkdir(path.join(root, dir), { recursive: true });
      await chown(path.join(root, dir), SERVICE_UID, SERVICE_UID);
      await chmod(path.join(root, dir), mode);
    }
  });
}

/** Builds one of the repository's Dockerfiles on the local base image; answers the tag. */
export async function buildImage(dockerfile: string, tag: string): Promise<string> {
  const base = await buildNodeBase();
  await docker(['build', '-q', '--build-arg', `BASE_IMAGE=${base}`, '-f', dockerfile, '-t', tag, '.'], { timeoutMs: 600_000 });
  return tag;
}
