import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.ts';
import { createPool, type Db } from '../../src/db/pool.ts';
import { quoteIdent } from '../../core/postgres.ts';
import { SecretStore, open, seal, type Sealed } from '../../src/secrets.ts';

const ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

describe('secrets', () => {
  const key = randomBytes(32);

  describe('seal / open', () => {
    const copy = (s: Sealed): Sealed => ({ ciphertext: Buffer.from(s.ciphertext), iv: Buffer.from(s.iv), tag: Buffer.from(s.tag) });

    it('round-trips a value, including empty and non-ASCII ones', () => {
      for (const plaintext of ['postgres://app:hunter2@db/app', '', 'ünïcødé ✓ 🔑', 'x'.repeat(10_000)]) {
        const sealed = seal(key, plaintext, 'instance:1/database_url');
        expect(open(key, sealed, 'instance:1/database_url')).to.equal(plaintext);
      }
    });

    it('uses a 12-byte IV and a 16-byte tag, and does not keep the plaintext', () => {
      const plaintext = 'sk_live_plaintext_value';
      const sealed = seal(key, plaintext, 'o/n');
      expect(sealed.iv).to.have.length(12);
      expect(sealed.tag).to.have.length(16);
      expect(sealed.ciphertext).to.have.length(Buffer.byteLength(plaintext));
      expect(sealed.ciphertext.includes(Buffer.from(plaintext))).to.equal(false);
    });

    it('gives a different IV and ciphertext each time for the same plaintext', () => {
      const a = seal(key, 'same value', 'o/n');
      const b = seal(key, 'same value', 'o/n');
      expect(a.iv.equals(b.iv)).to.equal(false);
      expect(a.ciphertext.equals(b.ciphertext)).to.equal(false);
      expect(open(key, a, 'o/n')).to.equal(open(key, b, 'o/n'));
    });

    it('fails to open under a wrong key', () => {
      const sealed = seal(key, 'value', 'o/n');
      expect(() => open(randomBytes(32), sealed, 'o/n')).to.throw();
    });

    it('fails to open a tampered ciphertext, tag or IV', () => {
      const sealed = seal(key, 'a value worth protecting', 'o/n');
      const flip = (buf: Buffer, at = 0) => {
        buf[at] = buf[at]! ^ 0x01;
      };

      const badCiphertext = copy(sealed);
      flip(badCiphertext.ciphertext, 3);
      expect(() => open(key, badCiphertext, 'o/n')).to.throw();

      const badTag = copy(sealed);
      flip(badTag.tag, 15);
      expect(() => open(key, badTag, 'o/n')).to.throw();

      const badIv = copy(sealed);
      flip(badIv.iv);
      expect(() => open(key, badIv, 'o/n')).to.throw();

      const truncated = { ...copy(sealed), ciphertext: sealed.ciphertext.subarray(0, -1) };
      expect(() => open(key, truncated, 'o/n')).to.throw();

      // The untouched value still opens.
      expect(open(key, sealed, 'o/n')).to.equal('a value worth protecting');
    });

    it('fails to open under a different context (owner or name)', () => {
      const sealed = seal(key, 'value', 'instance:1/database_url');
      expect(() => open(key, sealed, 'instance:2/database_url')).to.throw();
      expect(() => open(key, sealed, 'instance:1/api_key')).to.throw();
      expect(() => open(key, sealed, '')).to.throw();
    });
  });

  describe('SecretStore (local PostgreSQL)', function () {
    const dbName = `unit_secrets_${randomBytes(6).toString('hex')}`;
    let db: Db;
    let store: SecretStore;

    async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
      const client = new pg.Client({ connectionString: ADMIN_URL });
      await client.connect();
      try {
        return await fn(client);
      } finally {
        await client.end();
      }
    }

    before(async () => {
      await admin((c) => c.query(`CREATE DATABASE ${quoteIdent(dbName)}`));
      db = createPool(`postgres://postgres@127.0.0.1:5432/${dbName}`);
      const ran = await migrate(db);
      expect(ran).to.include('001_control_plane.sql');
      store = new SecretStore(db, key);
    });

    after(async () => {
      await db?.end();
      await admin((c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(dbName)} WITH (FORCE)`));
    });

    it('answers null for a secret that is not there', async () => {
      expect(await store.get('nobody', 'nothing')).to.equal(null);
    });

    it('puts and gets a secret, and put replaces it', async () => {
      await store.put('instance:put', 'database_url', 'postgres://a:first@h/db');
      expect(await store.get('instance:put', 'database_url')).to.equal('postgres://a:first@h/db');

      await store.put('instance:put', 'database_url', 'postgres://a:second@h/db');
      expect(await store.get('instance:put', 'database_url')).to.equal('postgres://a:second@h/db');

      const { rows } = await db.query('SELECT count(*)::int AS n FROM secrets WHERE owner = $1', ['instance:put']);
      expect(rows[0].n).to.equal(1);
    });

    it('keeps secrets of different owners and names apart', async () => {
      await store.put('instance:a', 'token', 'token-a');
      await store.put('instance:b', 'token', 'token-b');
      await store.put('instance:a', 'other', 'other-a');
      expect(await store.get('instance:a', 'token')).to.equal('token-a');
      expect(await store.get('instance:b', 'token')).to.equal('token-b');
      expect(await store.get('instance:a', 'other')).to.equal('other-a');
    });

    it('does not store the plaintext', async () => {
      const plaintext = 'sk_live_plaintext_must_not_be_stored_' + randomBytes(8).toString('hex');
      await store.put('instance:plain', 'stripe', plaintext);

      const { rows } = await db.query<Sealed>('SELECT ciphertext, iv, tag FROM secrets WHERE owner = $1 AND name = $2', [
        'instance:plain',
        'stripe',
      ]);
      expect(rows).to.have.length(1);
      const row = rows[0]!;
      expect(Buffer.isBuffer(row.ciphertext)).to.equal(true);
      for (const column of [row.ciphertext, row.iv, row.tag]) {
        expect(column.includes(Buffer.from(plaintext))).to.equal(false);
      }
      // Nor anywhere in the row's text form.
      const text = await db.query<{ t: string }>('SELECT s::text AS t FROM secrets s WHERE owner = $1', ['instance:plain']);
      expect(text.rows[0]!.t).not.to.include(plaintext);
      expect(text.rows[0]!.t).not.to.include(Buffer.from(plaintext).toString('hex'));
      // And it opens with the store's key.
      expect(open(key, row, 'instance:plain/stripe')).to.equal(plaintext);
    });

    it('cannot read a row moved to another owner, nor with another key', async () => {
      await store.put('instance:from', 'token', 'moved-value');
      await db.query(`UPDATE secrets SET owner = 'instance:to' WHERE owner = 'instance:from'`);
      let err: unknown;
      await store.get('instance:to', 'token').catch((e: unknown) => (err = e));
      expect(err).to.be.instanceOf(Error);

      await store.put('instance:keyed', 'token', 'keyed-value');
      err = undefined;
      await new SecretStore(db, randomBytes(32)).get('instance:keyed', 'token').catch((e: unknown) => (err = e));
      expect(err).to.be.instanceOf(Error);
    });

    it('putIfAbsent stores a value once and keeps the first one', async () => {
      expect(await store.putIfAbsent('instance:pia', 'api_key', 'first')).to.equal('first');
      expect(await store.putIfAbsent('instance:pia', 'api_key', 'second')).to.equal('first');
      expect(await store.get('instance:pia', 'api_key')).to.equal('first');
    });

    it('putIfAbsent returns the same stored value to 10 concurrent callers', async () => {
      const values = Array.from({ length: 10 }, (_, i) => `candidate-${i}`);
      const results = await Promise.all(values.map((v) => store.putIfAbsent('instance:race', 'api_key', v)));

      expect(new Set(results).size).to.equal(1);
      expect(values).to.include(results[0]);
      expect(await store.get('instance:race', 'api_key')).to.equal(results[0]);
      const { rows } = await db.query('SELECT count(*)::int AS n FROM secrets WHERE owner = $1', ['instance:race']);
      expect(rows[0].n).to.equal(1);
    });

    it('deletes a secret, and deleting a missing one is not an error', async () => {
      await store.put('instance:del', 'token', 'to-delete');
      await store.put('instance:del', 'keep', 'kept');
      await store.delete('instance:del', 'token');
      expect(await store.get('instance:del', 'token')).to.equal(null);
      expect(await store.get('instance:del', 'keep')).to.equal('kept');
      await store.delete('instance:del', 'token');
      await store.delete('nobody', 'nothing');
      // After a delete, putIfAbsent stores again.
      expect(await store.putIfAbsent('instance:del', 'token', 'new')).to.equal('new');
    });
  });
});
