/**
 * The archive of a cancelled customer: their database's runtime tables (the workspace lives in workspace_files) as
 * gzip-compressed JSON lines. A header line, one line per row (`{ table, row }`), an end line with the row counts.
 * Secrets are not archived: API-key hashes and webhook sources are left out (a restored customer gets new ones).
 */
import { Readable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import { createInterface } from 'node:readline';
import type pg from 'pg';

/** Tables exported, in an order that restores without breaking references. */
export const ARCHIVED_TABLES = [
  'workspace_files',
  'memories',
  'conversations',
  'conversation_messages',
  'usage_tracking',
  'usage_notices',
  'skills',
  'webhook_deliveries',
] as const;

/** Columns computed by the database, not archived. */
const GENERATED: Record<string, string[]> = { memories: ['search'] };
const BATCH = 500;

export const ARCHIVE_FORMAT = 'clawdbot-archive';

export function exportStream(client: pg.ClientBase, meta: { workspaceId: string }): { stream: Readable; counts: Promise<Record<string, number>> } {
  let resolveCounts!: (counts: Record<string, number>) => void;
  const counts = new Promise<Record<string, number>>((resolve) => (resolveCounts = resolve));
  async function* lines(): AsyncGenerator<string> {
    yield JSON.stringify({ format: ARCHIVE_FORMAT, version: 1, workspaceId: meta.workspaceId, exportedAt: new Date().toISOString() }) + '\n';
    const rowCounts: Record<string, number> = {};
    for (const table of ARCHIVED_TABLES) {
      rowCounts[table] = 0;
      for (let offset = 0; ; offset += BATCH) {
        const { rows } = await client.query(`SELECT * FROM ${table} ORDER BY 1 LIMIT ${BATCH} OFFSET ${offset}`);
        for (const row of rows as Record<string, unknown>[]) {
          for (const column of GENERATED[table] ?? []) delete row[column];
          rowCounts[table]++;
          yield JSON.stringify({ table, row }) + '\n';
        }
        if (rows.length < BATCH) break;
      }
    }
    yield JSON.stringify({ end: true, rowCounts }) + '\n';
    resolveCounts(rowCounts);
  }
  return { stream: Readable.from(lines()).pipe(createGzip()), counts };
}

/** Reads an archive back whole and returns its row counts; throws if any line is missing or malformed. */
export async function readArchive(source: Readable, onRow?: (table: string, row: Record<string, unknown>) => Promise<void>): Promise<Record<string, number>> {
  const reader = createInterface({ input: source.pipe(createGunzip()), crlfDelay: Infinity });
  const counts: Record<string, number> = {};
  let header = false;
  let end: Record<string, number> | undefined;
  for await (const line of reader) {
    const entry = JSON.parse(line) as { format?: string; table?: string; row?: Record<string, unknown>; end?: boolean; rowCounts?: Record<string, number> };
    if (!header) {
      if (entry.format !== ARCHIVE_FORMAT) throw new Error('not a Clawdbot archive');
      header = true;
    } else if (entry.end) {
      end = entry.rowCounts;
    } else if (entry.table && entry.row) {
      counts[entry.table] = (counts[entry.table] ?? 0) + 1;
      await onRow?.(entry.table, entry.row);
    }
  }
  if (!end) throw new Error('the archive is truncated (no end line)');
  for (const table of ARCHIVED_TABLES) {
    if ((counts[table] ?? 0) !== (end[table] ?? 0)) throw new Error(`archive table ${table}: ${counts[table] ?? 0} rows read, ${end[table]} written`);
  }
  return end;
}
