/**
 * The customer's workspace (AGENTS.md, SOUL.md, skills, ...) as a map of '/'-separated relative path to content.
 * Files on disk win when WORKSPACE_DIR has any; otherwise the copy the control plane seeded into workspace_files
 * is used, and written to WORKSPACE_DIR when there is one, so a remote runtime boots from its database alone.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { writeWorkspaceToDisk } from '../../src/workspace/render.ts';

export type WorkspaceFiles = ReadonlyMap<string, string>;

export async function loadWorkspace(db: pg.Pool, dir: string | undefined): Promise<WorkspaceFiles> {
  if (dir !== undefined) {
    const onDisk = await readWorkspaceDir(dir);
    if (onDisk.size > 0) return onDisk;
  }
  const { rows } = await db.query<{ path: string; content: string }>(
    'SELECT path, content FROM workspace_files ORDER BY path COLLATE "C"',
  );
  if (dir !== undefined) await writeWorkspaceToDisk(dir, rows);
  return new Map(rows.map((row) => [row.path, row.content]));
}

async function readWorkspaceDir(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  async function walk(relative: string): Promise<void> {
    let entries;
    try {
      entries = await readdir(path.join(dir, relative), { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const entry of entries) {
      const child = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(child);
      else if (entry.isFile()) files.set(child, await readFile(path.join(dir, child), 'utf8'));
    }
  }
  await walk('');
  // Code-point order, as the query's COLLATE "C": a workspace lists the same from either source.
  return new Map([...files].sort(([a], [b]) => (a < b ? -1 : 1)));
}
