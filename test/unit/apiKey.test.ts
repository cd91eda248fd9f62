import { expect } from 'chai';
import {
  API_KEY_PREFIX,
  apiKeyLabel,
  keyEnding,
  apiKeyMatches,
  bearerKey,
  generateApiKey,
  hashApiKey,
  isWellFormedApiKey,
  toBase62,
} from '../../core/apiKey.ts';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const fromBase62 = (s: string): bigint => [...s].reduce((n, c) => n * 62n + BigInt(BASE62.indexOf(c)), 0n);

describe('apiKey', () => {
  describe('generateApiKey', () => {
    it('is claw_ followed by 43 base62 characters', () => {
      const key = generateApiKey();
      expect(key).to.match(/^claw_[0-9A-Za-z]{43}$/);
      expect(key.startsWith(API_KEY_PREFIX)).to.equal(true);
      expect(isWellFormedApiKey(key)).to.equal(true);
    });

    it('1000 keys are all distinct and well-formed', () => {
      const keys = Array.from({ length: 1000 }, generateApiKey);
      expect(new Set(keys).size).to.equal(1000);
      for (const key of keys) {
        expect(key).to.have.length(API_KEY_PREFIX.length + 43);
        expect(isWellFormedApiKey(key), key).to.equal(true);
      }
    });
  });

  describe('isWellFormedApiKey', () => {
    it('rejects wrong prefix, length or alphabet', () => {
      const body = 'A'.repeat(43);
      expect(isWellFormedApiKey(`claw_${body}`)).to.equal(true);
      for (const bad of [
        '',
        body,
        `CLAW_${body}`,
        `claw_${body.slice(1)}`,
        `claw_${body}A`,
        `claw_${body.slice(1)}-`,
        `claw_${body.slice(1)}_`,
        ` claw_${body}`,
        `claw_${body}\n`,
      ]) {
        expect(isWellFormedApiKey(bad), JSON.stringify(bad)).to.equal(false);
      }
    });
  });

  describe('hashApiKey / apiKeyMatches', () => {
    it('hash is 64 lowercase hex and stable', () => {
      const key = generateApiKey();
      const hash = hashApiKey(key);
      expect(hash).to.match(/^[0-9a-f]{64}$/);
      expect(hashApiKey(key)).to.equal(hash);
      expect(hashApiKey(generateApiKey())).to.not.equal(hash);
    });

    it('is the SHA-256 of the key', () => {
      expect(hashApiKey('abc')).to.equal('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    });

    it('matches the right key and not a wrong one', () => {
      const key = generateApiKey();
      const stored = hashApiKey(key);
      expect(apiKeyMatches(key, stored)).to.equal(true);
      expect(apiKeyMatches(generateApiKey(), stored)).to.equal(false);
      expect(apiKeyMatches(key.slice(0, -1), stored)).to.equal(false);
      expect(apiKeyMatches('', stored)).to.equal(false);
    });

    it('returns false (does not throw) for a stored hash of the wrong length or not hex', () => {
      const key = generateApiKey();
      const stored = hashApiKey(key);
      expect(apiKeyMatches(key, stored.slice(0, 62))).to.equal(false);
      expect(apiKeyMatches(key, stored + '00')).to.equal(false);
      expect(apiKeyMatches(key, '')).to.equal(false);
      expect(apiKeyMatches(key, 'z'.repeat(64))).to.equal(false);
    });
  });

  describe('apiKeyLabel', () => {
    it('shows only the prefix, the first 6 and the last 4 characters', () => {
      const key = generateApiKey();
      expect(apiKeyLabel(key)).to.equal(key.slice(0, 11) + '…' + key.slice(-4));
    });

    it('gives the last four characters of a key back from its label', () => {
      const key = generateApiKey();
      expect(keyEnding(apiKeyLabel(key))).to.equal(key.slice(-4));
      expect(keyEnding('claw_abcdef…')).to.equal(null);
      expect(keyEnding(null)).to.equal(null);
    });
  });

  describe('bearerKey', () => {
    it('extracts the token from a Bearer header', () => {
      expect(bearerKey('Bearer claw_abc')).to.equal('claw_abc');
      expect(bearerKey('bearer claw_abc')).to.equal('claw_abc');
      expect(bearerKey('BEARER claw_abc')).to.equal('claw_abc');
      expect(bearerKey('Bearer    claw_abc')).to.equal('claw_abc');
      expect(bearerKey('Bearer\tclaw_abc')).to.equal('claw_abc');
      expect(bearerKey('  Bearer claw_abc  ')).to.equal('claw_abc');
    });

    it('returns undefined for missing, empty or malformed headers', () => {
      for (const header of [
        undefined,
        '',
        '   ',
        'Bearer',
        'Bearer ',
        'Bearerclaw_abc',
        'Basic dXNlcjpwYXNz',
        'Token claw_abc',
        'Bearer claw_abc extra',
        'Bearer claw_abc\nX-Evil: 1',
        'claw_abc',
      ]) {
        expect(bearerKey(header), JSON.stringify(header)).to.equal(undefined);
      }
    });
  });

  describe('toBase62', () => {
    it('encodes all-zero bytes as zeros padded to the length', () => {
      expect(toBase62(new Uint8Array(32), 43)).to.equal('0'.repeat(43));
      expect(toBase62(new Uint8Array(0), 3)).to.equal('000');
    });

    it('encodes small known values', () => {
      expect(toBase62(Uint8Array.of(1), 1)).to.equal('1');
      expect(toBase62(Uint8Array.of(61), 1)).to.equal('z');
      expect(toBase62(Uint8Array.of(62), 1)).to.equal('10');
      expect(toBase62(Uint8Array.of(0xff), 4)).to.equal('0047'); // 255 = 4·62 + 7
      expect(toBase62(Uint8Array.of(1, 0), 2)).to.equal('48'); // 256 = 4·62 + 8
      expect(toBase62(Uint8Array.of(0, 0, 10), 1)).to.equal('A'); // leading zero bytes do not count
    });

    it('encodes 32 bytes of 0xff (2^256 − 1) in exactly 43 digits', () => {
      const encoded = toBase62(new Uint8Array(32).fill(0xff), 43);
      expect(encoded).to.have.length(43);
      expect(encoded).to.not.match(/^0/);
      expect(fromBase62(encoded)).to.equal((1n << 256n) - 1n);
    });

    it('round-trips an arbitrary 32-byte value', () => {
      const bytes = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff);
      const n = bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
      expect(fromBase62(toBase62(bytes, 43))).to.equal(n);
    });
  });
});
