/**
 * A provisioned customer uses their assistant: chat through the deployed runtime with the emailed key, webhooks
 * from an integration, and the usage notice at 80 % travelling runtime → control plane → customer's inbox.
 */
import { createHmac } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import { INSTANCE_SECRETS, instanceOwner } from '../../src/instances/secrets.ts';
import { QUEUES } from '../../src/queues/catalogue.ts';
import { signNotice } from '../../core/usageNotice.ts';
import { startHarness, waitUntil, type Harness, type InstanceView } from '../support/harness.ts';

describe('a provisioned assistant in use', function () {
  this.timeout(60_000);
  let h: Harness;
  let view: InstanceView;
  let key: string;
  let instanceId: string;
  let databaseUrl: string;
  const api = (path: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(`${view.accessUrl}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });

  before(async () => {
    h = await startHarness();
    const { customerId, event } = h.checkout({ email: 'mia@example.com', name: 'Mia', plan: 'starter' });
    await h.deliver(event);
    view = await h.waitForStatus(customerId, ['active', 'failed']);
    expect(view.status).to.equal('active');
    const mail = await h.smtp.waitFor((m) => m.to.includes('mia@example.com'));
    key = /claw_[0-9A-Za-z]{43}/.exec(mail.text)![0];
    instanceId = view.instanceId;
    databaseUrl = (await h.plane.ctx.secrets.get(instanceOwner(instanceId), INSTANCE_SECRETS.databaseUrl))!;
  });
  after(async () => h?.close());

  it('chats with the model the control plane configured, using the workspace it seeded', async () => {
    const response = await api('/api/chat', { message: 'Hello, who am I?' });
    expect(response.status).to.equal(200);
    expect(((await response.json()) as { reply: string }).reply).to.equal('Echo: Hello, who am I?');
    const system = JSON.stringify(h.model.lastRequest()!.body.system);
    expect(system).to.include('Mia').and.include('mia@example.com');
  });

  it('emails the customer once when the runtime reports 80 % of the month used', async () => {
    // 3,999 of the Starter plan's 5,000 messages are already used this month; the next one crosses 80 %.
    const customerDb = new pg.Client({ connectionString: databaseUrl });
    await customerDb.connect();
    await customerDb.query(
      `INSERT INTO usage_tracking (day, messages) VALUES (current_date - 0, 3999)
       ON CONFLICT (day) DO UPDATE SET messages = usage_tracking.messages + 3999`,
    );
    await customerDb.end();
    expect((await api('/api/chat', { message: 'one more' })).status).to.equal(200);
    const mail = await h.smtp.waitFor((m) => m.to.includes('mia@example.com') && m.subject.includes('80 %'));
    expect(mail.text).to.include('of the 5,000 messages');
    const { rows } = await h.db.query('SELECT threshold, used FROM usage_notices WHERE instance_id = $1', [instanceId]);
    expect(rows).to.deep.equal([{ threshold: 80, used: 4001 }]);
    expect((await api('/api/chat', { message: 'and another' })).status).to.equal(200);
    // The notice's email job (one id per instance, month and threshold, however often notified) is done.
    const { rows: [notice] } = await h.db.query('SELECT month FROM usage_notices WHERE instance_id = $1 AND threshold = 80', [instanceId]);
    await h.completedJob(QUEUES.lifecycle, `usage-${instanceId}-${notice.month}-80`);
    expect(h.smtp.messages.filter((m) => m.to.includes('mia@example.com') && m.subject.includes('80 %'))).to.have.length(1);
  });

  it('accepts usage notices only when signed with the instance’s own secret', async () => {
    const body = JSON.stringify({ workspaceId: view.workspaceId, month: '2026-01', threshold: 100, used: 5000, limit: 5000 });
    const send = (signature: string, workspace = view.workspaceId) =>
      fetch(`${h.url}/api/runtime/usage`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-clawdbot-signature': signature, 'x-clawdbot-workspace': workspace },
        body,
      });
    expect((await send(signNotice('not-the-secret', body))).status).to.equal(401);
    expect((await send('t=1,v1=' + createHmac('sha256', 'x').update('y').digest('hex'))).status).to.equal(401);
    const secret = (await h.plane.ctx.secrets.get(instanceOwner(instanceId), INSTANCE_SECRETS.runtimeSecret))!;
    expect((await send(signNotice(secret, body), 'ws-unknown')).status).to.equal(401);
    const stale = await send(signNotice(secret, body, Math.floor(Date.now() / 1000) - 3600));
    expect(stale.status).to.equal(401);
    const first = await send(signNotice(secret, body));
    expect(first.status).to.equal(200);
    expect(await first.json()).to.deep.equal({ received: true, duplicate: false });
    expect(await (await send(signNotice(secret, body))).json()).to.deep.equal({ received: true, duplicate: true });
    // Both notices were taken (the job added twice under one id) before their answers: that one job is all there is.
    await h.completedJob(QUEUES.lifecycle, `usage-${instanceId}-2026-01-100`);
    expect(h.smtp.messages.filter((m) => m.subject.includes('monthly limit'))).to.have.length(1);
  });

  it('takes a signed integration webhook once, and the agent’s handling shows in the memory API and /status', async () => {
    const created = await api('/api/webhooks', { source: 'github', scheme: 'hmac' });
    expect(created.status).to.equal(201);
    const { secret } = (await created.json()) as { secret: string };
    const payload = JSON.stringify({ action: 'opened', issue: { title: 'Login page is slow' } });
    const signature = `sha256=${createHmac('sha256', secret).update(payload).digest('hex')}`;
    const deliver = (sig: string) =>
      fetch(`${view.accessUrl}/webhook/github`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-hub-signature-256': sig, 'x-github-delivery': 'delivery-1' },
        body: payload,
      });
    expect((await deliver('sha256=' + '0'.repeat(64))).status).to.equal(401);
    expect((await deliver(signature)).status).to.equal(202);
    expect((await deliver(signature)).status).to.equal(202);
    await waitUntil(async () => {
      const memories = (await (await api('/api/memory?tag=github')).json()) as { memories: { content: string }[] };
      return memories.memories.some((m) => m.content.includes('delivery-1'));
    }, 15_000);
    const turns = h.model.requests.filter((r) => JSON.stringify(r.body.messages).includes('Login page is slow'));
    expect(turns).to.have.length(1);
    const status = (await (await api('/status')).json()) as { webhooks: { processed: number } };
    expect(status.webhooks.processed).to.equal(1);
  });
});
