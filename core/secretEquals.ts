/** Compares two secrets in constant time, whatever their lengths (both are hashed to equal-length digests). */
import { createHash, timingSafeEqual } from 'node:crypto';

export function secretEquals(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
