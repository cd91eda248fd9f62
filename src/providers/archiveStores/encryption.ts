/**
 * Client-side encryption of stored archives (the S3 store's objects), streamed: AES-256-GCM under a key derived from
 * the control plane's SECRETS_KEY, bound to the object's name (so an object moved under another name does not open).
 * Layout: the magic `CLAWENC1`, a 12-byte IV, the ciphertext, the 16-byte GCM tag. Reading checks the tag at the end
 * and fails loudly when anything was altered.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, type DecipherGCM } from 'node:crypto';
import { Transform } from 'node:stream';

const MAGIC = Buffer.from('CLAWENC1');
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = MAGIC.length + IV_BYTES;

/** The archive key: HKDF-SHA256 of the control plane's key, for this purpose only (never the secret store's key itself). */
export function archiveKey(secretsKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', secretsKey, Buffer.alloc(0), 'clawdbot/archive-store/v1', 32));
}

/** Encrypts what goes through it for the object `name`. */
export function encryptingStream(key: Buffer, name: string): Transform {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(name, 'utf8'));
  let started = false;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      const out = cipher.update(chunk);
      if (!started) {
        started = true;
        done(null, Buffer.concat([MAGIC, iv, out]));
      } else {
        done(null, out);
      }
    },
    flush(done) {
      const head = started ? [] : [MAGIC, iv];
      done(null, Buffer.concat([...head, cipher.final(), cipher.getAuthTag()]));
    },
  });
}

/** Decrypts an object written by encryptingStream under the same name; errors at the end if the tag does not match. */
export function decryptingStream(key: Buffer, name: string): Transform {
  let pending = Buffer.alloc(0);
  let decipher: DecipherGCM | undefined;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      pending = Buffer.concat([pending, chunk]);
      if (!decipher) {
        if (pending.length < HEADER_BYTES) return done();
        if (!pending.subarray(0, MAGIC.length).equals(MAGIC)) return done(new Error(`archive ${name} is not an encrypted archive`));
        decipher = createDecipheriv('aes-256-gcm', key, pending.subarray(MAGIC.length, HEADER_BYTES));
        decipher.setAAD(Buffer.from(name, 'utf8'));
        pending = pending.subarray(HEADER_BYTES);
      }
      // The last 16 bytes may be the tag: held back until the end.
      if (pending.length <= TAG_BYTES) return done();
      const body = pending.subarray(0, pending.length - TAG_BYTES);
      pending = Buffer.from(pending.subarray(pending.length - TAG_BYTES));
      done(null, decipher.update(body));
    },
    flush(done) {
      if (!decipher || pending.length !== TAG_BYTES) return done(new Error(`archive ${name} is truncated`));
      try {
        decipher.setAuthTag(pending);
        done(null, decipher.final());
      } catch {
        done(new Error(`archive ${name} failed its integrity check (altered or not ours): authentication tag mismatch`));
      }
    },
  });
}
