/**
 * Lifecycle work for one customer runs one job at a time, whichever worker holds it: a session advisory lock on the
 * instance, held while the work runs.
 */
import pg from 'pg';

export interface InstanceLocks {
  /** Runs `work` holding the instance's lock; answers `{ ran: false }` at once when another job holds it. */
  withLock<T>(instanceId: string, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }>;
}

export class PgInstanceLocks implements InstanceLocks {
  constructor(private readonly databaseUrl: string) {}

  withLock<T>(instanceId: string, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    return withSessionLock(this.databaseUrl, `lifecycle/${instanceId}`, work);
  }
}

/** Runs `work` holding the advisory lock named `key` in this database; `{ ran: false }` at once when it is held. */
export async function withSessionLock<T>(databaseUrl: string, key: string, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
  // A connection of its own, outside the pool the work uses (held locks never starve it), and closed at the end:
  // closing releases the lock whatever else went wrong.
  const client = new pg.Client({ connectionString: databaseUrl });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [key]);
    if (!rows[0]!.locked) return { ran: false };
    return { ran: true, value: await work() };
  } finally {
    await client.end().catch(() => undefined);
  }
}
