/**
 * Local database provider: one database and one login role per customer on the control plane's Postgres server.
 * CONNECT is revoked from PUBLIC, so a customer's role can open its own database and no other.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Db } from '../../db/pool.ts';
import { inTransaction, quoteIdent } from '../../../core/postgres.ts';
import type { SecretStore } from '../../secrets.ts';
import { toBase62 } from '../../../core/apiKey.ts';
import { scramSha256Verifier } from './scram.ts';
import type { DatabaseProvider, DatabaseRef, EnsureDatabaseResult, ListedDatabase } from '../types.ts';
import { logger } from '../../../core/logger.ts';

const log = logger('database.local');

const NAME_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;
/** Each role's password is kept under local-database/<name>. */
const SECRET_PREFIX = 'local-database/';

export class LocalDatabaseProvider implements DatabaseProvider {
  readonly kind = 'local';

  constructor(
    private readonly admin: Db,
    private readonly adminUrl: string,
    private readonly secrets: SecretStore,
  ) {}

  /**
   * Customers' roles must not open the control-plane database either. In production the server must also ask them
   * for their password: a probe role (with a password, and nothing to open) tries to log in without one, and the
   * start is refused if it gets in (say, `trust` in pg_hba.conf), since then any customer's role could open any
   * customer's database. Elsewhere that is only warned about.
   */
  async init(options: { production: boolean } = { production: false }): Promise<void> {
    await inTransaction(this.admin, async (client) => {
      // Several processes may start at once; concurrent changes to one database's ACL fail in the catalog.
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('local-database/init'))`);
      const { rows } = await client.query<{ db: string }>('SELECT current_database() AS db');
      await client.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${quoteIdent(rows[0]!.db)} FROM PUBLIC`);
    });
    const problem = await this.passwordlessLogin();
    if (problem && options.production) throw new Error(`refusing to start: ${problem}`);
    if (problem) log.warn(`${problem}: any customer's role could open any customer's database (production refuses to start)`);
  }

  /** Local databases are ready at once. */
  async ensureDatabase(name: string): Promise<EnsureDatabaseResult> {
    return { ready: await this.findOrCreateDatabase(name) };
  }

  async findOrCreateDatabase(name: string): Promise<DatabaseRef & { connectionUrl: string }> {
    checkName(name);
    const password = await this.password(name);
    const role = quoteIdent(name);
    const literal = `'${scramSha256Verifier(password)}'`; // base64 and '$:' only: nothing to escape
    // Catalog changes to one role and database race each other ("tuple concurrently updated"), so callers for the
    // same name take turns. A session lock, because CREATE DATABASE cannot run inside a transaction.
    const client = await this.admin.connect();
    try {
      await client.query('SELECT pg_advisory_lock(hashtext($1))', [`local-database/${name}`]);
      const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name]);
      if (exists.rowCount) {
        await client.query(`ALTER ROLE ${role} WITH LOGIN PASSWORD ${literal}`);
      } else {
        await client.query(`CREATE ROLE ${role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE CONNECTION LIMIT 20 PASSWORD ${literal}`);
      }
      const db = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      // From template0: a customer's role may hold a connection to template1, which would block copying it.
      if (!db.rowCount) await client.query(`CREATE DATABASE ${role} OWNER ${role} TEMPLATE template0`);
      await client.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${role} FROM PUBLIC`);
      await client.query(`GRANT CONNECT ON DATABASE ${role} TO ${role}`);
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [`local-database/${name}`]).catch(() => undefined);
      client.release();
    }

    const url = new URL(this.adminUrl);
    url.username = name;
    url.password = password;
    url.pathname = `/${name}`;
    return { branchId: name, databaseName: name, roleName: name, connectionUrl: url.toString() };
  }

  async deleteDatabase(ref: DatabaseRef): Promise<void> {
    checkName(ref.databaseName);
    checkName(ref.roleName);
    const db = quoteIdent(ref.databaseName);
    await this.admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await this.admin.query(`DROP ROLE IF EXISTS ${quoteIdent(ref.roleName)}`);
    await this.secrets.delete(`${SECRET_PREFIX}${ref.databaseName}`, 'password');
  }

  /**
   * The databases and roles this control plane made: those whose password it keeps (made before the role). Others
   * on the same server (another control plane's) are not listed, whatever their name.
   */
  async listDatabases(): Promise<ListedDatabase[]> {
    const names = (await this.secrets.owners(SECRET_PREFIX, 'password')).map((owner) => owner.slice(SECRET_PREFIX.length));
    const { rows } = await this.admin.query<{ name: string; has_database: boolean; has_role: boolean }>(
      `SELECT n AS name, EXISTS (SELECT 1 FROM pg_database WHERE datname = n) AS has_database,
              EXISTS (SELECT 1 FROM pg_roles WHERE rolname = n) AS has_role
       FROM unnest($1::text[]) AS n`,
      [names],
    );
    return rows.map((row) => ({
      branchId: row.name,
      databaseName: row.name,
      roleName: row.name,
      name: row.name,
      missing: [...(row.has_database ? [] : ['database' as const]), ...(row.has_role ? [] : ['role' as const])],
    }));
  }

  async close(): Promise<void> {}

  /** Why a customer's role could log in without its password on this server, or undefined when it cannot. */
  private async passwordlessLogin(): Promise<string | undefined> {
    const probe = `claw_probe_${randomBytes(6).toString('hex')}`;
    const password = toBase62(randomBytes(24), 33);
    await this.admin.query(`CREATE ROLE ${quoteIdent(probe)} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE CONNECTION LIMIT 1 PASSWORD '${scramSha256Verifier(password)}'`);
    try {
      const url = new URL(this.adminUrl);
      const client = new pg.Client({
        host: decodeURIComponent(url.hostname),
        port: Number(url.port || 5432),
        database: decodeURIComponent(url.pathname.slice(1)) || 'postgres',
        user: probe,
        password: '', // none of PGPASSWORD's or .pgpass's: the login must stand on its own
        connectionTimeoutMillis: 5_000,
      });
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.end();
        return 'a customer role logs in to this PostgreSQL server without its password';
      } catch (err) {
        // Refused by the client itself (asked for a password it has none of), the connection would stay open half
        // authenticated until the server's authentication_timeout, and hold up every DROP DATABASE meanwhile.
        await client.end().catch(() => undefined);
        // Let in, then refused the database (CONNECT revoked): the password was not asked for either.
        if ((err as { code?: string }).code === '42501') return 'a customer role logs in to this PostgreSQL server without its password';
        return undefined;
      }
    } finally {
      await this.admin.query(`DROP ROLE IF EXISTS ${quoteIdent(probe)}`);
    }
  }

  /** The role's password, made once and kept encrypted, so a re-run does not break a deployed instance. */
  private async password(name: string): Promise<string> {
    return this.secrets.putIfAbsent(`${SECRET_PREFIX}${name}`, 'password', toBase62(randomBytes(24), 33));
  }
}

function checkName(name: string): void {
  if (!NAME_PATTERN.test(name)) throw new Error(`invalid database name ${JSON.stringify(name)}`);
}
