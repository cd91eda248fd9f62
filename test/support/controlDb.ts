/** A fresh control-plane database on the local Postgres, migrated, for tests of a gateway; drop() removes it. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { quoteIdent } from '../../core/postgres.ts';
import { migrate } from '../../src/db/migrate.ts';
import { createPool, type Db } from '../../src/db/pool.ts';

const SERVER = 'postgres://postgres@127.0.0.1:5432';

/** One statement as the local Postgres's admin, on a connection of its own (CREATE/DROP DATABASE). */
export async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: `${SERVER}/postgres` });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export async function controlDb(tag: string): Promise<{ db: Db; name: string; drop(): Promise<void> }> {
  const name = `${tag}_${randomBytes(4).toString('hex')}`;
  await admin(`CREATE DATABASE ${quoteIdent(name)}`);
  const db = createPool(`${SERVER}/${name}`);
  await migrate(db);
  return {
    db,
    name,
    async drop() {
      await db.end();
      await admin(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    },
  };
}
