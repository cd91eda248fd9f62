/**
 * The key handovers gateway: when the welcome email went out and when the welcome page revealed the key. Each mark
 * is one statement that locks the instance's row, so of two concurrent marks the later sees the earlier, and of two
 * concurrent reveals only one wins.
 */
import type { Db } from './pool.ts';

export interface KeyHandovers {
  /** The email has gone; answers whether the page had already revealed the key. */
  emailed(instanceId: string): Promise<{ revealed: boolean }>;
  /** Claims the one reveal: null when it was already claimed, else whether the email had already gone. */
  claimReveal(instanceId: string): Promise<{ emailed: boolean } | null>;
  /** A new key is issued (a reactivation's): what happened to the one before no longer counts. */
  forget(instanceId: string): Promise<void>;
  /** What has happened so far (null: neither). */
  state(instanceId: string): Promise<{ emailed: boolean; revealed: boolean } | null>;
  /**
   * Deletes the sealed keys (secret `name` of owner `ownerPrefix` + instance id) that are done with: revealed after
   * their email, or emailed longer ago than `windowMs`. Answers the instances whose key it deleted.
   */
  deleteFinishedKeys(windowMs: number, ownerPrefix: string, name: string): Promise<string[]>;
}

export class PgKeyHandovers implements KeyHandovers {
  constructor(private readonly db: Db) {}

  async emailed(instanceId: string): Promise<{ revealed: boolean }> {
    const { rows } = await this.db.query<{ revealed_at: Date | null }>(
      `INSERT INTO key_handovers (instance_id, emailed_at) VALUES ($1, now())
       ON CONFLICT (instance_id) DO UPDATE SET emailed_at = COALESCE(key_handovers.emailed_at, now())
       RETURNING revealed_at`,
      [instanceId],
    );
    return { revealed: rows[0]!.revealed_at !== null };
  }

  async claimReveal(instanceId: string): Promise<{ emailed: boolean } | null> {
    const { rows } = await this.db.query<{ emailed_at: Date | null }>(
      `INSERT INTO key_handovers (instance_id, revealed_at) VALUES ($1, now())
       ON CONFLICT (instance_id) DO UPDATE SET revealed_at = now() WHERE key_handovers.revealed_at IS NULL
       RETURNING emailed_at`,
      [instanceId],
    );
    return rows[0] ? { emailed: rows[0].emailed_at !== null } : null;
  }

  async forget(instanceId: string): Promise<void> {
    await this.db.query('DELETE FROM key_handovers WHERE instance_id = $1', [instanceId]);
  }

  async state(instanceId: string): Promise<{ emailed: boolean; revealed: boolean } | null> {
    const { rows } = await this.db.query<{ emailed: boolean; revealed: boolean }>(
      'SELECT emailed_at IS NOT NULL AS emailed, revealed_at IS NOT NULL AS revealed FROM key_handovers WHERE instance_id = $1',
      [instanceId],
    );
    return rows[0] ?? null;
  }

  async deleteFinishedKeys(windowMs: number, ownerPrefix: string, name: string): Promise<string[]> {
    const { rows } = await this.db.query<{ instance_id: string }>(
      `DELETE FROM secrets s USING key_handovers k
       WHERE s.owner = $2 || k.instance_id::text AND s.name = $3 AND k.emailed_at IS NOT NULL
         AND (k.revealed_at IS NOT NULL OR k.emailed_at <= now() - make_interval(secs => $1::double precision / 1000))
       RETURNING k.instance_id`,
      [windowMs, ownerPrefix, name],
    );
    return rows.map((r) => r.instance_id);
  }
}
