/**
 * Failed authentication, throttled per client address: past `limit` answers of 401 to one address within a minute,
 * that address's requests carrying credentials (an Authorization header or a signature) answer 429 with Retry-After
 * until the minute is over, right or wrong, so guessing a token, password or key gets nowhere. Counted in memory, per
 * process (each web process and runtime keeps its own count).
 */
import type { Context, Middleware } from 'koa';
import { HttpError } from './httpError.ts';

const WINDOW_MS = 60_000;
/** Addresses remembered at most; past it the oldest are forgotten first (a flood of addresses cannot grow memory). */
const MAX_CLIENTS = 10_000;
const CREDENTIAL_HEADERS = ['authorization', 'x-clawdbot-signature', 'x-hub-signature-256'];

export function throttleFailedAuth(limit: number): Middleware {
  const failures = new Map<string, { count: number; resetAt: number }>();
  return async (ctx: Context, next) => {
    const client = ctx.ip;
    const current = () => {
      const entry = failures.get(client);
      return entry && entry.resetAt > Date.now() ? entry : undefined;
    };
    const seen = current();
    if (seen && seen.count >= limit && CREDENTIAL_HEADERS.some((name) => ctx.get(name))) {
      const retryAfter = Math.ceil((seen.resetAt - Date.now()) / 1000);
      return new HttpError(
        429,
        'too_many_failures',
        `too many failed authentications from this address: try again in ${retryAfter} s`,
        { retryAfter },
        { 'Retry-After': String(retryAfter) },
      ).respond(ctx);
    }
    await next();
    if (ctx.status !== 401) return;
    // Read again: other requests of the address may have failed while this one ran.
    let counted = current();
    if (!counted) {
      failures.delete(client); // an expired count, moved to the end of the map with its new one
      while (failures.size >= MAX_CLIENTS) failures.delete(failures.keys().next().value as string);
      counted = { count: 0, resetAt: Date.now() + WINDOW_MS };
      failures.set(client, counted);
    }
    counted.count++;
  };
}
