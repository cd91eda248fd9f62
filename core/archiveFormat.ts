/**
 * The archive of a cancelled customer: their database's runtime tables (the workspace lives in workspace_files) as
 * gzip-compressed JSON lines. A header line, one line per row (`{ table, row }`), an end line with the row counts.
 * Secrets are not archived: API-key hashes and webhook sources are left out (a restored customer gets new ones).
 */
import { pipeline, Readable } from 'node:stream';
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

const BATCH = 500;
/** Tables whose bigserial id a restore carries over. */
const SERIAL_TABLES = ['memories', 'conversation_messages', 'webhook_deliveries'] as const;

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
        // Postgres's own JSON of each row (dates stay dates, whatever the client's time zone), less what the
        // database computes itself (the full-text search column).
        const { rows } = await client.query<{ row: Record<string, unknown> }>(
          `SELECT to_jsonb(t) - 'search' AS row FROM ${table} t ORDER BY 1 LIMIT ${BATCH} OFFSET ${offset}`,
        );
        for (const { row } of rows) {
          rowCounts[table]++;
          yield JSON.stringify({ table, row }) + '\n';
        }
        if (rows.length < BATCH) break;
      }
    }
    yield JSON.stringify({ end: true, rowCounts }) + '\n';
    resolveCounts(rowCounts);
  }
  // pipeline, not pipe: an export that fails (its connection closed under it) fails the gzip stream the store
  // reads, instead of being an error nobody listens to.
  return { stream: pipeline(Readable.from(lines()), createGzip(), () => undefined), counts };
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

/**
 * Loads an archive into a fresh customer database (schema applied, no rows yet), in one transaction: each row
 * through jsonb_populate_record, so every value comes back as the type it was; sequences move past restored ids.
 */
export async function restoreArchive(source: Readable, client: pg.ClientBase): Promise<Record<string, number>> {
  await client.query('BEGIN');
  try {
    const columns = new Map<string, string>();
    for (const table of ARCHIVED_TABLES) {
      const { rows } = await client.query<{ column_name: string }>(
        `SELECT column_name FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'NEVER' ORDER BY ordinal_position`,
        [table],
      );
      columns.set(table, rows.map((r) => `"${r.column_name}"`).join(', '));
    }
    const counts = await readArchive(source, async (table, row) => {
      const list = columns.get(table);
      if (!list) throw new Error(`the archive holds an unknown table ${table}`);
      await client.query(`INSERT INTO ${table} (${list}) SELECT ${list} FROM jsonb_populate_record(NULL::${table}, $1::jsonb)`, [
        JSON.stringify(row),
      ]);
    });
    for (const table of SERIAL_TABLES) {
      await client.query(`SELECT setval(pg_get_serial_sequence($1, 'id'), (SELECT coalesce(max(id), 0) + 1 FROM ${table}), false)`, [table]);
    }
    await client.query('COMMIT');
    return counts;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
