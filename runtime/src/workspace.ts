/**
 * The customer's workspace (AGENTS.md, SOUL.md, skills, daily logs, ...) as '/'-separated relative paths. At start,
 * files on disk win when WORKSPACE_DIR has any; otherwise the copy the control plane seeded into workspace_files is
 * used, and written to WORKSPACE_DIR when there is one, so a remote runtime boots from its database alone.
 * Writes go to both copies, so the database stays the one a new container starts from.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { fileSha256, writeWorkspaceToDisk } from '../../core/workspace/files.ts';

export class WorkspaceStore {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly db: pg.Pool,
    private readonly dir: string | undefined,
    private readonly files: Map<string, string>,
  ) {}

  static async load(db: pg.Pool, dir: string | undefined): Promise<WorkspaceStore> {
    if (dir !== undefined) {
      const onDisk = await readWorkspaceDir(dir);
      if (onDisk.size > 0) return new WorkspaceStore(db, dir, onDisk);
    }
    const { rows } = await db.query<{ path: string; content: string }>(
      'SELECT path, content FROM workspace_files ORDER BY path COLLATE "C"',
    );
    if (dir !== undefined) await writeWorkspaceToDisk(dir, rows);
    return new WorkspaceStore(db, dir, new Map(rows.map((row) => [row.path, row.content])));
  }

  get(file: string): string | undefined {
    return this.files.get(file);
  }

  paths(): string[] {
    return [...this.files.keys()];
  }

  /** Replaces a file in both copies. */
  write(file: string, content: string): Promise<void> {
    return this.serialized(async () => {
      await this.db.query(
        `INSERT INTO workspace_files (path, content, sha256) VALUES ($1, $2, $3)
         ON CONFLICT (path) DO UPDATE SET content = EXCLUDED.content, sha256 = EXCLUDED.sha256, updated_at = now()`,
        [file, content, fileSha256(content)],
      );
      await this.store(file, content);
    });
  }

  /** Removes a file from both copies (no error if it is not there). */
  remove(file: string): Promise<void> {
    return this.serialized(async () => {
      await this.db.query('DELETE FROM workspace_files WHERE path = $1', [file]);
      this.files.delete(file);
      if (this.dir !== undefined) await rm(path.join(this.dir, ...file.split('/')), { force: true });
    });
  }

  /** Appends to a file (creating it with `header` first), atomically in the database. */
  append(file: string, text: string, header = ''): Promise<void> {
    return this.serialized(async () => {
      const { rows } = await this.db.query<{ content: string }>(
        `INSERT INTO workspace_files (path, content, sha256) VALUES ($1, $2 || $3, '')
         ON CONFLICT (path) DO UPDATE SET content = workspace_files.content || $3, updated_at = now()
         RETURNING content`,
        [file, header, text],
      );
      const content = rows[0]!.content;
      await this.db.query('UPDATE workspace_files SET sha256 = $2 WHERE path = $1', [file, fileSha256(content)]);
      await this.store(file, content);
    });
  }

  private async store(file: string, content: string): Promise<void> {
    this.files.set(file, content);
    if (this.dir !== undefined) await writeWorkspaceToDisk(this.dir, [{ path: file, content }]);
  }

  /** One write at a time, so the copy in memory and on disk ends as the database has it. */
  private serialized(work: () => Promise<void>): Promise<void> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

/** The daily log of a UTC day: memory/YYYY-MM-DD.md. */
export function dailyLogPath(at: Date): string {
  return `memory/${at.toISOString().slice(0, 10)}.md`;
}

/** Adds a line to today's daily log, `- HH:MM UTC — text`, as AGENTS.md describes. */
export function appendToDailyLog(workspace: WorkspaceStore, text: string, at = new Date()): Promise<void> {
  const day = at.toISOString().slice(0, 10);
  const line = `- ${at.toISOString().slice(11, 16)} UTC — ${text.replace(/\s+/g, ' ').trim()}\n`;
  return workspace.append(dailyLogPath(at), line, `# ${day}\n\n`);
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
