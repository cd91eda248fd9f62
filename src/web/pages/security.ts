/**
 * Headers for every customer page: a strict Content-Security-Policy whose only allowances are this response's nonce
 * (for its one inline style and script) and the page's own origin (for its event stream and forms), and no caching
 * or referrer (a page may show a key, and its URL holds the Checkout Session id).
 */
import { randomBytes } from 'node:crypto';
import type { Context, Next } from 'koa';

export interface PageState {
  /** The nonce of this response's inline <style> and <script>. */
  nonce: string;
}

export function contentSecurityPolicy(nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src 'nonce-${nonce}'`,
    "img-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

export async function pageSecurity(ctx: Context, next: Next): Promise<void> {
  const nonce = randomBytes(18).toString('base64');
  (ctx.state as PageState).nonce = nonce;
  ctx.set('Content-Security-Policy', contentSecurityPolicy(nonce));
  ctx.set('X-Content-Type-Options', 'nosniff');
  ctx.set('Referrer-Policy', 'no-referrer');
  ctx.set('Cache-Control', 'no-store');
  ctx.set('X-Frame-Options', 'DENY');
  await next();
}
