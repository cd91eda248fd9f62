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

/** An account of HTTP basic auth; `readOnly` ones may look but not act (Bull Board's viewers). */
export interface BasicAccount {
  user: string;
  password: string;
  readOnly?: boolean;
}

/**
 * HTTP basic auth against any of `accounts`: the one that matched is `ctx.state.account` for what comes next. Every
 * account's user and password are compared every time, so the answer time tells neither which account nor which part
 * was wrong.
 */
export function requireBasicAuth(accounts: BasicAccount[], realm: string): Middleware {
  return async (ctx, next) => {
    const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(ctx.get('authorization'));
    const decoded = match ? Buffer.from(match[1]!, 'base64').toString('utf8') : '';
    const separator = decoded.indexOf(':');
    const user = separator > 0 ? decoded.slice(0, separator) : '';
    const password = separator > 0 ? decoded.slice(separator + 1) : '';
    const matches = accounts.map((account) => [secretEquals(user, account.user), secretEquals(password, account.password)].every(Boolean));
    const account = separator > 0 ? accounts[matches.indexOf(true)] : undefined;
    if (!account) {
      ctx.set('WWW-Authenticate', `Basic realm="${realm}", charset="UTF-8"`);
      throw new HttpError(401, 'unauthorized', 'operator credentials required');
    }
    ctx.state.account = account;
    await next();
  };
}
