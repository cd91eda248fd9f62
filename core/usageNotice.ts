/**
 * Usage notices (and key-rotation notices) from a runtime to the control plane, signed like Stripe signs webhooks:
 * `X-Clawdbot-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, with the workspace named in
 * `X-Clawdbot-Workspace`. Shared by the runtime (which signs) and the control plane (which verifies).
 */
import { createHmac } from 'node:crypto';
import { secretEquals } from './secretEquals.ts';

export const NOTICE_SIGNATURE_HEADER = 'x-clawdbot-signature';
export const NOTICE_WORKSPACE_HEADER = 'x-clawdbot-workspace';
export const NOTICE_PATH = '/api/runtime/usage';
/** A customer rotated their key through the runtime: `{ workspaceId, hash, label }`, signed the same way. */
export const KEY_ROTATED_PATH = '/api/runtime/key-rotated';
const TOLERANCE_SECONDS = 300;

function mac(secret: string, timestamp: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
}

export function signNotice(secret: string, body: string, timestamp = Math.floor(Date.now() / 1000)): string {
  return `t=${timestamp},v1=${mac(secret, timestamp, body)}`;
}

/** Whether the header signs this body with this secret, within five minutes of now (constant-time compare). */
export function noticeSignatureValid(header: string, body: string, secret: string, now = Date.now()): boolean {
  const parts = Object.fromEntries(header.split(',').map((p) => p.trim().split('=', 2) as [string, string]));
  const timestamp = Number(parts.t);
  if (!Number.isInteger(timestamp) || Math.abs(now / 1000 - timestamp) > TOLERANCE_SECONDS || !parts.v1) return false;
  return secretEquals(parts.v1, mac(secret, timestamp, body));
}
