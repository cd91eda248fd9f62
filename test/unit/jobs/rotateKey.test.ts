/** The operator's rotate-key job on in-memory fakes: its order, and that a retry issues no second key and no second email. */
import { expect } from 'chai';
import { hashApiKey } from '../../../core/apiKey.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../../src/instances/secrets.ts';
import { rotateKey } from '../../../src/jobs/lifecycle/rotateKey.ts';
import type { RotateKeyData } from '../../../src/queues/catalogue.ts';
import { FakeJob, fakeContext, type Fakes } from '../../support/fakes.ts';
import { rejection } from '../../support/rejection.ts';

const KEY = /claw_[0-9A-Za-z]{43}/;

async function activeInstance(f: Fakes, status: 'active' | 'suspended' | 'cancelled' = 'active') {
  const instance = f.instances.add({ status, api_key_hash: 'old-hash', api_key_label: 'claw_old…' });
  const db = await f.customerDbs.give(instance.id);
  db.keys.push({ hash: 'old-hash', label: 'claw_old…', revoked: false });
  f.calls.length = 0;
  return { instance, db };
}

const mailedKey = (f: Fakes, i = 0) => KEY.exec(f.mailer.sent[i]!.text)![0];

describe('rotate-key job (fakes)', () => {
  it('seals a new key, makes it the only live one, records it with an audit row, emails it, then deletes it', async () => {
    const f = fakeContext();
    const { instance, db } = await activeInstance(f);
    const job = new FakeJob<RotateKeyData>('rotate-key', { instanceId: instance.id });
    expect(await rotateKey(f.ctx, job)).to.have.property('rotated');
    expect(f.calls).to.deep.equal([
      'secrets.put rotated_api_key',
      'customerDbs.replaceKeys',
      'instances.recordKeyRotation',
      'audit.record api_key.rotated',
      'mailer.send Your Clawdbot API key was replaced',
      'secrets.delete rotated_api_key',
    ]);
    const key = mailedKey(f);
    expect(f.mailer.sent[0]!.messageId).to.equal(`<key-rotated-${instance.workspace_id}-${job.id}@clawdbot>`);
    expect(db.keys.map((k) => [k.hash, k.revoked])).to.deep.equal([['old-hash', true], [hashApiKey(key), false]]);
    expect(f.instances.get(instance.id).api_key_hash).to.equal(hashApiKey(key));
    expect(await f.secrets.get(instanceOwner(instance.id), INSTANCE_SECRETS.rotatedApiKey)).to.equal(null);
    expect(job.data).to.deep.equal({ instanceId: instance.id, emailed: true });
  });

  it('retried after the mail failed, sends the same key (no second key, no second audit row)', async () => {
    const f = fakeContext();
    const { instance, db } = await activeInstance(f);
    const job = new FakeJob<RotateKeyData>('rotate-key', { instanceId: instance.id });
    const send = f.mailer.send.bind(f.mailer);
    f.mailer.send = async () => {
      throw new Error('smtp down');
    };
    expect(((await rejection(rotateKey(f.ctx, job))) as Error).message).to.equal('smtp down');
    const sealed = await f.secrets.get(instanceOwner(instance.id), INSTANCE_SECRETS.rotatedApiKey);
    expect(sealed).to.match(KEY);

    f.mailer.send = send;
    await rotateKey(f.ctx, job);
    expect(mailedKey(f)).to.equal(sealed);
    expect(db.keys.filter((k) => !k.revoked).map((k) => k.hash)).to.deep.equal([hashApiKey(sealed!)]);
    expect(f.audit.entries.filter((e) => e.action === 'api_key.rotated')).to.have.length(1);
  });

  it('retried once the email has gone, sends nothing and only deletes the sealed key', async () => {
    const f = fakeContext();
    const { instance } = await activeInstance(f);
    await f.secrets.put(instanceOwner(instance.id), INSTANCE_SECRETS.rotatedApiKey, 'claw_' + 'a'.repeat(43));
    f.calls.length = 0;
    const job = new FakeJob<RotateKeyData>('rotate-key', { instanceId: instance.id, emailed: true });
    await rotateKey(f.ctx, job);
    expect(f.calls).to.deep.equal(['secrets.delete rotated_api_key']);
    expect(f.mailer.sent).to.have.length(0);
  });

  it('rotates a suspended instance’s key, and skips one that is no longer running', async () => {
    const f = fakeContext();
    const { instance: suspended } = await activeInstance(f, 'suspended');
    await rotateKey(f.ctx, new FakeJob<RotateKeyData>('rotate-key', { instanceId: suspended.id }));
    expect(f.mailer.sent).to.have.length(1);

    const { instance: cancelled } = await activeInstance(f, 'cancelled');
    expect(await rotateKey(f.ctx, new FakeJob<RotateKeyData>('rotate-key', { instanceId: cancelled.id }))).to.deep.equal({ skipped: 'instance is cancelled' });
    expect(f.calls, 'nothing but forgetting a key an earlier attempt sealed').to.deep.equal(['secrets.delete rotated_api_key']);
  });
});
