/**
 * The customer-database gateway: everything the control plane does inside a customer's own database, through one
 * short connection made with that customer's credentials (their connection URL is kept sealed in the secret store).
 */
import type { Readable } from 'node:stream';
import pg from 'pg';
import { applyRuntimeSchema } from '../../core/runtimeSchema.ts';
import { PermanentError } from '../errors.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../instances/secrets.ts';
import type { StoredArchive } from '../providers/archiveStore.ts';
import type { SecretStore } from '../secrets.ts';
import { fileSha256, type WorkspaceFile } from '../../core/workspace/files.ts';
import { exportStream, restoreArchive } from '../../core/archiveFormat.ts';

export interface CustomerDatabases {
  /** Keeps the connection URL of the instance's new database (sealed). */
  register(instanceId: string, connectionUrl: string): Promise<void>;
  /** Whether the instance has a database (create-branch completed and it was not deleted since). */
  exists(instanceId: string): Promise<boolean>;
  /** The connection URL, for the runtime's configuration. */
  connectionUrl(instanceId: string): Promise<string>;
  /**
   * Applies the runtime's schema (idempotent), then adds the workspace files that are missing (never overwriting the
   * customer's) and the API key's hash, together: one connection, the only one a provision opens.
   */
  seedWorkspace(instanceId: string, files: WorkspaceFile[], key: { hash: string; label: string | null }): Promise<void>;
  /** Adds the files of `add` that are missing, and writes those of `replace` whatever is there. */
  updateWorkspace(instanceId: string, files: { add: WorkspaceFile[]; replace: WorkspaceFile[] }): Promise<void>;
  /** This key is the customer's only live one: added if missing, every other revoked, together (a repeat changes nothing). */
  replaceKeys(instanceId: string, key: { hash: string; label: string }): Promise<void>;
  /** Messages counted this calendar month (UTC), as the runtime counts them against the plan's limit. */
  monthMessages(instanceId: string, now: Date): Promise<number>;
  /** Every API key of the customer is refused from now on (nothing to do without a database). */
  revokeKeys(instanceId: string): Promise<void>;
  /** Suspends the account with a reason its runtime shows (402), or lifts the suspension (null). */
  setSuspension(instanceId: string, reason: string | null): Promise<void>;
  /** Exports the runtime's tables through `write` (the archive store); returns what was stored and the rows by table. */
  exportArchive(
    instanceId: string,
    workspaceId: string,
    write: (stream: Readable) => Promise<StoredArchive>,
  ): Promise<StoredArchive & { rowCounts: Record<string, number> }>;
  /**
   * Applies the runtime's schema, then loads an archive into the fresh database in one transaction; undefined when it
   * already holds a workspace.
   */
  restoreArchive(instanceId: string, source: () => Readable): Promise<Record<string, number> | undefined>;
  /**
   * A restore's fresh database (at `targetUrl`, not the instance's yet): the runtime's schema, the archive loaded in
   * one transaction (unless an earlier attempt did), then what the archive leaves out copied from the instance's
   * live database as it is now: its API keys, webhook sources, connections and suspension (RESTORE_KEPT_TABLES).
   */
  loadRestore(instanceId: string, targetUrl: string, source: () => Readable): Promise<Record<string, number> | undefined>;
}

/** What a restore keeps of the live database rather than the backup: the customer's keys and settings as they are now. */
export const RESTORE_KEPT_TABLES = ['api_keys', 'webhook_sources', 'connections', 'account_status'] as const;

export class PgCustomerDatabases implements CustomerDatabases {
  constructor(private readonly secrets: Pick<SecretStore, 'get' | 'put'>) {}

  async register(instanceId: string, connectionUrl: string): Promise<void> {
    await this.secrets.put(instanceOwner(instanceId), INSTANCE_SECRETS.databaseUrl, connectionUrl);
  }

  async exists(instanceId: string): Promise<boolean> {
    return (await this.storedUrl(instanceId)) !== null;
  }

  async connectionUrl(instanceId: string): Promise<string> {
    const url = await this.storedUrl(instanceId);
    if (!url) throw new PermanentError('no database connection for this instance: create-branch has not completed');
    return url;
  }

  async seedWorkspace(instanceId: string, files: WorkspaceFile[], key: { hash: string; label: string | null }): Promise<void> {
    // A new connection costs the database server far more than a statement (about 16 ms of CPU against 0.1 ms,
    // measured on the development machine): the schema and the seed share one.
    await this.with(instanceId, async (client) => {
      await applyRuntimeSchema(client);
      // One statement (so one round trip, and all or nothing): the missing files, then the key's hash.
      await client.query(
        `WITH files AS (
           INSERT INTO workspace_files (path, content, sha256)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT (path) DO NOTHING
         )
         INSERT INTO api_keys (key_hash, label) VALUES ($4, $5) ON CONFLICT (key_hash) DO NOTHING`,
        [files.map((f) => f.path), files.map((f) => f.content), files.map((f) => fileSha256(f.content)), key.hash, key.label],
      );
    });
  }

