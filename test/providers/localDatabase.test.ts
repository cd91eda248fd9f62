/**
 * LocalDatabaseProvider against the real local Postgres: a throwaway control-plane database (prov_test_<hex>), and
 * customer databases/roles named claw_<hex>_<suffix>, all removed (and checked gone) in after().
 *
 * The local server uses trust auth, so a wrong password would still connect. The password in connectionUrl is
 * therefore also checked against the role's stored SCRAM/MD5 verifier in pg_authid.
 */
import { expect } from 'chai';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.ts';
import { createPool, ensureDatabase, type Db } from '../../src/db/pool.ts';
import { quoteIdent } from '../../core/postgres.ts';
import { LocalDatabaseProvider } from '../../src/providers/database/local.ts';
import { SecretStore } from '../../src/secrets.ts';
import { startPasswordCluster } from '../support/passwordCluster.ts';

const SERVER = 'postgres://postgres@127.0.0.1:5432';

/** Connects a client (and swallows the 'error' event a terminated backend emits, so it cannot crash mocha). */
async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** The error a connection attempt fails with (or null when it connects). */
async function connectError(url: string): Promise<(Error & { code?: string }) | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    return err as Error & { code?: string };
  }
  await client.end();
  return null;
}

async function queryError(client: pg.Client, sql: string): Promise<(Error & { code?: string }) | null> {
  try {
    await client.query(sql);
    return null;
  } catch (err) {
    return err as Error & { code?: string };
  }
}

/** Whether password matches the verifier Postgres stores for role (scram-sha-256 or md5). */
function passwordMatches(verifier: string, role: string, password: string): boolean {
  const scram = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier);
  if (scram) {
    const [, iterations, salt, storedKey, serverKey] = scram;
    const salted = pbkdf2Sync(password, Buffer.from(salt!, 'base64'), Number(iterations), 32, 'sha256');
    const clientKey = createHmac('sha256', salted).update('Client Key').digest();
    const stored = createHash('sha256').update(clientKey).digest('base64');
    const server = createHmac('sha256', salted).update('Server Key').digest('base64');
    return stored === storedKey && server === serverKey;
  }
  if (verifier.startsWith('md5')) {
    return verifier === 'md5' + createHash('md5').update(password + role).digest('hex');
  }
  throw new Error(`unknown password verifier format for ${role}`);
}

describe('LocalDatabaseProvider: logins without a password', function () {
  this.timeout(60_000);

  it('refuses to start in production on a server that lets a role in without its password, and warns elsewhere', async () => {
    const name = `prov_trust_${randomBytes(4).toString('hex')}`;
    const url = `${SERVER}/${name}`;
    await ensureDatabase(url);
    const pool = createPool(url, 2);
    try {
      await migrate(pool);
      const provider = new LocalDatabaseProvider(pool, url, new SecretStore(pool, randomBytes(32)));
      const refused = await provider.init({ production: true }).then(() => null, (err: Error) => err);
      expect(refused?.message).to.match(/^refusing to start: a customer role logs in to this PostgreSQL server without its password/);
      await provider.init({ production: false });
      const probes = await pool.query(`SELECT rolname FROM pg_roles WHERE rolname LIKE 'claw\\_probe\\_%'`);
      expect(probes.rows).to.deep.equal([]); // the probe role is gone either way
    } finally {
      await pool.end();
      const admin = await connect(`${SERVER}/postgres`);
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
      await admin.end();
    }
  });

  it('starts in production on a server that asks every role for its password', async () => {
    const cluster = await startPasswordCluster();
    const url = new URL(cluster.adminUrl);
    url.pathname = '/control';
    const pool = createPool(url.toString(), 2);
    try {
      await ensureDatabase(url.toString());
      await migrate(pool);
      const provider = new LocalDatabaseProvider(pool, url.toString(), new SecretStore(pool, randomBytes(32)));
      await provider.init({ production: true });
      // And a customer's role opens its own database with its password only.
      const made = await provider.findOrCreateDatabase('claw_pw_test');
      const own = await connect(made.connectionUrl);
      await own.end();
      const without = new URL(made.connectionUrl);
      without.password = 'wrong-password';
      expect((await connectError(without.toString()))?.code).to.equal('28P01');
      // The probe's refused login is closed, not left half authenticated: a DROP DATABASE (which waits for every
      // backend of the server) does not wait for the server's authentication_timeout (60 s) to end it.
      const admin = await connect(cluster.adminUrl);
      try {
        await admin.query(`SET statement_timeout = '20s'`);
        await admin.query(`DROP DATABASE claw_pw_test WITH (FORCE)`);
      } finally {
        await admin.end();
      }
    } finally {
      await pool.end();
      await cluster.stop();
    }
  });
});

