/** Operator authentication: a bearer token for the admin API, HTTP basic auth for Bull Board. Constant-time throughout. */
import type { Middleware } from 'koa';
import { secretEquals } from '../../core/secretEquals.ts';
import { HttpError } from '../../core/http/httpError.ts';


export function requireAdminToken(token: string): Middleware {
  return requireBearerToken([token], 'send Authorization: Bearer <ADMIN_TOKEN>');
}

/** A bearer token that is any one of `tokens`: each is compared every time, so the answer time tells none apart. */
export function requireBearerToken(tokens: string[], hint: string): Middleware {
  return async (ctx, next) => {
    const match = /^Bearer\s+(\S+)$/i.exec(ctx.get('authorization'));
    if (!match || !tokens.map((token) => secretEquals(match[1]!, token)).some(Boolean)) {
      throw new HttpError(401, 'unauthorized', hint);
    }
    await next();
  };
}

export function requireBasicAuth(user: string, password: string, realm: string): Middleware {
  return async (ctx, next) => {
    const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(ctx.get('authorization'));
    const decoded = match ? Buffer.from(match[1]!, 'base64').toString('utf8') : '';
    const separator = decoded.indexOf(':');
    const ok =
      separator > 0 &&
      // Both checks always run, so the answer time does not tell which part was wrong.
      [secretEquals(decoded.slice(0, separator), user), secretEquals(decoded.slice(separator + 1), password)].every(Boolean);
    if (!ok) {
      ctx.set('WWW-Authenticate', `Basic realm="${realm}", charset="UTF-8"`);
      throw new HttpError(401, 'unauthorized', 'operator credentials required');
    }
    await next();
  };
}
