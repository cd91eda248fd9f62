/**
 * A signature dated like Stripe's: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<content>")>`, valid within
 * five minutes of now either way. Runtimes sign their notices to the control plane with it, and integrations sign
 * inbound webhooks (the content then names the delivery too), so a captured request cannot be replayed later.
 */
import { createHmac } from 'node:crypto';
import { secretEquals } from './secretEquals.ts';

export const SIGNATURE_TOLERANCE_SECONDS = 300;

function mac(secret: string, timestamp: number, content: string | Buffer): string {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(content).digest('hex');
}

export function signTimed(secret: string, content: string | Buffer, timestamp = Math.floor(Date.now() / 1000)): string {
  return `t=${timestamp},v1=${mac(secret, timestamp, content)}`;
}

/** Whether the header signs this content with this secret, within five minutes of now (constant-time compare). */
export function timedSignatureValid(header: string, content: string | Buffer, secret: string, now = Date.now()): boolean {
  const parts = Object.fromEntries(header.split(',').map((p) => p.trim().split('=', 2) as [string, string]));
  const timestamp = /^\d{1,12}$/.test(parts.t ?? '') ? Number(parts.t) : NaN;
  if (!Number.isInteger(timestamp) || Math.abs(now / 1000 - timestamp) > SIGNATURE_TOLERANCE_SECONDS || !parts.v1) return false;
  return secretEquals(parts.v1, mac(secret, timestamp, content));
}
