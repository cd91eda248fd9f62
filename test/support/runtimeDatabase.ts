/** A throwaway customer database on the local server with the runtime's schema applied, and a pool on it. */
import pg from 'pg';
import { quoteIdent } from '../../core/postgres.ts';
import { applyRuntimeSchema } from '../../core/runtimeSchema.ts';

export const PG_SERVER = 'postgres://postgres@127.0.0.1:5432';

export async function createRuntimeDatabase(name: string, poolSize = 4): Promise<{ url: string; pool: pg.Pool }> {
  const admin = new pg.Client({ connectionString: `${PG_SERVER}/postgres` });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${quoteIdent(name)}`);
  } finally {
    await admin.end();
  }
  const url = `${PG_SERVER}/${name}`;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await applyRuntimeSchema(client);
  } finally {
    await client.end();
  }
  const pool = new pg.Pool({ connectionString: url, max: poolSize });
  // A connection ended by the DROP DATABASE ... WITH (FORCE) of a test's cleanup is not an error worth a crash.
  pool.on('error', () => undefined);
  return { url, pool };
}
