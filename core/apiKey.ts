/**
 * Customer API keys: `claw_` + base62 of 32 random bytes. Only the SHA-256 hash is ever stored; a key carries
 * 256 bits of entropy, so a fast hash is enough and a slow one would only cost every request.
 * Shared by the control plane (which issues keys) and the runtime (which checks them).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { sha256Hex } from './hash.ts';

export const API_KEY_PREFIX = 'claw_';
const KEY_BYTES = 32;
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** 32 bytes need at most 43 base62 digits; keys are padded to exactly that so their length never varies. */
const BODY_LENGTH = 43;
const KEY_PATTERN = new RegExp(`^${API_KEY_PREFIX}[0-9A-Za-z]{${BODY_LENGTH}}$`);

export function toBase62(bytes: Uint8Array, length: number): string {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = '';
  while (n > 0n) {
    out = BASE62[Number(n % 62n)] + out;
    n /= 62n;
  }
  return out.padStart(length, '0');
}

export function generateApiKey(): string {
  return API_KEY_PREFIX + toBase62(randomBytes(KEY_BYTES), BODY_LENGTH);
}

export function isWellFormedApiKey(key: string): boolean {
  return KEY_PATTERN.test(key);
}

/** Hex SHA-256 of the key: what the control plane and the customer database hold. */
export function hashApiKey(key: string): string {
  return sha256Hex(key);
}

/**
 * A short, non-secret label for a key (for operators, emails and the customer's pages): prefix plus the first 6 and
 * the last 4 characters (10 of 43 base62 digits: over 190 bits stay unknown).
 */
export function apiKeyLabel(key: string): string {
  return key.slice(0, API_KEY_PREFIX.length + 6) + '…' + key.slice(-4);
}

/** The last four characters of the key a label names, or null for a label made before labels held them. */
export function keyEnding(label: string | null): string | null {
  return /…([0-9A-Za-z]{4})$/.exec(label ?? '')?.[1] ?? null;
}

/** Constant-time check of a presented key against a stored hash. */
export function apiKeyMatches(presented: string, storedHash: string): boolean {
  const a = Buffer.from(hashApiKey(presented), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The key from an `Authorization: Bearer claw_…` header, or undefined. */
export function bearerKey(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
  return match?.[1];
}
