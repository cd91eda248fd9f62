/**
 * The archive stores against what they store in: the local directory, and the S3 store through the real
 * @aws-sdk/client-s3 against s3rver (test/emulators/s3Server.ts). Both keep the ArchiveStore contract: whole or
 * nothing, the size and SHA-256 of the stored bytes, read back as written.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { expect } from 'chai';
import { LocalArchiveStore, type ArchiveStore } from '../../src/providers/archiveStore.ts';
import { archiveKey } from '../../src/providers/archiveStores/encryption.ts';
import { S3ArchiveStore } from '../../src/providers/archiveStores/s3.ts';
import { startS3Emulator, type S3Emulator } from '../emulators/s3Server.ts';
import { rejection } from '../support/rejection.ts';

/** A stream of unknown length: `total` random bytes in 64 KiB chunks, failing after `failAfter` bytes if set. */
function source(bytes: Buffer, failAfter?: number): Readable {
  return Readable.from(
    (function* () {
      for (let at = 0; at < bytes.length; at += 65_536) {
        if (failAfter !== undefined && at >= failAfter) throw new Error('the export failed midway');
        yield bytes.subarray(at, at + 65_536);
      }
    })(),
  );
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

function contract(name: string, make: () => Promise<{ store: ArchiveStore; stored(key: string): Promise<Buffer | undefined>; done(): Promise<void> }>) {
  describe(name, function () {
    this.timeout(60_000);
    let store: ArchiveStore;
    let stored: (key: string) => Promise<Buffer | undefined>;
    let done: () => Promise<void>;
    before(async () => ({ store, stored, done } = await make()));
    after(async () => done?.());

    it('writes a stream of unknown length (several parts), answers the stored bytes’ size and SHA-256, and reads it back', async () => {
      const bytes = randomBytes(20 * 1024 * 1024 + 123);
      const written = await store.write('backups/ws-1/a.jsonl.gz', source(bytes));
      const raw = (await stored('backups/ws-1/a.jsonl.gz'))!;
      expect(written).to.deep.equal({ location: 'backups/ws-1/a.jsonl.gz', sizeBytes: raw.length, sha256: sha256(raw) });
      expect(await store.checksum('backups/ws-1/a.jsonl.gz')).to.deep.equal({ sizeBytes: raw.length, sha256: sha256(raw) });
      expect((await buffer(store.read('backups/ws-1/a.jsonl.gz'))).equals(bytes)).to.equal(true);
    });

    it('stores nothing when the source fails midway', async () => {
      const failure = await rejection(store.write('backups/ws-1/b.jsonl.gz', source(randomBytes(12 * 1024 * 1024), 9 * 1024 * 1024)));
      expect(failure.message).to.equal('the export failed midway');
      expect(await stored('backups/ws-1/b.jsonl.gz')).to.equal(undefined);
    });

    it('deletes (again: nothing to do), and a read of what is not there fails', async () => {
      await store.write('backups/ws-1/c.jsonl.gz', source(Buffer.from('small')));
      await store.delete('backups/ws-1/c.jsonl.gz');
      await store.delete('backups/ws-1/c.jsonl.gz');
      expect(await stored('backups/ws-1/c.jsonl.gz')).to.equal(undefined);
      expect(await rejection(buffer(store.read('backups/ws-1/c.jsonl.gz')))).to.be.instanceOf(Error);
    });

    it('refuses names that leave their place', async () => {
      for (const bad of ['../x', '/abs', 'a/../b', 'a//b', '']) expect(() => store.read(bad), bad).to.throw(/invalid archive name/);
    });
  });
}

describe('archive stores', () => {
  contract('LocalArchiveStore', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'archives-'));
    const store = new LocalArchiveStore(dir);
    return {
      store,
      stored: async (key) => {
        const { readFile } = await import('node:fs/promises');
        return readFile(path.join(dir, key)).catch(() => undefined);
      },
      done: () => rm(dir, { recursive: true, force: true }),
    };
  });

  let s3: S3Emulator;
  contract('S3ArchiveStore (s3rver)', async () => {
    s3 = await startS3Emulator('archive-store-test');
    const store = new S3ArchiveStore({ bucket: s3.bucket, region: 'us-east-1', endpoint: s3.url }, archiveKey(randomBytes(32)));
    return {
      store,
      stored: (key) => s3.object(key).catch(() => undefined),
      done: async () => {
        store.close();
        await s3.close();
      },
    };
  });

  it('the S3 store encrypts what it stores, and a store with another key cannot read it', async function () {
    this.timeout(30_000);
    const emulator = await startS3Emulator('archive-store-keys');
    try {
      const settings = { bucket: emulator.bucket, region: 'us-east-1', endpoint: emulator.url };
      const mine = new S3ArchiveStore(settings, archiveKey(randomBytes(32)));
      const plain = Buffer.from('{"table":"memories","row":{"content":"Tess prefers tea"}}\n'.repeat(100));
      await mine.write('k/a', source(plain));
      const raw = await emulator.object('k/a');
      expect(raw.subarray(0, 8).toString()).to.equal('CLAWENC1');
      expect(raw.includes(Buffer.from('Tess prefers tea'))).to.equal(false);
      const other = new S3ArchiveStore(settings, archiveKey(randomBytes(32)));
      expect((await rejection(buffer(other.read('k/a')))).message).to.match(/integrity check/);
      mine.close();
      other.close();
    } finally {
      await emulator.close();
    }
  });

  it('the local store leaves no partial file behind a failed write', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'archives-'));
    try {
      await rejection(new LocalArchiveStore(dir).write('x/y', source(randomBytes(300_000), 100_000)));
      expect(await readdir(path.join(dir, 'x'))).to.deep.equal([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
