/**
 * Backups' pure logic (retention's choice, the spread offset, the sweep slot, the schedule's syntax), the archive
 * store's encryption, the configuration, and backupNow on in-memory fakes: what it keeps and what a failure deletes.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { expect } from 'chai';
import { loadConfig } from '../../src/config.ts';
import { backupsBeyondKept, isCronExpression, spreadOffset, sweepSlot } from '../../src/operations/backupPolicy.ts';
import { backupNow } from '../../src/operations/backup.ts';
import { archiveKey, decryptingStream, encryptingStream } from '../../src/providers/archiveStores/encryption.ts';
import { workspaceOfResource, restoreDatabaseName } from '../../src/instances/resources.ts';
import { fakeContext } from '../support/fakes.ts';
import { rejection } from '../support/rejection.ts';

const day = (n: number) => new Date(Date.UTC(2026, 0, n));

describe('backups', () => {
  describe('retention (backupsBeyondKept)', () => {
    const backups = [
      { id: 'b3', startedAt: day(3), state: 'verified' },
      { id: 'b1', startedAt: day(1), state: 'verified' },
      { id: 'b5', startedAt: day(5), state: 'failed' },
      { id: 'b4', startedAt: day(4), state: 'verified' },
      { id: 'b2', startedAt: day(2), state: 'deleted' },
      { id: 'b0', startedAt: day(0), state: 'verified' },
    ];

    it('chooses the verified backups beyond the newest N, whatever the order given', () => {
      expect(backupsBeyondKept(backups, 2).map((b) => b.id)).to.deep.equal(['b1', 'b0']);
      expect(backupsBeyondKept(backups, 3).map((b) => b.id)).to.deep.equal(['b0']);
    });

    it('never counts or chooses a failed, running or deleted backup, and never leaves fewer than N verified', () => {
      expect(backupsBeyondKept(backups, 4)).to.deep.equal([]);
      expect(backupsBeyondKept(backups, 30)).to.deep.equal([]);
      const chosen = new Set(backupsBeyondKept(backups, 1).map((b) => b.id));
      expect([...chosen].sort()).to.deep.equal(['b0', 'b1', 'b3']);
      expect(backups.filter((b) => b.state === 'verified' && !chosen.has(b.id)).map((b) => b.id)).to.deep.equal(['b4']);
    });

    it('keeps at least one whatever number it is given', () => {
      expect(backupsBeyondKept(backups, 0).map((b) => b.id)).to.deep.equal(['b3', 'b1', 'b0']);
    });
  });

  describe('the spread offset', () => {
    it('is a fixed point of [0, spread) per instance, and 0 with no spread', () => {
      const hour = 3_600_000;
      const ids = Array.from({ length: 500 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
      const offsets = ids.map((id) => spreadOffset(id, hour));
      expect(offsets.every((o) => Number.isInteger(o) && o >= 0 && o < hour)).to.equal(true);
      expect(ids.map((id) => spreadOffset(id, hour))).to.deep.equal(offsets);
      expect(spreadOffset(ids[0]!, 0)).to.equal(0);
    });

    it('spreads instances over the whole window (each quarter gets a share)', () => {
      const hour = 3_600_000;
      const quarters = [0, 0, 0, 0];
      for (let i = 0; i < 1000; i++) quarters[Math.floor(spreadOffset(`instance-${i}`, hour) / (hour / 4))]!++;
      for (const q of quarters) expect(q).to.be.within(150, 350);
    });
  });

  it('the sweep slot is the time the scheduler meant (the end of its job id), else when the job was made', () => {
    expect(sweepSlot({ id: 'repeat:scheduler-backup-sweep:1767236400000', timestamp: 5 })).to.equal(1767236400000);
    expect(sweepSlot({ id: 'manual', timestamp: 5 })).to.equal(5);
  });

  it('reads cron expressions of five fields, or six with seconds', () => {
    for (const ok of ['0 3 * * *', '* * * * * *', '*/15 2-4 * * MON-FRI', '0 0 1,15 * *']) expect(isCronExpression(ok), ok).to.equal(true);
    for (const bad of ['', 'daily', '0 3 * *', '0 3 * * * * *', '0 3 * * ; rm']) expect(isCronExpression(bad), bad).to.equal(false);
  });

  it("names a restore's database after the instance's, and the reconciler knows it for the instance's", () => {
    const name = restoreDatabaseName('ws-0123456789abcdef', 'a1b2c3d4-0000-4000-8000-000000000000');
    expect(name).to.equal('claw_0123456789abcdef_ra1b2c3d4');
    expect(workspaceOfResource('database', name)).to.equal('ws-0123456789abcdef');
    expect(workspaceOfResource('service', 'claw-0123456789abcdef_ra1b2c3d4')).to.equal(undefined);
    expect(workspaceOfResource('database', 'claw_0123456789abcdef_rzz')).to.equal(undefined);
  });

  describe('encryption of stored archives', () => {
    const key = archiveKey(randomBytes(32));
    const encrypt = async (plain: Buffer, name: string) => buffer(Readable.from(chunks(plain)).pipe(encryptingStream(key, name)));
    const decrypt = async (stored: Buffer, name: string, k = key) => {
      const out: Buffer[] = [];
      await pipeline(Readable.from(chunks(stored)), decryptingStream(k, name), async function* (source) {
        for await (const c of source) out.push(c as Buffer);
      });
      return Buffer.concat(out);
    };

    it('round-trips any length (empty, one byte, many odd chunks) and stores no plaintext', async () => {
      for (const size of [0, 1, 15, 16, 17, 100_000]) {
        const plain = randomBytes(size);
        const stored = await encrypt(plain, 'backups/ws/b.jsonl.gz');
        expect(stored.length).to.equal(size + 8 + 12 + 16);
        expect(await decrypt(stored, 'backups/ws/b.jsonl.gz')).to.deep.equal(plain);
      }
      const text = Buffer.from('Tess prefers tea over coffee '.repeat(20));
      expect((await encrypt(text, 'n')).includes(Buffer.from('Tess prefers tea'))).to.equal(false);
    });

    it('fails loudly when a byte was altered, the object moved under another name, the key is another or it is cut short', async () => {
      const plain = randomBytes(5000);
      const stored = await encrypt(plain, 'a/1');
      const altered = Buffer.from(stored);
      altered[100] = altered[100]! ^ 1;
      expect((await rejection(decrypt(altered, 'a/1'))).message).to.match(/integrity check/);
      expect((await rejection(decrypt(stored, 'a/2'))).message).to.match(/integrity check/);
      expect((await rejection(decrypt(stored, 'a/1', archiveKey(randomBytes(32))))).message).to.match(/integrity check/);
      expect((await rejection(decrypt(stored.subarray(0, 10), 'a/1'))).message).to.match(/truncated/);
      expect((await rejection(decrypt(Buffer.from('plain gzip bytes, not ours at all'), 'a/1'))).message).to.match(/not an encrypted archive/);
    });

    it('derives its key from the control plane key, and not as that key itself', () => {
      const secretsKey = randomBytes(32);
      expect(archiveKey(secretsKey)).to.deep.equal(archiveKey(Buffer.from(secretsKey)));
      expect(archiveKey(secretsKey).equals(secretsKey)).to.equal(false);
      expect(archiveKey(secretsKey)).to.have.length(32);
    });
  });

  describe('configuration', () => {
    const base = { VAR_DIR: '/nonexistent/var', SECRETS_KEY: Buffer.alloc(32, 1).toString('base64'), STRIPE_WEBHOOK_SECRET: 'w', ADMIN_PASSWORD: 'p', ADMIN_TOKEN: 't' };

    it('defaults to a daily 03:00 schedule spread over an hour, on the local store', () => {
      expect(loadConfig(base, '/nonexistent').backups).to.deep.equal({ schedule: '0 3 * * *', spreadMs: 3_600_000, s3: null });
    });

    it('takes an S3-compatible store, a schedule with seconds, no spread, or no schedule', () => {
      const config = loadConfig({ ...base, BACKUP_SCHEDULE: '* * * * * *', BACKUP_SPREAD: '0', BACKUP_S3_BUCKET: 'claw-backups', BACKUP_S3_ENDPOINT: 'http://127.0.0.1:9000', BACKUP_S3_REGION: 'eu-west-1' }, '/nonexistent');
      expect(config.backups).to.deep.equal({ schedule: '* * * * * *', spreadMs: 0, s3: { bucket: 'claw-backups', region: 'eu-west-1', endpoint: 'http://127.0.0.1:9000' } });
      expect(loadConfig({ ...base, BACKUP_SCHEDULE: 'off' }, '/nonexistent').backups.schedule).to.equal(null);
    });

    it('names every bad backup setting in one error', () => {
      const err = (() => {
        try {
          loadConfig({ ...base, BACKUP_SCHEDULE: 'daily', BACKUP_SPREAD: 'soon', BACKUP_S3_ENDPOINT: 'ftp://x' }, '/nonexistent');
        } catch (e) {
          return e as Error;
        }
        throw new Error('no error');
      })();
      for (const name of ['BACKUP_SCHEDULE', 'BACKUP_SPREAD', 'BACKUP_S3_ENDPOINT must be', 'need BACKUP_S3_BUCKET']) expect(err.message).to.include(name);
    });
  });

  describe('backupNow (fakes)', () => {
    async function instanceWithData() {
      const f = fakeContext();
      const instance = f.instances.add({ status: 'active', plan: 'starter' });
      await f.customerDbs.give(instance.id, { memories: [{ id: 1, content: 'tea' }] });
      return { f, instance };
    }

    it('stores, verifies, then keeps the plan’s number of verified backups (Starter: 3), deleting the oldest', async () => {
      const { f, instance } = await instanceWithData();
      const taken: string[] = [];
      for (let i = 0; i < 5; i++) taken.push((await backupNow(f.ctx, instance, i % 2 ? 'on-demand' : 'scheduled')).backupId);
      const runs = await f.backups.list(instance.id);
      expect(runs.filter((r) => r.state === 'verified').map((r) => r.id)).to.deep.equal(taken.slice(2).reverse());
      expect(runs.filter((r) => r.state === 'deleted').map((r) => r.id).sort()).to.deep.equal(taken.slice(0, 2).sort());
      expect([...f.archives.files.keys()].sort()).to.deep.equal(taken.slice(2).map((id) => `backups/${instance.workspace_id}/${id}.jsonl.gz`).sort());
      const verifiedAt = f.calls.indexOf('backups.verified');
      expect(f.calls.indexOf('backups.markDeleted')).to.be.greaterThan(verifiedAt);
    });

    it('a backup that fails is recorded failed, leaves no object, and deletes no other backup', async () => {
      const { f, instance } = await instanceWithData();
      for (let i = 0; i < 3; i++) await backupNow(f.ctx, instance, 'scheduled');
      const before = [...f.archives.files.keys()].sort();
      const write = f.archives.write.bind(f.archives);
      f.archives.write = async (name, source) => {
        await write(name, source);
        throw new Error('upload failed: connection reset');
      };
      expect((await rejection(backupNow(f.ctx, instance, 'scheduled'))).message).to.equal('upload failed: connection reset');
      const runs = await f.backups.list(instance.id);
      expect(runs.map((r) => r.state)).to.deep.equal(['failed', 'verified', 'verified', 'verified']);
      expect(runs[0]!.error).to.equal('upload failed: connection reset');
      expect([...f.archives.files.keys()].sort()).to.deep.equal(before);
    });
  });
});

/** Bytes in uneven chunks, as a network delivers them. */
function* chunks(bytes: Buffer): Generator<Buffer> {
  const sizes = [1, 7, 16, 3, 1000, 4096];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length]!;
    yield bytes.subarray(at, at + size);
    at += size;
  }
}
