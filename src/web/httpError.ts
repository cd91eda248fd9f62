/** An error that becomes a JSON answer `{ error, reason }` with its status. */
import type { Context, Middleware } from 'koa';
import { logger } from '../logger.ts';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly reason: string,
    /** More fields for the JSON answer (say, when a limit resets), and headers such as Retry-After. */
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(reason);
  }

  /** The JSON answer: `{ error, reason, ...extra }` with its status and headers. */
  respond(ctx: Context): void {
    ctx.status = this.status;
    for (const [name, value] of Object.entries(this.headers)) ctx.set(name, value);
    ctx.body = { error: this.code, reason: this.reason, ...this.extra };
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
    if (err instanceof HttpError) return err.respond(ctx);
    log.error('request failed', { method: ctx.method, path: ctx.path, error: (err as Error).message });
    ctx.status = 500;
    ctx.body = { error: 'internal_error', reason: 'the request could not be completed; it has been logged' };
  }
};
