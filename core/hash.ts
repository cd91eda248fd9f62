/** Hex SHA-256 of a text, the one digest the project stores (API keys, workspace files, webhook tokens). */
import { createHash } from 'node:crypto';

export function sha256Hex(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}
