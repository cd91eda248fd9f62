/**
 * The welcome page's link for a customer without a Checkout Session (a comped one) or in an email: the instance id
 * signed with a key derived from SECRETS_KEY. Nothing is stored, and the page it opens reveals the key only once.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { UUID } from '../db/instances.ts';

function signature(secretsKey: Buffer, instanceId: string): Buffer {
  const key = createHmac('sha256', secretsKey).update('welcome-link').digest();
  return createHmac('sha256', key).update(instanceId).digest();
}

export function welcomeToken(secretsKey: Buffer, instanceId: string): string {
  return `${instanceId}.${signature(secretsKey, instanceId).toString('base64url')}`;
}

/** The instance a token names, or null when it is malformed or not signed by us. */
export function readWelcomeToken(secretsKey: Buffer, token: string): string | null {
  const [instanceId, mac, ...rest] = token.split('.');
  if (rest.length || !instanceId || !mac || !UUID.test(instanceId)) return null;
  const given = Buffer.from(mac, 'base64url');
  const expected = signature(secretsKey, instanceId);
  return given.length === expected.length && timingSafeEqual(given, expected) ? instanceId : null;
}

export function welcomeUrl(publicUrl: string, secretsKey: Buffer, instanceId: string): string {
  return `${publicUrl}/welcome?token=${welcomeToken(secretsKey, instanceId)}`;
}
