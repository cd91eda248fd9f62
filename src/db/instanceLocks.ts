/**
 * Work for one customer runs one job at a time, whichever worker holds it: a session advisory lock on the instance,
 * held while the work runs. Provisioning steps, lifecycle jobs and the fleet's repairs all take it.
 *
 * Locks are held on connections of their own (a small pool beside the one the work uses, so held locks never starve
 * the work of connections), kept open between locks: a new Postgres connection costs the server far more than the
 * lock and unlock statements.
 */
import pg from 'pg';
import { logger } from '../../core/logger.ts';

const log = logger('locks');

export interface InstanceLocks {
  /**
   * Runs `work` holding the instance's lock; answers `{ ran: false }` at once when another job holds it. `shared`:
   * held alongside other shared holders (the provisioning steps of one instance that run side by side), never
   * alongside an exclusive one (a lifecycle job).
   */
  withLock<T>(instanceId: string, work: () => Promise<T>, options?: { shared?: boolean }): Promise<{ ran: true; value: T } | { ran: false }>;
}

/** The connections advisory locks are held on. */
export class LockConnections {
  private readonly pool: pg.Pool;

  constructor(databaseUrl: string, max: number) {
    this.pool = new pg.Pool({ connectionString: databaseUrl, max });
    this.pool.on('error', (err) => log.warn('idle lock connection lost', { error: err.message }));
  }

  /** Runs `work` holding the advisory lock named `key`; `{ ran: false }` at once when it is held elsewhere. */
  async withLock<T>(key: string, work: () => Promise<T>, shared = false): Promise<{ ran: true; value: T } | { ran: false }> {
    const [take, give] = shared ? ['pg_try_advisory_lock_shared', 'pg_advisory_unlock_shared'] : ['pg_try_advisory_lock', 'pg_advisory_unlock'];
    const client = await this.pool.connect();
    // A connection that failed a lock statement is closed instead of reused: closing releases every lock it held.
    let healthy = true;
    const onConnection = <R>(query: Promise<R>): Promise<R> => query.catch((err: Error) => ((healthy = false), Promise.reject(err)));
    try {
      const { rows } = await onConnection(client.query<{ locked: boolean }>(`SELECT ${take}(hashtext($1)) AS locked`, [key]));
      if (!rows[0]!.locked) return { ran: false };
      try {
        return { ran: true, value: await work() };
      } finally {
        await onConnection(client.query(`SELECT ${give}(hashtext($1))`, [key])).catch(() => undefined);
      }
    } finally {
      client.release(!healthy);
    }
  }

  /** Connections open now (idle ones close after ten seconds). */
  get open(): number {
    return this.pool.totalCount;
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}

export class PgInstanceLocks implements InstanceLocks {
  constructor(private readonly connections: LockConnections) {}

  withLock<T>(instanceId: string, work: () => Promise<T>, options: { shared?: boolean } = {}): Promise<{ ran: true; value: T } | { ran: false }> {
    return this.connections.withLock(`lifecycle/${instanceId}`, work, options.shared);
  }
}
