/** An error that becomes a JSON answer `{ error, reason }` with its status. */
import type { Middleware } from 'koa';
import { logger } from '../logger.ts';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly reason: string,
  ) {
    super(reason);
  }
}

const log = logger('web');

export const jsonErrors: Middleware = async (ctx, next) => {
  try {
    await next();
    if (ctx.status === 404 && ctx.body === undefined) {
      ctx.status = 404;
      ctx.body = { error: 'not_found', reason: `no route for ${ctx.method} ${ctx.path}` };
    }
  } catch (err) {
    if (err instanceof HttpError) {
      ctx.status = err.status;
      ctx.body = { error: err.code, reason: err.reason };
      return;
    }
    log.error('request failed', { method: ctx.method, path: ctx.path, error: (err as Error).message });
    ctx.status = 500;
    ctx.body = { error: 'internal_error', reason: 'the request could not be completed; it has been logged' };
  }
};