  async updateWorkspace(instanceId: string, files: { add: WorkspaceFile[]; replace: WorkspaceFile[] }): Promise<void> {
    await this.with(instanceId, async (client) => {
      for (const file of files.add) await addFile(client, file);
      for (const file of files.replace) {
        await client.query(
          `INSERT INTO workspace_files (path, content, sha256) VALUES ($1, $2, $3)
           ON CONFLICT (path) DO UPDATE SET content = EXCLUDED.content, sha256 = EXCLUDED.sha256, updated_at = now()`,
          [file.path, file.content, fileSha256(file.content)],
        );
      }
    });
  }

  async replaceKeys(instanceId: string, key: { hash: string; label: string }): Promise<void> {
    await this.with(instanceId, (client) =>
      client.query(
        // The key made live even when a retry finds it revoked since (by a rotation in between): the key being handed
        // to the customer must be the one that works.
        `WITH added AS (INSERT INTO api_keys (key_hash, label) VALUES ($1, $2) ON CONFLICT (key_hash) DO UPDATE SET revoked_at = NULL)
         UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL AND key_hash <> $1`,
        [key.hash, key.label],
      ),
    );
  }

  async revokeKeys(instanceId: string): Promise<void> {
    const url = await this.storedUrl(instanceId);
    if (url) await withClient(url, (client) => client.query('UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL'));
  }

  async setSuspension(instanceId: string, reason: string | null): Promise<void> {
    await this.with(instanceId, (client) =>
      client.query(
        `INSERT INTO account_status (id, suspended_reason) VALUES (true, $1)
         ON CONFLICT (id) DO UPDATE SET suspended_reason = $1, updated_at = now()`,
        [reason],
      ),
    );
  }

  async exportArchive(
    instanceId: string,
    workspaceId: string,
    write: (stream: Readable) => Promise<StoredArchive>,
  ): Promise<StoredArchive & { rowCounts: Record<string, number> }> {
    return this.with(instanceId, async (client) => {
      const { stream, counts } = exportStream(client, { workspaceId });
      const stored = await write(stream);
      return { ...stored, rowCounts: await counts };
    });
  }

  async restoreArchive(instanceId: string, source: () => Readable): Promise<Record<string, number> | undefined> {
    return this.with(instanceId, async (client) => {
      await applyRuntimeSchema(client);
      const { rowCount } = await client.query('SELECT 1 FROM workspace_files LIMIT 1');
      // A database that already has files was restored by an earlier attempt (the restore is one transaction).
      return rowCount ? undefined : restoreArchive(source(), client);
    });
  }

  async loadRestore(instanceId: string, targetUrl: string, source: () => Readable): Promise<Record<string, number> | undefined> {
    const live = await this.with(instanceId, async (client) => {
      const rows: Record<string, unknown[]> = {};
      for (const table of RESTORE_KEPT_TABLES) rows[table] = (await client.query<{ row: unknown }>(`SELECT to_jsonb(t) AS row FROM ${table} t`)).rows.map((r) => r.row);
      return rows;
    });
    return withClient(targetUrl, async (client) => {
      await applyRuntimeSchema(client);
      const { rowCount } = await client.query('SELECT 1 FROM workspace_files LIMIT 1');
      const counts = rowCount ? undefined : await restoreArchive(source(), client);
      await client.query('BEGIN');
      try {
        for (const table of RESTORE_KEPT_TABLES) {
          await client.query(`DELETE FROM ${table}`);
          await client.query(`INSERT INTO ${table} SELECT * FROM jsonb_populate_recordset(NULL::${table}, $1::jsonb)`, [JSON.stringify(live[table])]);
        }
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
      return counts;
    });
  }

  private storedUrl(instanceId: string): Promise<string | null> {
    return this.secrets.get(instanceOwner(instanceId), INSTANCE_SECRETS.databaseUrl);
  }

  async monthMessages(instanceId: string, now: Date): Promise<number> {
    const { rows } = await this.with(instanceId, (client) =>
      client.query<{ n: string }>(
        `SELECT coalesce(sum(messages), 0) AS n FROM usage_tracking
         WHERE day >= date_trunc('month', $1::timestamptz AT TIME ZONE 'UTC')::date
           AND day < (date_trunc('month', $1::timestamptz AT TIME ZONE 'UTC') + interval '1 month')::date`,
        [now.toISOString()],
      ),
    );
    return Number(rows[0]!.n);
  }

  private async with<T>(instanceId: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
    return withClient(await this.connectionUrl(instanceId), fn);
  }
}

function addFile(client: pg.ClientBase, file: WorkspaceFile): Promise<unknown> {
  return client.query('INSERT INTO workspace_files (path, content, sha256) VALUES ($1, $2, $3) ON CONFLICT (path) DO NOTHING', [
    file.path,
    file.content,
    fileSha256(file.content),
  ]);
}

/** One short connection to a customer's own database. */
async function withClient<T>(connectionUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: connectionUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined); // a dropped connection surfaces through the pending query instead
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
