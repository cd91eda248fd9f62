/**
 * Backups and restores end to end: a whole control plane with local providers (a real runtime per customer, real
 * Postgres and Redis), backups on the local directory store and on an S3-compatible store (s3rver, through the real
 * @aws-sdk/client-s3). What the customer sees goes through their runtime's API with their own key.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { readFile, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { expect } from 'chai';
import { QUEUES } from '../../src/queues/catalogue.ts';
import { startHarness, waitUntil, type Harness, type InstanceView } from '../support/harness.ts';
import { startS3Emulator, type S3Emulator } from '../emulators/s3Server.ts';
import { backupSweep } from '../../src/jobs/backups/sweep.ts';
import type { JobHandle } from '../../src/jobs/context.ts';
import type { BackupSweepData } from '../../src/queues/catalogue.ts';

const KEY = /claw_[0-9A-Za-z]{43}/;

interface Customer {
  view: InstanceView;
  email: string;
  key: string;
  call(method: string, pathname: string, body?: unknown): Promise<Response>;
}

async function provision(h: Harness, email: string): Promise<Customer> {
  const { customerId, event } = h.checkout({ email, name: email.split('@')[0], plan: 'starter' });
  await h.deliver(event);
  const view = await h.waitForStatus(customerId, ['active', 'failed']);
  expect(view.status, JSON.stringify(view.failure)).to.equal('active');
  const key = KEY.exec((await h.smtp.waitFor((m) => m.to.includes(email))).text)![0];
  const call = (method: string, pathname: string, body?: unknown) =>
    fetch(`${view.accessUrl}${pathname}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
  return { view, email, key, call };
}

async function memories(customer: Customer): Promise<string[]> {
  const response = await customer.call('GET', '/api/memory');
  expect(response.status).to.equal(200);
  return ((await response.json()) as { memories: { content: string }[] }).memories.map((m) => m.content).sort();
}

/** The memories, once the runtime answers again (after a restart). */
async function memoriesOnceServing(customer: Customer): Promise<string[]> {
  await waitUntil(async () => (await customer.call('GET', '/api/memory').catch(() => undefined))?.status === 200, 30_000);
  return memories(customer);
}

async function remember(customer: Customer, content: string): Promise<string> {
  const response = await customer.call('POST', '/api/memory', { content });
  expect(response.status).to.equal(201);
  return String(((await response.json()) as { id: string | number }).id);
}

type BackupView = { id: string; reason: string; state: string; location: string; sizeBytes: number; sha256: string; rowCounts: Record<string, number>; durationMs: number; error: string | null };
type RestoreView = { id: string; backupId: string; state: string; preBackupId: string | null; databaseName: string | null; error: string | null; durationMs: number | null };

async function listing(h: Harness, instanceId: string): Promise<{ backups: BackupView[]; restores: RestoreView[] }> {
  const response = await h.admin(`/api/admin/instances/${instanceId}/backups`);
  expect(response.status).to.equal(200);
  return (await response.json()) as { backups: BackupView[]; restores: RestoreView[] };
}

/** An on-demand backup, once verified: its id. */
async function backupNow(h: Harness, instanceId: string): Promise<string> {
  const response = await h.admin(`/api/admin/instances/${instanceId}/backups`, { method: 'POST' });
  expect(response.status).to.equal(202);
  const { job } = (await response.json()) as { job: string };
  const id = job.slice(`${QUEUES.backups}/`.length);
  await h.completedJob(QUEUES.backups, id);
  // Read again once completed: the job completedJob read may be from just before it completed.
  const done = (await h.plane.ctx.queues.get(QUEUES.backups).getJob(id))!;
  return (done.returnvalue as { backupId: string }).backupId;
}

async function requestRestore(h: Harness, instanceId: string, backupId: string): Promise<{ restoreId: string; jobId: string }> {
  const response = await h.admin(`/api/admin/instances/${instanceId}/restore`, { method: 'POST', body: JSON.stringify({ backupId }) });
  expect(response.status, await response.clone().text()).to.equal(202);
  const { restoreId, job } = (await response.json()) as { restoreId: string; job: string };
  return { restoreId, jobId: job.slice(`${QUEUES.backups}/`.length) };
}

