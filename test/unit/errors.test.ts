import { expect } from 'chai';
import { UnrecoverableError } from 'bullmq';
import {
  PermanentError,
  TransientError,
  backoffDelay,
  errorMessage,
  httpError,
  isTransientNetworkError,
  parseRetryAfter,
} from '../../src/errors.ts';

const TEN_MINUTES = 10 * 60_000;

describe('errors', () => {
  describe('parseRetryAfter', () => {
    const now = Date.parse('2025-01-01T12:00:00Z');

    it('reads seconds as milliseconds', () => {
      expect(parseRetryAfter('120', now)).to.equal(120_000);
      expect(parseRetryAfter('0', now)).to.equal(0);
      expect(parseRetryAfter('1.5', now)).to.equal(1_500);
    });

    it('clamps a negative number of seconds to 0', () => {
      expect(parseRetryAfter('-5', now)).to.equal(0);
    });

    it('reads an HTTP date as the time from now', () => {
      expect(parseRetryAfter('Wed, 01 Jan 2025 12:00:30 GMT', now)).to.equal(30_000);
      expect(parseRetryAfter(new Date(now + 90_000).toUTCString(), now)).to.equal(90_000);
    });

    it('reads an HTTP date in the past as 0', () => {
      expect(parseRetryAfter('Wed, 01 Jan 2025 11:00:00 GMT', now)).to.equal(0);
    });

    it('answers undefined for garbage, empty and missing values', () => {
      expect(parseRetryAfter('soon', now)).to.equal(undefined);
      expect(parseRetryAfter('', now)).to.equal(undefined);
      expect(parseRetryAfter(null, now)).to.equal(undefined);
      expect(parseRetryAfter(undefined, now)).to.equal(undefined);
    });
  });

  describe('httpError', () => {
    for (const status of [429, 503, 500, 408, 423, 502, 504]) {
      it(`makes HTTP ${status} a TransientError`, () => {
        const err = httpError('Stripe', status, '7');
        expect(err).to.be.instanceOf(TransientError);
        expect(err).not.to.be.instanceOf(UnrecoverableError);
        expect(err.name).to.equal('TransientError');
        expect(err.message).to.equal(`Stripe answered HTTP ${status}`);
        expect((err as TransientError).retryAfterMs).to.equal(7_000);
      });
    }

    it('leaves retryAfterMs undefined without a Retry-After', () => {
      const err = httpError('Slack', 503) as TransientError;
      expect(err).to.be.instanceOf(TransientError);
      expect(err.retryAfterMs).to.equal(undefined);
      expect((httpError('Slack', 429, null) as TransientError).retryAfterMs).to.equal(undefined);
    });

    it('reads an HTTP-date Retry-After', () => {
      const at = new Date(Date.now() + 60_000).toUTCString();
      const err = httpError('Slack', 429, at) as TransientError;
      // toUTCString drops the milliseconds, so allow a second either way.
      expect(err.retryAfterMs).to.be.within(58_000, 61_000);
    });

    for (const status of [400, 401, 403, 404, 409, 422]) {
      it(`makes HTTP ${status} a PermanentError (an UnrecoverableError for BullMQ)`, () => {
        const err = httpError('Stripe', status, '7');
        expect(err).to.be.instanceOf(PermanentError);
        expect(err).to.be.instanceOf(UnrecoverableError);
        expect(err).not.to.be.instanceOf(TransientError);
        expect(err.name).to.equal('PermanentError');
        expect(err.message).to.equal(`Stripe answered HTTP ${status}`);
      });
    }
  });

  describe('isTransientNetworkError', () => {
    const withCode = (code: string) => Object.assign(new Error(`connect ${code}`), { code });

    it('is true for a transient code on the error', () => {
      for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'UND_ERR_SOCKET']) {
        expect(isTransientNetworkError(withCode(code)), code).to.equal(true);
      }
    });

    it("is true for a transient code on the error's cause (as fetch reports it)", () => {
      const err = new TypeError('fetch failed', { cause: withCode('ECONNREFUSED') });
      expect(isTransientNetworkError(err)).to.equal(true);
    });

    it('is true for TimeoutError and AbortError', () => {
      const timeout = new Error('timed out');
      timeout.name = 'TimeoutError';
      expect(isTransientNetworkError(timeout)).to.equal(true);
      const abort = new Error('aborted');
      abort.name = 'AbortError';
      expect(isTransientNetworkError(abort)).to.equal(true);
    });

    it('is true for the error AbortSignal.timeout raises', async () => {
      const signal = AbortSignal.timeout(1);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(isTransientNetworkError(signal.reason)).to.equal(true);
    });

    it('is false for a plain error, other codes, and non-errors', () => {
      expect(isTransientNetworkError(new Error('boom'))).to.equal(false);
      expect(isTransientNetworkError(withCode('ENOENT'))).to.equal(false);
      expect(isTransientNetworkError(new Error('x', { cause: withCode('EACCES') }))).to.equal(false);
      expect(isTransientNetworkError(new Error('x', { cause: 'ECONNREFUSED' }))).to.equal(false);
      expect(isTransientNetworkError({ code: 'ECONNREFUSED' })).to.equal(false);
      expect(isTransientNetworkError('ECONNREFUSED')).to.equal(false);
      expect(isTransientNetworkError(undefined)).to.equal(false);
    });
  });

  describe('backoffDelay', () => {
    const fixed = (value: number) => () => value;

    it('grows exponentially with the attempts made', () => {
      // With random = 1 the delay is the ceiling: base * 2^(attempts - 1).
      expect([1, 2, 3, 4, 5].map((n) => backoffDelay(n, 1_000, undefined, fixed(1)))).to.deep.equal([
        1_000, 2_000, 4_000, 8_000, 16_000,
      ]);
      expect([1, 2, 3].map((n) => backoffDelay(n, 1_000, undefined, fixed(0)))).to.deep.equal([500, 1_000, 2_000]);
    });

    it('treats 0 attempts like the first', () => {
      expect(backoffDelay(0, 1_000, undefined, fixed(1))).to.equal(1_000);
    });

    it('stays within [ceiling / 2, ceiling] and follows the random value', () => {
      expect(backoffDelay(3, 1_000, undefined, fixed(0))).to.equal(2_000);
      expect(backoffDelay(3, 1_000, undefined, fixed(0.5))).to.equal(3_000);
      expect(backoffDelay(3, 1_000, undefined, fixed(0.999999))).to.equal(4_000);
      for (let i = 0; i < 200; i++) {
        const delay = backoffDelay(4, 1_000);
        expect(delay).to.be.within(4_000, 8_000);
      }
    });

    it('is capped at 10 minutes', () => {
      expect(backoffDelay(30, 1_000, undefined, fixed(1))).to.equal(TEN_MINUTES);
      expect(backoffDelay(30, 1_000, undefined, fixed(0))).to.equal(TEN_MINUTES / 2);
      expect(backoffDelay(100, 60_000, undefined, fixed(1))).to.equal(TEN_MINUTES);
      expect(backoffDelay(2_000, 1_000, undefined, fixed(1))).to.equal(TEN_MINUTES);
    });

    it("is never shorter than a TransientError's retryAfterMs", () => {
      expect(backoffDelay(1, 1_000, new TransientError('rate limited', 30_000), fixed(1))).to.equal(30_000);
      // Even past the 10-minute cap: the server said when to come back.
      expect(backoffDelay(1, 1_000, new TransientError('rate limited', 3_600_000), fixed(1))).to.equal(3_600_000);
    });

    it('keeps the jittered delay when it is longer than retryAfterMs', () => {
      expect(backoffDelay(5, 1_000, new TransientError('busy', 100), fixed(1))).to.equal(16_000);
      expect(backoffDelay(5, 1_000, new TransientError('busy', 0), fixed(0))).to.equal(8_000);
    });

    it('ignores retryAfterMs-like fields on other errors', () => {
      const err = Object.assign(new Error('x'), { retryAfterMs: 60_000 });
      expect(backoffDelay(1, 1_000, err, fixed(1))).to.equal(1_000);
    });
  });

  describe('errorMessage', () => {
    it('is the message of an Error and the string of anything else', () => {
      expect(errorMessage(new Error('boom'))).to.equal('boom');
      expect(errorMessage('plain')).to.equal('plain');
      expect(errorMessage(42)).to.equal('42');
    });
  });
});
