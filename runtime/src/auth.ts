/**
 * API-key authentication for the runtime's customer endpoints. Keys are looked up by hash in api_keys; answers
 * (both "valid" and "not valid") are cached briefly so a busy client does not cost a query per request, while a
 * revoked key is refused within CACHE_MS (at once when this process revoked it: its rotation forgets the answer).
 */
import type { Context, Next } from 'koa';
import type pg from 'pg';
import { apiKeyMatches, bearerKey, hashApiKey, isWellFormedApiKey } from '../../core/apiKey.ts';

const CACHE_MS = 2_000;
/** Bounds the cache against a flood of random keys; past it the oldest answers are dropped first. */
const CACHE_MAX_ENTRIES = 10_000;

/** The key check, and forgetting a key's cached answer at once (its rotation revoked it in this process). */
export interface ApiKeyAuth {
  (ctx: Context, next: Next): Promise<void>;
  forget(keyHash: string): void;
}

export function requireApiKey(db: pg.Pool): ApiKeyAuth {
  const cache = new Map<string, { storedHash: string | undefined; expiresAt: number }>();

  async function storedHashFor(keyHash: string): Promise<string | undefined> {
    const now = Date.now();
    const cached = cache.get(keyHash);
    if (cached && cached.expiresAt > now) return cached.storedHash;
    const { rows } = await db.query<{ key_hash: string }>(
      'SELECT key_hash FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL',
      [keyHash],
    );
    cache.delete(keyHash);
    while (cache.size >= CACHE_MAX_ENTRIES) cache.delete(cache.keys().next().value as string);
    const storedHash = rows[0]?.key_hash;
    cache.set(keyHash, { storedHash, expiresAt: now + CACHE_MS });
    return storedHash;
  }

  /** Why a request's Authorization header is refused, or undefined when it carries a live key. */
  async function refusalFor(header: string): Promise<string | undefined> {
    const key = bearerKey(header || undefined);
    if (key === undefined) return 'missing bearer api key';
    if (!isWellFormedApiKey(key)) return 'malformed api key';
    const stored = await storedHashFor(hashApiKey(key));
    return stored !== undefined && apiKeyMatches(key, stored) ? undefined : 'unknown or revoked api key';
  }

  let suspension: { reason: string | null; expiresAt: number } = { reason: null, expiresAt: 0 };
  /** Why the account is suspended (payment overdue), or null; read at most every CACHE_MS. */
  async function suspendedReason(): Promise<string | null> {
    if (suspension.expiresAt > Date.now()) return suspension.reason;
    const { rows } = await db.query<{ suspended_reason: string | null }>('SELECT suspended_reason FROM account_status');
    suspension = { reason: rows[0]?.suspended_reason ?? null, expiresAt: Date.now() + CACHE_MS };
    return suspension.reason;
  }

  const apiKeyAuth = async (ctx: Context, next: Next): Promise<void> => {
    const refusal = await refusalFor(ctx.get('authorization'));
    if (refusal !== undefined) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Bearer');
      ctx.body = { error: 'unauthorized', reason: refusal };
      return;
    }
    const suspended = await suspendedReason();
    if (suspended !== null) {
      ctx.status = 402;
      ctx.body = { error: 'payment_required', reason: suspended };
      return;
    }
    await next();
  };
  return Object.assign(apiKeyAuth, { forget: (keyHash: string) => void cache.delete(keyHash) });
}
