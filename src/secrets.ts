/** Secrets at rest: AES-256-GCM under SECRETS_KEY, stored in the control-plane `secrets` table. */
import { open, seal, type Sealed } from '../core/sealing.ts';
import type { Db } from './db/pool.ts';

export { open, seal, type Sealed };

export class SecretStore {
  constructor(
    private readonly db: Db,
    /** SECRETS_KEY (the fleet generations seal their secrets in their own rows with it). */
    readonly key: Buffer,
  ) {}

  async put(owner: string, name: string, value: string): Promise<void> {
    const s = seal(this.key, value, `${owner}/${name}`);
    await this.db.query(
      `INSERT INTO secrets (owner, name, ciphertext, iv, tag) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (owner, name) DO UPDATE SET ciphertext = $3, iv = $4, tag = $5, created_at = now()`,
      [owner, name, s.ciphertext, s.iv, s.tag],
    );
  }

  /** Stores value unless a secret is already there; returns whichever is stored (safe under concurrent callers). */
  async putIfAbsent(owner: string, name: string, value: string): Promise<string> {
    const s = seal(this.key, value, `${owner}/${name}`);
    // One round trip: the new secret, or the one already there (read in the same statement).
    const { rows } = await this.db.query<Sealed>(
      `WITH added AS (
         INSERT INTO secrets (owner, name, ciphertext, iv, tag) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (owner, name) DO NOTHING
         RETURNING ciphertext, iv, tag
       )
       SELECT ciphertext, iv, tag FROM added UNION ALL SELECT ciphertext, iv, tag FROM secrets WHERE owner = $1 AND name = $2`,
      [owner, name, s.ciphertext, s.iv, s.tag],
    );
    // A secret added by another writer after this statement began is not in its snapshot: read it again.
    if (!rows[0]) return (await this.get(owner, name))!;
    return open(this.key, rows[0], `${owner}/${name}`);
  }

  async get(owner: string, name: string): Promise<string | null> {
    const { rows } = await this.db.query<Sealed>(
      'SELECT ciphertext, iv, tag FROM secrets WHERE owner = $1 AND name = $2',
      [owner, name],
    );
    return rows[0] ? open(this.key, rows[0], `${owner}/${name}`) : null;
  }

  /** The owners starting with `prefix` that hold a secret called `name` (no value is opened). */
  async owners(prefix: string, name: string): Promise<string[]> {
    const { rows } = await this.db.query<{ owner: string }>(
      `SELECT owner FROM secrets WHERE starts_with(owner, $1) AND name = $2 ORDER BY owner`,
      [prefix, name],
    );
    return rows.map((row) => row.owner);
  }

  async delete(owner: string, name: string): Promise<void> {
    await this.db.query('DELETE FROM secrets WHERE owner = $1 AND name = $2', [owner, name]);
  }
}