/** The job once it has failed for good (its state polled): its failure reason. */
async function failedJob(h: Harness, jobId: string, timeoutMs = 60_000): Promise<string> {
  let reason = '';
  await waitUntil(async () => {
    const job = await h.plane.ctx.queues.get(QUEUES.backups).getJob(jobId);
    if (job && (await job.getState()) === 'failed') reason = job.failedReason;
    return reason !== '';
  }, timeoutMs);
  return reason;
}

async function databaseOf(h: Harness, instanceId: string): Promise<string> {
  const { rows } = await h.db.query<{ database_name: string }>('SELECT database_name FROM instances WHERE id = $1', [instanceId]);
  return rows[0]!.database_name;
}

async function databaseExists(h: Harness, name: string): Promise<boolean> {
  const { rowCount } = await h.db.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  return rowCount === 1;
}

/** Slack posts about this customer's failed job of this name (each incident posts once). */
function alertsAbout(h: Harness, customer: Customer, job: string): number {
  return h.slack.posts.filter((p) => (p.text ?? JSON.stringify(p)).includes(customer.email) && JSON.stringify(p).includes(`job ${job} failed`)).length;
}

describe('backups and restore', function () {
  this.timeout(180_000);

  describe('on the local store', () => {
    let h: Harness;
    let ana: Customer;
    before(async () => {
      h = await startHarness({ BACKUP_SCHEDULE: '* * * * * *', BACKUP_SPREAD: '0' });
      ana = await provision(h, 'ana@example.com');
    });
    after(async () => h?.close());

    it('backs up every active instance on the schedule and keeps the plan’s number, scheduled and on-demand alike', async () => {
      // A schedule of a second: backups come and retention deletes the oldest, keeping Starter's 3.
      await waitUntil(async () => {
        const { rows } = await h.db.query<{ verified: string; deleted: string }>(
          `SELECT count(*) FILTER (WHERE state = 'verified') AS verified, count(*) FILTER (WHERE state = 'deleted') AS deleted
           FROM backups WHERE instance_id = $1 AND reason = 'scheduled'`,
          [ana.view.instanceId],
        );
        return Number(rows[0]!.deleted) >= 2 && Number(rows[0]!.verified) === 3;
      }, 60_000);
      // The schedule stops; what it had started finishes.
      await h.plane.ctx.jobs.scheduleBackups(null);
      await waitUntil(async () => {
        const counts = await h.plane.ctx.queues.get(QUEUES.backups).getJobCounts('active', 'wait', 'delayed', 'prioritized');
        return Object.values(counts).every((n) => n === 0);
      }, 30_000);
      const { rows: failed } = await h.db.query(`SELECT error FROM backups WHERE state = 'failed'`);
      expect(failed).to.deep.equal([]);

      const first = await backupNow(h, ana.view.instanceId);
      const second = await backupNow(h, ana.view.instanceId);
      const { backups } = await listing(h, ana.view.instanceId);
      const verified = backups.filter((b) => b.state === 'verified');
      expect(verified).to.have.length(3);
      expect(verified.slice(0, 2).map((b) => b.id)).to.deep.equal([second, first]); // newest first
      expect(verified.slice(0, 2).map((b) => b.reason)).to.deep.equal(['on-demand', 'on-demand']);
      for (const b of verified) {
        expect(b.sizeBytes).to.be.greaterThan(0);
        expect(b.sha256).to.match(/^[0-9a-f]{64}$/);
        expect(b.rowCounts.workspace_files).to.be.greaterThan(0);
        expect(b.durationMs).to.be.a('number');
        // What the store holds is what was recorded.
        const stored = await readFile(path.join(h.config.lifecycle.archiveDir, b.location));
        expect(createHash('sha256').update(stored).digest('hex')).to.equal(b.sha256);
      }
      for (const b of backups.filter((x) => x.state === 'deleted')) {
        expect(await readFile(path.join(h.config.lifecycle.archiveDir, b.location)).catch(() => 'gone')).to.equal('gone');
      }
    });

    it('a sweep run twice for the same slot adds one backup per instance', async () => {
      const sweep = { id: 'repeat:scheduler-backup-sweep:1000', timestamp: 1000 } as JobHandle<BackupSweepData>;
      expect(await backupSweep(h.plane.ctx, sweep)).to.deep.equal({ slot: new Date(1000).toISOString(), instances: 1 });
      await backupSweep(h.plane.ctx, sweep);
      const queue = h.plane.ctx.queues.get(QUEUES.backups);
      const jobs = (await queue.getJobs(['waiting', 'delayed', 'active', 'completed', 'failed'])).filter((j) => j.id?.endsWith('-backup-1000'));
      expect(jobs.map((j) => j.id)).to.deep.equal([`${ana.view.workspaceId}-backup-1000`]);
      await h.completedJob(QUEUES.backups, `${ana.view.workspaceId}-backup-1000`);
    });

    it('restores a backup after the customer deleted memories: they come back, with the same key; the old database goes', async () => {
      const kept = await remember(ana, 'Ana keeps bees on the roof');
      const backupId = await backupNow(h, ana.view.instanceId);
      expect((await ana.call('DELETE', `/api/memory/${kept}`)).status).to.equal(204);
      expect(await memories(ana)).to.deep.equal([]);
      const before = await databaseOf(h, ana.view.instanceId);

      const { restoreId, jobId } = await requestRestore(h, ana.view.instanceId, backupId);
      await h.completedJob(QUEUES.backups, jobId, 90_000);
      const done = (await h.plane.ctx.queues.get(QUEUES.backups).getJob(jobId))!;
      expect(done.returnvalue).to.include({ restored: backupId });

      expect(await memoriesOnceServing(ana)).to.deep.equal(['Ana keeps bees on the roof']);
      const after = await databaseOf(h, ana.view.instanceId);
      expect(after).to.equal(`${before}_r${restoreId.replace(/-/g, '').slice(0, 8)}`);
      expect(await databaseExists(h, before)).to.equal(false);
      const { restores, backups } = await listing(h, ana.view.instanceId);
      expect(restores[0]).to.include({ id: restoreId, backupId, state: 'succeeded', databaseName: after, error: null });
      expect(restores[0]!.durationMs).to.be.a('number');
      const pre = backups.find((b) => b.id === restores[0]!.preBackupId)!;
      expect(pre).to.include({ reason: 'restore', state: 'verified' });
      const { rows: audit } = await h.db.query(`SELECT action FROM audit WHERE instance_id = $1 AND action LIKE 'restore%' OR action = 'instance.restored' ORDER BY id`, [
        ana.view.instanceId,
      ]);
      expect(audit.map((r) => r.action)).to.deep.equal(['restore.requested', 'instance.restored']);
    });

    it('keeps the key the customer has now, rotated since the backup: the old one stays refused', async () => {
      const backupId = await backupNow(h, ana.view.instanceId);
      const rotate = await h.admin(`/api/admin/instances/${ana.view.instanceId}/rotate-key`, { method: 'POST' });
      expect(rotate.status).to.equal(202);
      const mail = await h.smtp.waitFor((m) => m.to.includes(ana.email) && KEY.exec(m.text)?.[0] !== ana.key && KEY.test(m.text));
      const rotated: Customer = { ...ana, key: KEY.exec(mail.text)![0] };
      rotated.call = (method, pathname, body) =>
        fetch(`${ana.view.accessUrl}${pathname}`, {
          method,
          headers: { authorization: `Bearer ${rotated.key}`, 'content-type': 'application/json' },
          ...(body !== undefined && { body: JSON.stringify(body) }),
        });
      await waitUntil(async () => (await ana.call('GET', '/api/memory')).status === 401, 10_000);

      const { jobId } = await requestRestore(h, ana.view.instanceId, backupId);
      await h.completedJob(QUEUES.backups, jobId, 90_000);
      expect(await memoriesOnceServing(rotated)).to.deep.equal(['Ana keeps bees on the roof']);
      expect((await ana.call('GET', '/api/memory')).status).to.equal(401);
      ana = rotated;
    });

    it('a restore that fails midway (the backup’s rows break the schema) leaves the live data serving, with one alert', async () => {
      await remember(ana, 'Ana prefers honey');
      const backupId = await backupNow(h, ana.view.instanceId);
      // The stored archive is replaced by one whose memory breaks the schema (content null), recorded as if written so:
      // it passes the checksum and row counts, and fails while being loaded.
      const { rows } = await h.db.query<{ location: string }>('SELECT location FROM backups WHERE id = $1', [backupId]);
      const file = path.join(h.config.lifecycle.archiveDir, rows[0]!.location);
      const lines = gunzipSync(await readFile(file)).toString('utf8').trimEnd().split('\n');
      const broken = lines.map((line) => {
        const entry = JSON.parse(line) as { table?: string; row?: Record<string, unknown> };
        if (entry.table === 'memories') entry.row!.content = null;
        return JSON.stringify(entry);
      });
      const bytes = gzipSync(broken.join('\n') + '\n');
      await writeFile(file, bytes);
      await h.db.query('UPDATE backups SET sha256 = $2, size_bytes = $3 WHERE id = $1', [backupId, createHash('sha256').update(bytes).digest('hex'), bytes.length]);
      const database = await databaseOf(h, ana.view.instanceId);

      const { restoreId, jobId } = await requestRestore(h, ana.view.instanceId, backupId);
      const reason = await failedJob(h, jobId);
      expect(reason).to.match(/null value in column "content"/);
      await h.slack.waitFor((p) => JSON.stringify(p).includes('job restore failed') && JSON.stringify(p).includes(ana.email));
      expect(alertsAbout(h, ana, 'restore')).to.equal(1);

      const { restores } = await listing(h, ana.view.instanceId);
      expect(restores.find((r) => r.id === restoreId)).to.include({ state: 'failed' });
      expect(await databaseOf(h, ana.view.instanceId)).to.equal(database);
      expect(await databaseExists(h, `${database.replace(/_r[0-9a-f]{8}$/, '')}_r${restoreId.replace(/-/g, '').slice(0, 8)}`)).to.equal(false);
      expect(await memories(ana)).to.deep.equal(['Ana keeps bees on the roof', 'Ana prefers honey']);
    });

    it('a restore whose service is not healthy on the restored data in time is swapped back onto the old database', async () => {
      const backupId = await backupNow(h, ana.view.instanceId);
      await remember(ana, 'Ana is allergic to wasps');
      const database = await databaseOf(h, ana.view.instanceId);
      const saved = { deploy: h.config.deployTimeoutMs, health: h.config.healthCheck.timeoutMs };
      // The workers' own configuration: a restarted service gets no time at all to answer /health.
      h.config.deployTimeoutMs = 1;
      h.config.healthCheck.timeoutMs = 1;
      try {
        const { restoreId, jobId } = await requestRestore(h, ana.view.instanceId, backupId);
        const reason = await failedJob(h, jobId);
        expect(reason).to.match(/not healthy on the restored database in time/);
        expect(reason).to.match(/swapped back/);
        expect(await databaseOf(h, ana.view.instanceId)).to.equal(database);
        const fresh = `${database.replace(/_r[0-9a-f]{8}$/, '')}_r${restoreId.replace(/-/g, '').slice(0, 8)}`;
        expect(await databaseExists(h, fresh)).to.equal(false);
      } finally {
        h.config.deployTimeoutMs = saved.deploy;
        h.config.healthCheck.timeoutMs = saved.health;
      }
      // The service runs on the old database again: what was saved after the backup is there.
      expect(await memoriesOnceServing(ana)).to.include('Ana is allergic to wasps');
    });

    it('refuses bad requests with a reason and changes nothing', async () => {
      const base = `/api/admin/instances/${ana.view.instanceId}`;
      const post = (pathname: string, body?: unknown) => h.admin(pathname, { method: 'POST', ...(body !== undefined && { body: JSON.stringify(body) }) });
      expect((await h.admin('/api/admin/instances/00000000-0000-4000-8000-000000000000/backups')).status).to.equal(404);
      expect((await post(`${base}/restore`, {})).status).to.equal(400);
      expect((await post(`${base}/restore`, { backupId: 'nope' })).status).to.equal(400);
      const unknown = await post(`${base}/restore`, { backupId: '00000000-0000-4000-8000-000000000000' });
      expect(unknown.status).to.equal(400);
      expect(((await unknown.json()) as { error: string }).error).to.equal('unknown_backup');
      const { rows } = await h.db.query<{ id: string }>(`SELECT id FROM backups WHERE instance_id = $1 AND state = 'deleted' LIMIT 1`, [ana.view.instanceId]);
      const deleted = await post(`${base}/restore`, { backupId: rows[0]!.id });
      expect(deleted.status).to.equal(400);
      expect(((await deleted.json()) as { error: string }).error).to.equal('backup_not_verified');
      expect((await fetch(`${h.url}${base}/backups`, { method: 'POST' })).status).to.equal(401);
      const { rows: runs } = await h.db.query(`SELECT 1 FROM restores WHERE instance_id = $1 AND state = 'running'`, [ana.view.instanceId]);
      expect(runs).to.deep.equal([]);
    });
  });

  describe('on an S3-compatible store', () => {
    let h: Harness;
    let s3: S3Emulator;
    let ben: Customer;
    before(async () => {
      s3 = await startS3Emulator();
      h = await startHarness({
        BACKUP_SCHEDULE: 'off',
        BACKUP_S3_BUCKET: s3.bucket,
        BACKUP_S3_ENDPOINT: s3.url,
        BACKUP_S3_REGION: 'us-east-1',
        ARCHIVE_AFTER: '1s',
        PURGE_AFTER: '1h',
      });
      ben = await provision(h, 'ben@example.com');
    });
    after(async () => {
      await h?.close();
      await s3?.close();
    });

    it('stores backups encrypted (the checksum is of the stored bytes) and restores deleted memories from them', async () => {
      const kept = await remember(ben, 'Ben runs on Tuesdays');
      const backupId = await backupNow(h, ben.view.instanceId);
      const { backups } = await listing(h, ben.view.instanceId);
      const backup = backups.find((b) => b.id === backupId)!;
      const stored = await s3.object(backup.location);
      expect(stored.subarray(0, 8).toString()).to.equal('CLAWENC1');
      expect(stored.includes(Buffer.from('Ben runs on Tuesdays'))).to.equal(false);
      expect(createHash('sha256').update(stored).digest('hex')).to.equal(backup.sha256);
      expect(stored.length).to.equal(backup.sizeBytes);

      expect((await ben.call('DELETE', `/api/memory/${kept}`)).status).to.equal(204);
      const { jobId } = await requestRestore(h, ben.view.instanceId, backupId);
      await h.completedJob(QUEUES.backups, jobId, 90_000);
      expect(await memoriesOnceServing(ben)).to.deep.equal(['Ben runs on Tuesdays']);
    });

    it('keeps the plan’s number when an upload fails: the failed backup is recorded, nothing is deleted, one alert', async () => {
      while ((await listing(h, ben.view.instanceId)).backups.filter((b) => b.state === 'verified').length < 3) await backupNow(h, ben.view.instanceId);
      const kept = (await listing(h, ben.view.instanceId)).backups.filter((b) => b.state === 'verified').map((b) => b.id);
      expect(kept).to.have.length(3);

      await s3.stop();
      try {
        const response = await h.admin(`/api/admin/instances/${ben.view.instanceId}/backups`, { method: 'POST' });
        const { job } = (await response.json()) as { job: string };
        await failedJob(h, job.slice(`${QUEUES.backups}/`.length), 120_000);
        await h.slack.waitFor((p) => JSON.stringify(p).includes('job backup failed') && JSON.stringify(p).includes(ben.email));
        expect(alertsAbout(h, ben, 'backup')).to.equal(1);
      } finally {
        await s3.start();
      }
      const after = (await listing(h, ben.view.instanceId)).backups;
      expect(after.filter((b) => b.state === 'verified').map((b) => b.id)).to.deep.equal(kept);
      const failed = after.filter((b) => b.state === 'failed');
      expect(failed.length).to.be.at.least(1);
      for (const b of failed) expect(b.error).to.be.a('string').and.not.equal('');
      // Every kept backup is still whole in the store.
      for (const b of after.filter((x) => x.state === 'verified')) {
        expect(createHash('sha256').update(await s3.object(b.location)).digest('hex')).to.equal(b.sha256);
      }
      // Once the store is back, the next backup is kept and the oldest goes.
      const next = await backupNow(h, ben.view.instanceId);
      const now = (await listing(h, ben.view.instanceId)).backups.filter((b) => b.state === 'verified').map((b) => b.id);
      expect(now).to.deep.equal([next, ...kept.slice(0, 2)]);
    });

    it('stores a cancellation archive in the bucket too, encrypted, and verifies it before deleting anything', async () => {
      const cy = await provision(h, 'cy@example.com');
      await remember(cy, 'Cy collects stamps');
      expect((await h.admin(`/api/admin/customers/${cy.view.customerId}/deprovision`, { method: 'POST' })).status).to.equal(202);
      await h.waitForStatus(cy.view.customerId, ['archived'], 60_000);
      const { rows } = await h.db.query<{ location: string; sha256: string; verified: boolean }>(
        'SELECT location, sha256, verified_at IS NOT NULL AS verified FROM archives WHERE instance_id = $1',
        [cy.view.instanceId],
      );
      expect(rows[0]!.location).to.match(new RegExp(`^${cy.view.workspaceId}/\\d+\\.jsonl\\.gz$`));
      expect(rows[0]!.verified).to.equal(true);
      const stored = await s3.object(rows[0]!.location);
      expect(stored.subarray(0, 8).toString()).to.equal('CLAWENC1');
      expect(stored.includes(Buffer.from('Cy collects stamps'))).to.equal(false);
      expect(createHash('sha256').update(stored).digest('hex')).to.equal(rows[0]!.sha256);
      expect(await readFile(path.join(h.config.lifecycle.archiveDir, rows[0]!.location)).catch(() => 'not here')).to.equal('not here');
    });

    it('refuses to restore a backup whose stored bytes were altered, with one alert; the live data keeps serving', async () => {
      await remember(ben, 'Ben likes rye bread');
      const backupId = await backupNow(h, ben.view.instanceId);
      const { backups } = await listing(h, ben.view.instanceId);
      const backup = backups.find((b) => b.id === backupId)!;
      const stored = await s3.object(backup.location);
      stored[stored.length - 40] = stored[stored.length - 40]! ^ 0xff;
      await s3.putObject(backup.location, stored);
      const database = await databaseOf(h, ben.view.instanceId);
      const restoresBefore = (await listing(h, ben.view.instanceId)).restores.length;
      const backupsBefore = (await listing(h, ben.view.instanceId)).backups.length;

      const { restoreId, jobId } = await requestRestore(h, ben.view.instanceId, backupId);
      const reason = await failedJob(h, jobId);
      expect(reason).to.match(/does not match what was written/);
      expect(reason).to.match(/the live database was never changed/);
      await h.slack.waitFor((p) => JSON.stringify(p).includes('job restore failed') && JSON.stringify(p).includes(ben.email));
      expect(alertsAbout(h, ben, 'restore')).to.equal(1);

      const { restores, backups: after } = await listing(h, ben.view.instanceId);
      expect(restores).to.have.length(restoresBefore + 1);
      expect(restores[0]).to.include({ id: restoreId, state: 'failed', preBackupId: null, databaseName: null });
      expect(after).to.have.length(backupsBefore); // no pre-restore backup was even taken
      expect(await databaseOf(h, ben.view.instanceId)).to.equal(database);
      expect(await memories(ben)).to.include('Ben likes rye bread');
    });
  });

  describe('on the cloud providers (Railway and Neon emulators)', () => {
    let h: Harness;
    before(async () => {
      h = await startHarness({ BACKUP_SCHEDULE: 'off' }, { cloud: {} });
    });
    after(async () => h?.close());

    it('restores onto a fresh Neon branch, redeploys the Railway service on it, and deletes the old branch', async () => {
      const dee = await provision(h, 'dee@example.com');
      const kept = await remember(dee, 'Dee sails on weekends');
      const backupId = await backupNow(h, dee.view.instanceId);
      expect((await dee.call('DELETE', `/api/memory/${kept}`)).status).to.equal(204);
      const { rows } = await h.db.query<{ branch_id: string }>('SELECT branch_id FROM instances WHERE id = $1', [dee.view.instanceId]);
      const [projectId, oldBranch] = rows[0]!.branch_id.split('/') as [string, string];
      expect(h.neon!.branches(projectId).map((b) => b.branch.id)).to.include(oldBranch);

      const { restoreId, jobId } = await requestRestore(h, dee.view.instanceId, backupId);
      await h.completedJob(QUEUES.backups, jobId, 120_000);
      expect(await memoriesOnceServing(dee)).to.deep.equal(['Dee sails on weekends']);
      const { rows: after } = await h.db.query<{ branch_id: string; database_role: string }>('SELECT branch_id, database_role FROM instances WHERE id = $1', [
        dee.view.instanceId,
      ]);
      // The branch (and its role) made for this run: claw_<hash>_r<8 hex of the run>.
      expect(after[0]!.database_role).to.match(new RegExp(`^claw_[0-9a-f]{16}_r${restoreId.replace(/-/g, '').slice(0, 8)}$`));
      expect((await listing(h, dee.view.instanceId)).restores[0]).to.include({ id: restoreId, state: 'succeeded', databaseName: after[0]!.database_role });
      expect(h.neon!.branches(projectId).map((b) => b.branch.id)).to.include(after[0]!.branch_id.split('/')[1]);
      // Its deletion is an operation Neon finishes on its own time.
      await waitUntil(async () => !h.neon!.branches(projectId).some((b) => b.branch.id === oldBranch), 30_000);
    });
  });
});
