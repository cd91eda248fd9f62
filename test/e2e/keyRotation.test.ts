/**
 * API key rotation end to end: by the customer through their runtime's API, and by an operator through the admin
 * API (a job that emails the new key). Each time the new key works, the old one is refused within the runtime's
 * 2-second key cache, the control plane records the new label with an audit row; and no key is left in Redis or in
 * any log line (the control plane's and the runtime's log file).
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { apiKeyLabel, hashApiKey } from '../../core/apiKey.ts';
import { logTo } from '../../core/logger.ts';
import { KEY_ROTATED_PATH, NOTICE_SIGNATURE_HEADER, NOTICE_WORKSPACE_HEADER, signNotice } from '../../core/usageNotice.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../src/instances/secrets.ts';
import { QUEUES } from '../../src/queues/catalogue.ts';
import { dumpKeys, startHarness, waitUntil, type Harness } from '../support/harness.ts';
import { provision, type Provisioned } from '../support/provision.ts';

const KEY = /claw_[0-9A-Za-z]{43}/;
/** The runtime's key cache: a key revoked behind its back is refused at the latest this long after. */
const KEY_CACHE_MS = 2_000;

describe('API key rotation end to end', function () {
  this.timeout(90_000);
  let h: Harness;
  let ann: Provisioned;
  const lines: string[] = [];
  /** Every key the customer held, oldest first. */
  const keys: string[] = [];

  const status = async (key: string) =>
    (await fetch(`${ann.view.accessUrl}/status`, { headers: { authorization: `Bearer ${key}` } })).status;
  const instanceKey = async () =>
    (await h.db.query<{ api_key_hash: string; api_key_label: string }>('SELECT api_key_hash, api_key_label FROM instances WHERE id = $1', [ann.instanceId])).rows[0]!;
  const rotations = async () =>
    (
      await h.db.query<{ actor: string; detail: { label: string; via: string } }>(
        `SELECT actor, detail FROM audit WHERE instance_id = $1 AND action = 'api_key.rotated' ORDER BY id`,
        [ann.instanceId],
      )
    ).rows;

  before(async () => {
    logTo({ write: (line: string) => lines.push(line) });
    h = await startHarness({ LOG_LEVEL: 'debug', LOG_FORMAT: 'json' });
    ann = await provision(h, 'ann.keys@example.com', 'Ann Keys');
    keys.push(ann.apiKey);
  });
  after(async () => {
    logTo(undefined);
    await h?.close();
  });

  it('rotates through the runtime API: the new key once, the old one refused, the instance and an audit row updated', async () => {
    expect(await status(ann.apiKey)).to.equal(200);
    const response = await fetch(`${ann.view.accessUrl}/api/keys/rotate`, { method: 'POST', headers: { authorization: `Bearer ${ann.apiKey}` } });
    expect(response.status).to.equal(201);
    expect(response.headers.get('cache-control')).to.equal('no-store');
    const { key, label } = (await response.json()) as { key: string; label: string };
    expect(key).to.match(KEY);
    keys.push(key);

    expect(await status(key)).to.equal(200);
    expect(await status(ann.apiKey)).to.equal(401);
    await waitUntil(async () => (await instanceKey()).api_key_hash === hashApiKey(key));
    expect((await instanceKey()).api_key_label).to.equal(label);
    expect(await rotations()).to.deep.equal([{ actor: 'customer', detail: { via: 'runtime-api', label } }]);
  });

  it('takes a key-rotated notice only when signed with the instance’s secret and well formed', async () => {
    const before = await instanceKey();
    const post = (body: string, signature: string) =>
      fetch(`${h.url}${KEY_ROTATED_PATH}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [NOTICE_WORKSPACE_HEADER]: ann.view.workspaceId, [NOTICE_SIGNATURE_HEADER]: signature },
        body,
      });
    const forged = JSON.stringify({ workspaceId: ann.view.workspaceId, hash: 'f'.repeat(64), label: 'claw_forged…' });
    expect((await post(forged, signNotice('not-the-secret', forged))).status).to.equal(401);
    const secret = (await h.plane.ctx.secrets.get(instanceOwner(ann.instanceId), INSTANCE_SECRETS.runtimeSecret))!;
    const malformed = JSON.stringify({ workspaceId: ann.view.workspaceId, hash: 'not-a-hash', label: 'claw_abcdef…' });
    const refused = await post(malformed, signNotice(secret, malformed));
    expect(refused.status).to.equal(400);
    expect(await refused.json()).to.include({ error: 'invalid_notice' });
    expect(await instanceKey()).to.deep.equal(before);
    expect(await rotations()).to.have.length(1);
  });

  it('does not put an older key back when an older key-rotated notice is sent again', async () => {
    const secret = (await h.plane.ctx.secrets.get(instanceOwner(ann.instanceId), INSTANCE_SECRETS.runtimeSecret))!;
    const post = (body: string, signedAt: number) =>
      fetch(`${h.url}${KEY_ROTATED_PATH}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [NOTICE_WORKSPACE_HEADER]: ann.view.workspaceId, [NOTICE_SIGNATURE_HEADER]: signNotice(secret, body, signedAt) },
        body,
      });
    const notice = (hex: string, label: string) => JSON.stringify({ workspaceId: ann.view.workspaceId, hash: hex.repeat(64), label });
    const now = Math.floor(Date.now() / 1000);
    // A rotation now (captured on the way), then a later one (signed two seconds on: within the five minutes).
    expect((await (await post(notice('a', 'claw_older0…aaaa'), now)).json()).duplicate).to.equal(false);
    expect((await (await post(notice('b', 'claw_newer0…bbbb'), now + 2)).json()).duplicate).to.equal(false);
    // The older notice sent again, still within its five minutes: validly signed, and refused as older.
    expect((await (await post(notice('a', 'claw_older0…aaaa'), now)).json()).duplicate).to.equal(true);
    expect((await instanceKey()).api_key_hash).to.equal('b'.repeat(64));
  });

  it('refuses an operator rotation of an unknown instance (404) or of one not running (409)', async () => {
    expect((await h.admin('/api/admin/instances/00000000-0000-4000-8000-000000000000/rotate-key', { method: 'POST' })).status).to.equal(404);
    expect((await h.admin('/api/admin/instances/not-an-id/rotate-key', { method: 'POST' })).status).to.equal(404);
    await h.db.query(`UPDATE instances SET status = 'cancelled' WHERE id = $1`, [ann.instanceId]);
    try {
      const refused = await h.admin(`/api/admin/instances/${ann.instanceId}/rotate-key`, { method: 'POST' });
      expect(refused.status).to.equal(409);
      expect(await refused.json()).to.include({ error: 'not_running' });
    } finally {
      await h.db.query(`UPDATE instances SET status = 'active' WHERE id = $1`, [ann.instanceId]);
    }
  });

  it('rotates by an operator: the customer is emailed the new key, which works; the old one is refused; an audit row', async () => {
    const old = keys.at(-1)!;
    const response = await h.admin(`/api/admin/instances/${ann.instanceId}/rotate-key`, { method: 'POST' });
    expect(response.status).to.equal(202);
    const { rotating, job } = (await response.json()) as { rotating: string; job: string };
    expect(rotating).to.equal(ann.instanceId);
    const [queue, jobId] = job.split('/') as [typeof QUEUES.lifecycle, string];
    expect(queue).to.equal(QUEUES.lifecycle);
    await h.completedJob(queue, jobId);

    const mail = await h.smtp.waitFor((m) => m.to.includes('ann.keys@example.com') && m.subject === 'Your Clawdbot API key was replaced');
    expect(mail.headers['message-id']).to.equal(`<key-rotated-${ann.view.workspaceId}-${jobId}@clawdbot>`);
    const key = KEY.exec(mail.text)?.[0];
    expect(key, 'the email carries the new key').to.be.a('string').and.not.equal(old);
    keys.push(key!);

    // The revocation happened in the customer's database before the job completed: the runtime's cache forgets
    // the old key's "valid" within its window.
    await new Promise((resolve) => setTimeout(resolve, KEY_CACHE_MS + 100));
    expect(await status(old)).to.equal(401);
    expect(await status(key!)).to.equal(200);
    expect(await instanceKey()).to.deep.equal({ api_key_hash: hashApiKey(key!), api_key_label: apiKeyLabel(key!) });
    expect((await rotations()).at(-1)).to.deep.equal({ actor: 'admin-api', detail: { via: 'operator', jobId, label: apiKeyLabel(key!) } });
    expect(await h.plane.ctx.secrets.get(instanceOwner(ann.instanceId), INSTANCE_SECRETS.rotatedApiKey)).to.equal(null);
    expect(h.smtp.messages.filter((m) => m.subject === 'Your Clawdbot API key was replaced')).to.have.length(1);
  });

  it('leaves no key in Redis nor in any log line', async () => {
    expect(keys).to.have.length(3);
    const dump = (await dumpKeys(h.redis, `${h.config.queuePrefix}:*`)).join('\n');
    expect(dump).to.include('rotate-key'); // the job is really there
    expect(dump).to.not.match(/claw_[0-9A-Za-z]{20,}/);

    const logDir = path.join(h.config.varDir, 'logs');
    const runtimeLogs = await Promise.all((await readdir(logDir)).map((file) => readFile(path.join(logDir, file), 'utf8')));
    const everything = [...lines, ...runtimeLogs].join('\n');
    expect(everything).to.include('api key rotated'); // the runtime's log of the rotation is there
    for (const key of keys) expect(everything).to.not.include(key);
    expect(everything).to.not.match(/claw_[0-9A-Za-z]{20,}/);
  });
});
