/**
 * Requests per API key: a token bucket per key (held by the key's hash, so any spelling of the same header shares
 * it), refilled steadily, RATE_LIMIT requests per period. Past it, 429 with Retry-After. In memory: one runtime
 * process serves one customer. Runs after authentication, so every request here carries a valid key.
 *
 * Every answer says the limit in the RateLimit-* headers (the IETF draft's separate fields): RateLimit-Limit (the
 * bucket's size), RateLimit-Remaining (requests left now), RateLimit-Reset (seconds until the bucket is full again)
 * and RateLimit-Policy (`<requests>;w=<window in seconds>`).
 */
import type { Context, Next } from 'koa';
import { bearerKey, hashApiKey } from '../../core/apiKey.ts';
import type { RateLimit } from '../../core/durations.ts';
import { HttpError } from '../../core/http/httpError.ts';

const MAX_BUCKETS = 10_000;

export function rateLimitPerKey(rate: RateLimit, now: () => number = Date.now): (ctx: Context, next: Next) => Promise<void> {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const perMs = rate.max / rate.durationMs;
  const policy = `${rate.max};w=${Math.max(1, Math.round(rate.durationMs / 1000))}`;
  const headers = (tokens: number): Record<string, string> => ({
    'RateLimit-Limit': String(rate.max),
    'RateLimit-Remaining': String(Math.floor(tokens)),
    'RateLimit-Reset': String(Math.ceil((rate.max - tokens) / perMs / 1000)),
    'RateLimit-Policy': policy,
  });

  return async function rateLimited(ctx, next) {
    const key = hashApiKey(bearerKey(ctx.get('authorization')) ?? '');
    const t = now();
    const bucket = buckets.get(key) ?? { tokens: rate.max, at: t };
    bucket.tokens = Math.min(rate.max, bucket.tokens + (t - bucket.at) * perMs);
    bucket.at = t;
    if (bucket.tokens < 1) {
      const seconds = Math.max(1, Math.ceil((1 - bucket.tokens) / perMs / 1000));
      throw new HttpError(429, 'rate_limited', `too many requests for this key; try again in ${seconds} s`, { retryAfter: seconds }, {
        ...headers(bucket.tokens),
        'Retry-After': String(seconds),
      });
    }
    bucket.tokens -= 1;
    buckets.delete(key); // re-inserted last: the map's order is least recently used first
    buckets.set(key, bucket);
    if (buckets.size > MAX_BUCKETS) buckets.delete(buckets.keys().next().value as string);
    ctx.set(headers(bucket.tokens));
    await next();
  };
}
