/**
 * Stripe's webhook signature, checked on the raw body: `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
 * "t.body">` (several v1 while a secret is being rolled). The timestamp must be within the tolerance either way: a
 * delivery dated in the future is as suspect as an old one. Every malformed header is an invalid signature.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { HttpError } from '../../core/http/httpError.ts';

export const STRIPE_TOLERANCE_SECONDS = 300;

/** Throws 400 invalid_signature unless the header signs `raw` with `secret`, dated within the tolerance of now. */
export function verifyStripeSignature(raw: Buffer, header: string, secret: string, nowSeconds = Date.now() / 1000): void {
  const fields = header.split(',').map((part) => {
    const at = part.indexOf('=');
    return at < 0 ? ['', ''] : [part.slice(0, at).trim(), part.slice(at + 1).trim()];
  });
  const timestamps = fields.filter(([name]) => name === 't').map(([, value]) => value!);
  const signatures = fields.filter(([name, value]) => name === 'v1' && /^[0-9a-f]{64}$/.test(value!)).map(([, value]) => Buffer.from(value!, 'hex'));
  const t = timestamps.length === 1 && /^\d{1,12}$/.test(timestamps[0]!) ? Number(timestamps[0]) : undefined;
  if (t === undefined || signatures.length === 0) {
    throw new HttpError(400, 'invalid_signature', 'the Stripe-Signature header is malformed: it needs one t=<timestamp> and a v1=<signature>');
  }
  const expected = createHmac('sha256', secret).update(`${t}.`).update(raw).digest();
  if (!signatures.some((signature) => timingSafeEqual(signature, expected))) {
    throw new HttpError(400, 'invalid_signature', 'the signature does not match the body');
  }
  if (Math.abs(nowSeconds - t) > STRIPE_TOLERANCE_SECONDS) {
    throw new HttpError(400, 'invalid_signature', `the signature's timestamp is more than ${STRIPE_TOLERANCE_SECONDS / 60} minutes from now`);
  }
}
