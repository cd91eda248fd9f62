/**
 * Workspace files as both sides hold them: '/'-separated relative paths with their text, each file's SHA-256 (the
 * customer database stores it beside the content), a checksum of the whole set, and a safe, atomic write to disk.
 */
import { createHash, randomUUID } from 'node:crypto';
import { lstat, mkdir, open, realpath, rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { sha256Hex } from '../hash.ts';
import { ensurePrivateDir, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../privateFiles.ts';

/** A workspace file; `path` is relative and uses '/' separators. */
export interface WorkspaceFile {
  path: string;
  content: string;
}

export function fileSha256(content: string): string {
  return sha256Hex(content);
}

/** SHA-256 over every file's path and content, in order; each part is length-prefixed so it is unambiguous. */
export function workspaceChecksum(files: WorkspaceFile[]): string {
  const hash = createHash('sha256');
  for (const { path, content } of files) {
    for (const part of [path, content]) hash.update(`${Buffer.byteLength(part, 'utf8')}:`).update(part, 'utf8');
  }
  return hash.digest('hex');
}

/**
 * Writes the files under `dir`, creating subdirectories. Paths are checked before anything is written: absolute
 * paths, backslashes, NUL and empty, '.' or '..' segments are refused. While writing, a subdirectory that already
 * exists as a symlink or a file is refused too, so nothing lands outside `dir`. Each file is written to a temporary
 * sibling, synced, then renamed over the target, so readers never see a partial file and re-running is idempotent.
 */
export async function writeWorkspaceToDisk(dir: string, files: WorkspaceFile[]): Promise<void> {
  for (const { path } of files) {
    const segments = path.split('/');
    // An empty segment also catches absolute paths ('/abs') and doubled or trailing slashes.
    const unsafe = /[\\\0]/.test(path) || segments.some((s) => s === '' || s === '.' || s === '..');
    if (unsafe) throw new Error(`refusing unsafe workspace path: ${JSON.stringify(path)}`);
  }
  await ensurePrivateDir(dir);
  const root = await realpath(dir);
  for (const { path, content } of files) {
    const parent = await plainDirectory(root, path.split('/').slice(0, -1));
    const tmp = join(parent, `.${randomUUID()}.tmp`);
    try {
      const handle = await open(tmp, 'wx', PRIVATE_FILE_MODE);
      try {
        await handle.writeFile(content, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, join(parent, basename(path)));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
}

/** Creates root/segments… one level at a time, refusing any level that is a symlink or not a directory. */
async function plainDirectory(root: string, segments: string[]): Promise<string> {
  let current = root;
  for (const segment of segments) {
    current = join(current, segment);
    await mkdir(current, PRIVATE_DIR_MODE).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    if (!(await lstat(current)).isDirectory()) throw new Error(`refusing to write through ${current}: not a directory`);
  }
  return current;
}
