/**
 * CSRF protection for the customer pages' forms: a random value in an HttpOnly, SameSite=Lax cookie, and in each form
 * an HMAC of it under a key derived from SECRETS_KEY. Another site can neither read the cookie nor make the HMAC, and
 * a value planted in the cookie (from a sibling subdomain) is useless without its HMAC. A POST without the pair, or
 * with a wrong one, gets the plain 403 page.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context, Next } from 'koa';
import { readRawBody } from '../../../core/http/rawBody.ts';
import { html, type Html } from '../../html.ts';
import { sendForbidden } from './layout.ts';

export const CSRF_FIELD = '_csrf';

export interface CsrfOptions {
  secretsKey: Buffer;
  /** Production: the cookie is Secure and __Host- prefixed (bound to this host, never set by a subdomain). */
  production: boolean;
}

const cookieName = (production: boolean) => (production ? '__Host-csrf' : 'csrf');

function mac(secretsKey: Buffer, value: string): Buffer {
  const key = createHmac('sha256', secretsKey).update('csrf').digest();
  return createHmac('sha256', key).update(value).digest();
}

/** The token for this visitor's forms (setting their cookie on the first form they get). */
export function csrfToken(ctx: Context, options: CsrfOptions): string {
  const name = cookieName(options.production);
  let value = ctx.cookies.get(name);
  if (!value || !/^[A-Za-z0-9_-]{43}$/.test(value)) {
    value = randomBytes(32).toString('base64url');
    ctx.cookies.set(name, value, { httpOnly: true, sameSite: 'lax', secure: options.production, path: '/', overwrite: true });
  }
  return mac(options.secretsKey, value).toString('base64url');
}

/** The hidden field a form carries its token in. */
export function csrfField(ctx: Context, options: CsrfOptions): Html {
  return html`<input type="hidden" name="${CSRF_FIELD}" value="${csrfToken(ctx, options)}">`;
}

/** The form body of a POST (application/x-www-form-urlencoded, at most 16 KB), or null for anything else. */
export async function readForm(ctx: Context): Promise<URLSearchParams | null> {
  if (!ctx.is('application/x-www-form-urlencoded')) return null;
  return new URLSearchParams((await readRawBody(ctx.req, 16 * 1024)).toString('utf8'));
}

/**
 * Middleware for a form's POST route: reads the form into ctx.state.form and lets the request on only when its
 * token matches the visitor's cookie.
 */
export function requireCsrf(options: CsrfOptions) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const form = await readForm(ctx);
    const cookie = ctx.cookies.get(cookieName(options.production));
    const given = Buffer.from(form?.get(CSRF_FIELD) ?? '', 'base64url');
    const expected = cookie ? mac(options.secretsKey, cookie) : null;
    if (!form || !expected || given.length !== expected.length || !timingSafeEqual(given, expected)) return sendForbidden(ctx);
    (ctx.state as { form?: URLSearchParams }).form = form;
    await next();
  };
}