describe('LocalDatabaseProvider (real Postgres)', function () {
  this.timeout(30_000);

  const id = randomBytes(4).toString('hex');
  const controlDbName = `prov_test_${id}`;
  const controlUrl = `${SERVER}/${controlDbName}`;
  const name = (suffix: string) => `claw_${id}_${suffix}`;
  let admin: pg.Client; // on the 'postgres' database: survives dropping everything else
  let pool: Db;
  let secrets: SecretStore;
  let provider: LocalDatabaseProvider;
  const clients: pg.Client[] = [];

  const count = async (sql: string, params: unknown[]) => Number((await admin.query(sql, params)).rows[0].n);
  const databaseCount = (db: string) => count('SELECT count(*) AS n FROM pg_database WHERE datname = $1', [db]);
  const roleCount = (role: string) => count('SELECT count(*) AS n FROM pg_roles WHERE rolname = $1', [role]);
  const verifierOf = async (role: string): Promise<string> =>
    (await admin.query<{ v: string }>('SELECT rolpassword AS v FROM pg_authid WHERE rolname = $1', [role])).rows[0]!.v;
  const sealedRows = (db: string) =>
    pool.query<{ ciphertext: Buffer }>(`SELECT ciphertext FROM secrets WHERE owner = $1 AND name = 'password'`, [
      `local-database/${db}`,
    ]);
  const ourNames = async () => {
    const dbs = await admin.query<{ n: string }>(`SELECT datname AS n FROM pg_database WHERE datname LIKE $1 OR datname = $2`, [
      `claw\\_${id}\\_%`,
      controlDbName,
    ]);
    const roles = await admin.query<{ n: string }>(`SELECT rolname AS n FROM pg_roles WHERE rolname LIKE $1`, [`claw\\_${id}\\_%`]);
    return { databases: dbs.rows.map((r) => r.n), roles: roles.rows.map((r) => r.n) };
  };

  before(async () => {
    admin = await connect(`${SERVER}/postgres`);
    await ensureDatabase(controlUrl);
    pool = createPool(controlUrl);
    await migrate(pool);
    secrets = new SecretStore(pool, randomBytes(32));
    provider = new LocalDatabaseProvider(pool, controlUrl, secrets);
    await provider.init();
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    await provider?.close();
    await pool?.end();
    if (!admin) return;
    const left = await ourNames();
    for (const db of left.databases) await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(db)} WITH (FORCE)`);
    for (const role of left.roles) await admin.query(`DROP ROLE IF EXISTS ${quoteIdent(role)}`);
    const after = await ourNames();
    await admin.end();
    expect(after, 'databases/roles left behind').to.deep.equal({ databases: [], roles: [] });
  });

  it('init() revokes CONNECT on the control-plane database from PUBLIC', async () => {
    const granted = await admin.query<{ acl: string | null }>('SELECT datacl::text AS acl FROM pg_database WHERE datname = $1', [
      controlDbName,
    ]);
    // An ACL entry for PUBLIC reads "=<privs>/owner"; after the REVOKE it has none, and c (CONNECT) is gone.
    const acl = granted.rows[0]!.acl;
    expect(acl, 'control-plane datacl').to.be.a('string');
    expect(acl!.split(/[{},]/).filter((entry) => entry.startsWith('='))).to.deep.equal([]);

    const customer = await provider.findOrCreateDatabase(name('init'));
    const url = new URL(customer.connectionUrl);
    url.pathname = `/${controlDbName}`;
    const err = await connectError(url.toString());
    expect(err, 'a customer role connecting to the control-plane database').to.not.equal(null);
    expect(err!.message).to.match(/permission denied for database/);
    expect(err!.code).to.equal('42501');
    // ...while the very same URL, pointed at its own database, connects.
    expect(await connectError(customer.connectionUrl)).to.equal(null);
  });

  it('findOrCreateDatabase creates a database owned by a new login role and returns a URL that opens it as that role', async () => {
    const db = name('main');
    expect(await databaseCount(db)).to.equal(0);
    const ref = await provider.findOrCreateDatabase(db);
    expect(ref).to.include({ branchId: db, databaseName: db, roleName: db });

    const url = new URL(ref.connectionUrl);
    expect(url.protocol).to.equal('postgres:');
    expect(url.host).to.equal('127.0.0.1:5432');
    expect(url.username).to.equal(db);
    expect(url.pathname).to.equal(`/${db}`);
    expect(url.password).to.match(/^[0-9A-Za-z]{33}$/);

    const client = await connect(ref.connectionUrl);
    clients.push(client);
    const who = await client.query<{ u: string; d: string; su: boolean }>(
      `SELECT current_user AS u, current_database() AS d, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su`,
    );
    expect(who.rows[0]).to.deep.equal({ u: db, d: db, su: false });
    await client.end();
    clients.pop();

    // Trust auth accepts any password, so check the URL's against the verifier the server keeps for the role.
    const verifier = await verifierOf(db);
    expect(passwordMatches(verifier, db, url.password), 'URL password matches the role password').to.equal(true);
    expect(passwordMatches(verifier, db, url.password + 'x')).to.equal(false);

    const role = await admin.query('SELECT rolcanlogin, rolcreatedb, rolcreaterole, rolsuper, rolconnlimit FROM pg_roles WHERE rolname = $1', [db]);
    expect(role.rows[0]).to.deep.equal({ rolcanlogin: true, rolcreatedb: false, rolcreaterole: false, rolsuper: false, rolconnlimit: 20 });
    const owner = await admin.query(`SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = $1`, [db]);
    expect(owner.rows[0].owner).to.equal(db);
  });

  it('is idempotent: a second call returns the same password and URL, kept sealed under local-database/<name>', async () => {
    const db = name('main');
    const first = await provider.findOrCreateDatabase(db);
    const second = await provider.findOrCreateDatabase(db);
    expect(second).to.deep.equal(first);
    expect(await databaseCount(db)).to.equal(1);
    expect(await roleCount(db)).to.equal(1);

    const password = new URL(first.connectionUrl).password;
    expect(await secrets.get(`local-database/${db}`, 'password')).to.equal(password);
    const stored = await sealedRows(db);
    expect(stored.rows).to.have.length(1);
    expect(stored.rows[0]!.ciphertext.includes(Buffer.from(password)), 'password stored in clear').to.equal(false);
    expect(passwordMatches(await verifierOf(db), db, password)).to.equal(true);
  });

  it('3 concurrent calls for a new name agree on one database, one role and one password', async () => {
    const db = name('conc');
    const refs = await Promise.all([1, 2, 3].map(() => provider.findOrCreateDatabase(db)));
    expect(new Set(refs.map((r) => r.connectionUrl)).size, 'distinct URLs').to.equal(1);
    expect(await databaseCount(db)).to.equal(1);
    expect(await roleCount(db)).to.equal(1);
    const password = new URL(refs[0]!.connectionUrl).password;
    expect(await secrets.get(`local-database/${db}`, 'password')).to.equal(password);
    expect(passwordMatches(await verifierOf(db), db, password)).to.equal(true);
    expect(await connectError(refs[0]!.connectionUrl)).to.equal(null);
  });

  describe('isolation between customers', () => {
    let a: Awaited<ReturnType<LocalDatabaseProvider['findOrCreateDatabase']>>;
    let b: Awaited<ReturnType<LocalDatabaseProvider['findOrCreateDatabase']>>;
    let asA: pg.Client;

    before(async () => {
      a = await provider.findOrCreateDatabase(name('iso_a'));
      b = await provider.findOrCreateDatabase(name('iso_b'));
      asA = await connect(a.connectionUrl);
      clients.push(asA);
    });

    it("role A cannot connect to database B (and B's own role can)", async () => {
      const url = new URL(a.connectionUrl);
      url.pathname = `/${b.databaseName}`;
      const err = await connectError(url.toString());
      expect(err, 'A connecting to B').to.not.equal(null);
      expect(err!.message).to.match(/permission denied for database/);
      expect(err!.code).to.equal('42501');
      expect(await connectError(b.connectionUrl)).to.equal(null);
    });

    it('role A cannot create a database or a role', async () => {
      const createDb = await queryError(asA, `CREATE DATABASE ${quoteIdent(name('evil_db'))}`);
      expect(createDb?.code, createDb?.message).to.equal('42501');
      expect(createDb!.message).to.match(/permission denied to create database/);
      const createRole = await queryError(asA, `CREATE ROLE ${quoteIdent(name('evil_role'))} LOGIN`);
      expect(createRole?.code, createRole?.message).to.equal('42501');
      expect(createRole!.message).to.match(/permission denied to create role/);
      expect(await databaseCount(name('evil_db'))).to.equal(0);
      expect(await roleCount(name('evil_role'))).to.equal(0);
    });

    it('role A can create tables in its public schema and owns them', async () => {
      await asA.query('CREATE TABLE public.notes (id serial PRIMARY KEY, body text NOT NULL)');
      await asA.query(`INSERT INTO notes (body) VALUES ('hello')`);
      expect((await asA.query('SELECT body FROM notes')).rows).to.deep.equal([{ body: 'hello' }]);
      const owner = await asA.query<{ o: string }>(
        `SELECT tableowner AS o FROM pg_tables WHERE schemaname = 'public' AND tablename = 'notes'`,
      );
      expect(owner.rows[0]?.o).to.equal(a.roleName);
      const schemaOwner = await asA.query<{ can: boolean }>(`SELECT has_schema_privilege('public', 'CREATE') AS can`);
      expect(schemaOwner.rows[0]!.can).to.equal(true);
    });

    it('role A has no TEMPORARY right on database B nor CONNECT on the control-plane database', async () => {
      const privs = await admin.query<{ b_connect: boolean; b_temp: boolean; cp_connect: boolean }>(
        `SELECT has_database_privilege($1, $2, 'CONNECT') AS b_connect,
                has_database_privilege($1, $2, 'TEMPORARY') AS b_temp,
                has_database_privilege($1, $3, 'CONNECT') AS cp_connect`,
        [a.roleName, b.databaseName, controlDbName],
      );
      expect(privs.rows[0]).to.deep.equal({ b_connect: false, b_temp: false, cp_connect: false });
    });
  });

  describe('invalid names', () => {
    /** Stand-ins that record any use: a rejected name must fail before a query or a secret is touched. */
    function recordingProvider() {
      const calls: string[] = [];
      const query = async (sql: string) => (calls.push(`sql:${sql}`), Promise.reject(new Error('stop: reached SQL')));
      const db = { query, connect: async () => ({ query, release: () => undefined }) };
      const store = {
        putIfAbsent: async (owner: string) => (calls.push(`secret:${owner}`), 'x'.repeat(33)),
        get: async (owner: string) => (calls.push(`secret:${owner}`), null),
      };
      const p = new LocalDatabaseProvider(db as unknown as Db, controlUrl, store as unknown as SecretStore);
      return { p, calls };
    }

    for (const bad of ['Claw_upper', 'claw"quote', `a${'b'.repeat(63)}`, '1claw', 'x; DROP', 'x; DROP DATABASE postgres; --', '', '_claw', 'claw-dash']) {
      it(`rejects ${JSON.stringify(bad.length > 30 ? `${bad.slice(0, 12)}…(${bad.length} chars)` : bad)} before any SQL`, async () => {
        const { p, calls } = recordingProvider();
        let error: Error | undefined;
        try {
          await p.findOrCreateDatabase(bad);
        } catch (err) {
          error = err as Error;
        }
        expect(error?.message).to.match(/^invalid database name/);
        expect(calls).to.deep.equal([]);
      });
    }

    it('accepts the longest valid name (63 characters) as far as SQL', async () => {
      const { p, calls } = recordingProvider();
      const longest = `a${'b'.repeat(62)}`;
      let error: Error | undefined;
      try {
        await p.findOrCreateDatabase(longest);
      } catch (err) {
        error = err as Error;
      }
      expect(error?.message).to.equal('stop: reached SQL');
      expect(calls.some((c) => c.startsWith('sql:'))).to.equal(true);
    });
  });

  it('lists the databases and roles whose password it keeps, with what of each is gone, and no other control plane’s', async () => {
    const whole = name('list_whole');
    const dropped = name('list_dropped');
    const foreign = name('list_foreign');
    await provider.findOrCreateDatabase(whole);
    await provider.findOrCreateDatabase(dropped);
    await admin.query(`DROP DATABASE ${quoteIdent(dropped)} WITH (FORCE)`);
    // Same naming, made by someone else on the same server (another control plane, whose secrets are its own).
    await admin.query(`CREATE DATABASE ${quoteIdent(foreign)}`);

    const listed = (await provider.listDatabases()).filter((d) => d.name.includes('_list_'));
    expect(listed.sort((a, b) => a.name.localeCompare(b.name))).to.deep.equal([
      { branchId: dropped, databaseName: dropped, roleName: dropped, name: dropped, missing: ['database'] },
      { branchId: whole, databaseName: whole, roleName: whole, name: whole, missing: [] },
    ]);
  });

  describe('deleteDatabase', () => {
    it('drops the database even with an open connection, then the role and the sealed password; again is a no-op', async () => {
      const db = name('del');
      const ref = await provider.findOrCreateDatabase(db);
      const open = await connect(ref.connectionUrl);
      clients.push(open);
      await open.query('CREATE TABLE t (x int)');
      expect(await databaseCount(db)).to.equal(1);
      expect(await secrets.get(`local-database/${db}`, 'password')).to.be.a('string');

      await provider.deleteDatabase(ref);

      expect(await databaseCount(db), 'database').to.equal(0);
      expect(await roleCount(db), 'role').to.equal(0);
      expect(await secrets.get(`local-database/${db}`, 'password'), 'sealed password').to.equal(null);
      expect((await sealedRows(db)).rows).to.have.length(0);
      const afterDrop = await queryError(open, 'SELECT 1');
      expect(afterDrop, 'the open session was terminated').to.not.equal(null);

      await provider.deleteDatabase(ref); // no-op, no error
      expect(await databaseCount(db)).to.equal(0);
      expect(await roleCount(db)).to.equal(0);
    });

    it('a deleted name can be created again, with a new password', async () => {
      const db = name('recreate');
      const first = await provider.findOrCreateDatabase(db);
      await provider.deleteDatabase(first);
      const second = await provider.findOrCreateDatabase(db);
      expect(new URL(second.connectionUrl).password).to.not.equal(new URL(first.connectionUrl).password);
      expect(await connectError(second.connectionUrl)).to.equal(null);
      await provider.deleteDatabase(second);
      expect(await databaseCount(db)).to.equal(0);
    });
  });
});
