/**
 * How a step's failure is classified. Transient failures (5xx, 408, 423, 429, timeouts, refused connections) retry
 * with backoff, honouring Retry-After; permanent ones end the step at once (BullMQ's UnrecoverableError).
 */
import { UnrecoverableError } from 'bullmq';

export class PermanentError extends UnrecoverableError {
  constructor(message: string) {
    super(message);
    this.name = 'PermanentError';
  }
}

export class TransientError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'TransientError';
  }
}

/**
 * The provider said "too many requests" (429). Not a failure of the step: the step's whole queue pauses until the
 * provider's window resets (every worker together, as a global limiter), and the job runs again without losing an
 * attempt.
 */
export class RateLimitedError extends TransientError {
  override readonly retryAfterMs: number;

  constructor(message: string, retryAfterMs: number) {
    // At least a quarter second: a Retry-After of 0 (or in the past) must still pause, and Redis refuses 0.
    const wait = Math.max(250, Number.isFinite(retryAfterMs) ? retryAfterMs : 1_000);
    super(message, wait);
    this.retryAfterMs = wait;
    this.name = 'RateLimitedError';
  }
}

const TRANSIENT_STATUS = new Set([408, 423, 425, 429]);
const TRANSIENT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'UND_ERR_SOCKET']);

export function isTransientStatus(status: number): boolean {
  return TRANSIENT_STATUS.has(status) || status >= 500;
}

/** Retry-After as seconds or an HTTP date, in milliseconds from now. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** An HTTP answer that is not 2xx, as the right kind of error. */
export function httpError(what: string, status: number, retryAfter?: string | null): Error {
  const message = `${what} answered HTTP ${status}`;
  return isTransientStatus(status) ? new TransientError(message, parseRetryAfter(retryAfter)) : new PermanentError(message);
}

/** Network-level failures (refused, reset, timed out) are transient. */
export function isTransientNetworkError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return true;
  const code = (err as { code?: string }).code ?? (err.cause as { code?: string } | undefined)?.code;
  return code !== undefined && TRANSIENT_CODES.has(code);
}

/** Exponential backoff with full jitter, never shorter than a Retry-After the failure carried. */
export function backoffDelay(attemptsMade: number, baseMs: number, err?: Error, random = Math.random): number {
  const ceiling = Math.min(baseMs * 2 ** Math.max(0, attemptsMade - 1), 10 * 60_000);
  const jittered = Math.round(ceiling / 2 + random() * (ceiling / 2));
  const retryAfter = err instanceof TransientError ? err.retryAfterMs : undefined;
  return retryAfter !== undefined ? Math.max(retryAfter, jittered) : jittered;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
