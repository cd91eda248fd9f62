/**
 * Customers' access to their account page: single-use sign-in links and the sessions they open. A token is 32 random
 * bytes (base64url) handed out once; only its SHA-256 is stored, so reading the table opens nothing. Redeeming a link
 * is one statement, so a link opens at most one session however many times it is followed at once.
 */
import { createHash, randomBytes } from 'node:crypto';
import { inTransaction } from '../../core/postgres.ts';
import type { Db } from './pool.ts';

export interface AccountAccess {
  /** The customer with this email (case-insensitive), if any, still holding their personal data. */
  customerByEmail(email: string): Promise<{ id: string; email: string } | undefined>;
  /**
   * A new sign-in link's token for the customer, valid `ttlMs`; null when `limit` links were made for them within
   * the last `ttlMs` already (nobody can flood a customer's inbox with links).
   */
  createSignInLink(customerId: string, ttlMs: number, limit: number): Promise<string | null>;
  /** The link's customer, if it is known, unused and unexpired; it is used up by this call. */
  redeemSignInLink(token: string): Promise<string | undefined>;
  /** A new session's token for the customer, valid `ttlMs`. */
  createSession(customerId: string, ttlMs: number): Promise<string>;
  /** The session's customer, if it is known and unexpired. */
  sessionCustomer(token: string): Promise<string | undefined>;
  endSession(token: string): Promise<void>;
  /** Forgets links and sessions that expired (and used links) more than a day ago. */
  forgetExpired(): Promise<number>;
}

const TOKEN = /^[A-Za-z0-9_-]{43}$/;

export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function newToken(): string {
  return randomBytes(32).toString('base64url');
}

export class PgAccountAccess implements AccountAccess {
  constructor(private readonly db: Db) {}

  async customerByEmail(email: string): Promise<{ id: string; email: string } | undefined> {
    const { rows } = await this.db.query<{ id: string; email: string }>(
      'SELECT id, email FROM customers WHERE lower(email) = lower($1) ORDER BY created_at DESC LIMIT 1',
      [email.trim()],
    );
    return rows[0];
  }

  async createSignInLink(customerId: string, ttlMs: number, limit: number): Promise<string | null> {
    const token = newToken();
    // Requests for one customer are counted one at a time (under its lock): concurrent ones cannot all see room.
    const made = await inTransaction(this.db, async (client) => {
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('sign-in/' || $1))`, [customerId]);
      const { rowCount } = await client.query(
        `INSERT INTO sign_in_links (token_hash, customer_id, expires_at)
         SELECT $1, $2, now() + $3::float8 * interval '1 millisecond'
         WHERE (SELECT count(*) FROM sign_in_links WHERE customer_id = $2 AND created_at > now() - $3::float8 * interval '1 millisecond') < $4`,
        [tokenHash(token), customerId, ttlMs, limit],
      );
      return rowCount === 1;
    });
    return made ? token : null;
  }

  async redeemSignInLink(token: string): Promise<string | undefined> {
    if (!TOKEN.test(token)) return undefined;
    const { rows } = await this.db.query<{ customer_id: string }>(
      `UPDATE sign_in_links SET used_at = now() WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING customer_id`,
      [tokenHash(token)],
    );
    return rows[0]?.customer_id;
  }

  async createSession(customerId: string, ttlMs: number): Promise<string> {
    const token = newToken();
    await this.db.query(
      `INSERT INTO account_sessions (token_hash, customer_id, expires_at) VALUES ($1, $2, now() + $3::float8 * interval '1 millisecond')`,
      [tokenHash(token), customerId, ttlMs],
    );
    return token;
  }

  async sessionCustomer(token: string): Promise<string | undefined> {
    if (!TOKEN.test(token)) return undefined;
    // A purged customer (no email any more) has no account to see, whatever sessions are left.
    const { rows } = await this.db.query<{ customer_id: string }>(
      `SELECT s.customer_id FROM account_sessions s JOIN customers c ON c.id = s.customer_id
       WHERE s.token_hash = $1 AND s.expires_at > now() AND c.email IS NOT NULL`,
      [tokenHash(token)],
    );
    return rows[0]?.customer_id;
  }

  async endSession(token: string): Promise<void> {
    if (TOKEN.test(token)) await this.db.query('DELETE FROM account_sessions WHERE token_hash = $1', [tokenHash(token)]);
  }

  async forgetExpired(): Promise<number> {
    const { rows } = await this.db.query<{ n: number }>(
      `WITH links AS (DELETE FROM sign_in_links WHERE coalesce(used_at, expires_at) < now() - interval '1 day' RETURNING 1),
            sessions AS (DELETE FROM account_sessions WHERE expires_at < now() - interval '1 day' RETURNING 1)
       SELECT (SELECT count(*) FROM links) + (SELECT count(*) FROM sessions) AS n`,
    );
    return Number(rows[0]!.n);
  }
}
