/**
 * The real Docker engine for tests, with nothing pulled from a registry: a base image made from this machine's own
 * Node (the binary and the libraries it links, npm, a shell and the few tools the Dockerfiles run, and the machine's
 * CA bundle so npm reaches its registry as the host does) by `docker import`, then the repository's Dockerfiles built
 * on it (`BASE_IMAGE`). Without an engine, dockerUnavailable() says why, for a test to skip with one line.
 */
import { execFile } from 'node:child_process';
import { chmod, chown, cp, mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const NODE_BASE_IMAGE = 'clawdbot/node-base:local';
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

/** Copies a binary and every library `ldd` lists for it into the root filesystem. */
async function copyBinary(root: string, from: string, to: string): Promise<void> {
  const source = await realpath(from);
  await mkdir(path.join(root, path.dirname(to)), { recursive: true });
  await cp(source, path.join(root, to));
  const { stdout } = await run('ldd', [source]).catch(() => ({ stdout: '' }));
  for (const library of stdout.match(/\/lib[^\s]*/g) ?? []) {
    await mkdir(path.join(root, path.dirname(library)), { recursive: true });
    await cp(await realpath(library), path.join(root, library));
  }
}

/** The base image from this machine's Node (made once per engine; seconds). */
export async function buildNodeBase(): Promise<string> {
  if (await docker(['images', '-q', NODE_BASE_IMAGE])) return NODE_BASE_IMAGE;
  const root = await mkdtemp(path.join(tmpdir(), 'node-base-'));
  try {
    const node = await realpath(process.execPath);
    await copyBinary(root, node, '/usr/local/bin/node');
    for (const tool of TOOLS) await copyBinary(root, (await run('sh', ['-c', `command -v ${tool}`])).stdout.trim(), `/bin/${tool}`);
    await mkdir(path.join(root, 'usr/bin'), { recursive: true });
    await symlink('/bin/env', path.join(root, 'usr/bin/env'));
    // npm, as the host has it (beside node), started by a small script.
    const npmCli = await realpath((await run('sh', ['-c', 'command -v npm'])).stdout.trim());
    const npmDir = path.resolve(path.dirname(npmCli), '..');
    await cp(npmDir, path.join(root, 'usr/local/lib/npm'), { recursive: true });
    await writeFile(path.join(root, 'usr/local/bin/npm'), '#!/bin/sh\nexec /usr/local/bin/node /usr/local/lib/npm/bin/npm-cli.js "$@"\n', { mode: 0o755 });
    await mkdir(path.join(root, 'etc/ssl/certs'), { recursive: true });
    await cp(CA_BUNDLE, path.join(root, CA_BUNDLE));
    await writeFile(path.join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n');
    await writeFile(path.join(root, 'etc/group'), 'root:x:0:\nnode:x:1000:\n');
    for (const dir of ['tmp', 'home/node', 'app']) await mkdir(path.join(root, dir), { recursive: true });
    await chmod(path.join(root, 'tmp'), 0o1777);
    await chown(path.join(root, 'home/node'), 1000, 1000);
    await run('sh', ['-c', `tar -C '${root}' -c . | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin NODE_EXTRA_CA_CERTS=${CA_BUNDLE}' - ${NODE_BASE_IMAGE}`], {
      timeout: 120_000,
    });
    return NODE_BASE_IMAGE;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** Builds one of the repository's Dockerfiles on the local base image; answers the tag. */
export async function buildImage(dockerfile: string, tag: string): Promise<string> {
  const base = await buildNodeBase();
  await docker(['build', '-q', '--build-arg', `BASE_IMAGE=${base}`, '-f', dockerfile, '-t', tag, '.'], { timeoutMs: 600_000 });
  return tag;
}
