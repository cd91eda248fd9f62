/** An error that becomes a JSON answer `{ error, reason }` with its status. */
import { STATUS_CODES } from 'node:http';
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

/**
 * Every error answers `{ error, reason }` (the control plane's and the runtime's alike): an HttpError as it says,
 * another 4xx (a Koa or router error) with its message, anything else as a 500 whose details go to the log only.
 */
export const jsonErrors: Middleware = async (ctx, next) => {
  try {
    await next();
  } catch (err) {
    if (err instanceof HttpError) return err.respond(ctx);
    if (isInputRefusedByPostgres(err)) {
      log.warn('request refused by Postgres as input', { method: ctx.method, path: ctx.path, code: (err as { code: string }).code });
      return new HttpError(400, 'invalid_input', 'the request holds a value that cannot be stored or looked up').respond(ctx);
    }
    const status = (err as { status?: unknown }).status;
    const exposed = typeof status === 'number' && status >= 400 && status < 500;
    if (!exposed) log.error('request failed', { method: ctx.method, path: ctx.path, error: (err as Error).message });
    ctx.status = exposed ? status : 500;
    ctx.body = { error: errorCode(ctx.status), reason: exposed ? (err as Error).message : 'internal error; it has been logged' };
    return;
  }
  if (ctx.status >= 400 && ctx.body == null) {
    const status = ctx.status;
    ctx.body = { error: errorCode(status), reason: status === 404 ? `no route for ${ctx.method} ${ctx.path}` : (STATUS_CODES[status] ?? 'error') };
    ctx.status = status; // assigning a body resets a status nobody set explicitly (Koa's default 404) to 200
  }
};

/**
 * A statement refused for the data the request carried (SQLSTATE class 22, "data exception": a NUL character, a
 * number or time out of range, text that is no uuid; 54001: nested too deep). A failed statement stored nothing.
 */
function isInputRefusedByPostgres(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^(22[0-9A-Z]{3}|54001)$/.test(code) && (err as { severity?: unknown }).severity !== undefined;
}

/**
 * Refuses a path that does not decode, or decodes to control characters (`%00`): no route or statement is ever
 * handed one.
 */
export const refuseUnreadablePaths: Middleware = async (ctx, next) => {
  let decoded: string;
  try {
    decoded = decodeURIComponent(ctx.path);
  } catch {
    throw new HttpError(400, 'invalid_path', 'the path is not valid percent-encoded UTF-8');
  }
  if (/[\u0000-\u001f\u007f]/.test(decoded)) throw new HttpError(400, 'invalid_path', 'the path holds control characters');
  await next();
};

/** 404 -> 'not_found', 405 -> 'method_not_allowed', ... */
function errorCode(status: number): string {
  return (STATUS_CODES[status] ?? 'error').toLowerCase().replace(/[^a-z]+/g, '_');
}
