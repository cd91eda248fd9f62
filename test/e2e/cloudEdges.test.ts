/**
 * Railway and Neon (emulated) at their edges: a deployment that does not finish and one never approved within
 * DEPLOY_TIMEOUT, an archive damaged before the operator's retry, and what Redis holds after a cloud provision.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import { INSTANCE_SECRETS, instanceOwner } from '../../src/instances/secrets.ts';
import { ADMIN, dumpKeys, startHarness, waitUntil, WEBHOOK_SECRET, type Harness, type InstanceView } from '../support/harness.ts';
import { bullBoardAction, waitForIncidents, waitForJob } from '../support/jobWaits.ts';

const KEY_IN_MAIL = /claw_[0-9A-Za-z]{43}/;

describe('deployments that do not finish in time (Railway, emulated)', function () {
  this.timeout(90_000);
  let h: Harness;

  before(async () => {
    h = await startHarness({ DEPLOY_TIMEOUT: '2s' }, { cloud: {} });
  });
  after(async () => h?.close());

  const slackAbout = (email: string) => h.slack.posts.filter((p) => (p.text ?? '').includes(email));
  const alertMailsAbout = (email: string) => h.smtp.messages.filter((m) => m.to.includes('ops@clawdbot.test') && m.text.includes(email));

  async function provisionFailing(email: string): Promise<InstanceView> {
    const { customerId, event } = h.checkout({ email });
    await h.deliver(event);
    const failed = await h.waitForStatus(customerId, ['failed', 'active'], 60_000);
    expect(failed.status).to.equal('failed');
    expect(failed.failure!.step).to.equal('deploy');
    return failed;
  }

  function deploymentsOf(view: InstanceView) {
    const service = h.railway!.services().find((s) => h.railway!.domainsOf(s.id).some((d) => view.accessUrl === `http://${d.domain}`))!;
    return h.railway!.deploymentsOf(service.id);
  }

  it('fails a deployment still in progress after DEPLOY_TIMEOUT, and alerts once', async () => {
    h.railway!.setDeployMs(600_000); // the deployment stays queued far past the deploy timeout
    let failed: InstanceView;
    try {
      failed = await provisionFailing('dora@example.com');
    } finally {
      h.railway!.setDeployMs(300);
    }
    expect(failed.failure!.reason).to.match(/^deployment \S+ did not finish in 2 s$/);
    expect(deploymentsOf(failed).map((d) => d.status)).to.deep.equal(['QUEUED']);

    expect(await waitForIncidents(h, failed.instanceId, 'instance.failed')).to.have.length(1);
    expect(slackAbout('dora@example.com')).to.have.length(1);
    expect(slackAbout('dora@example.com')[0]!.text).to.include('Provisioning failed').and.include('did not finish in 2 s');
    expect(alertMailsAbout('dora@example.com')).to.have.length(1);
    expect(h.smtp.messages.filter((m) => m.to.includes('dora@example.com'))).to.have.length(0);
  });

  it('fails a deployment never approved within DEPLOY_TIMEOUT, after telling operators it waits, each once', async () => {
    h.railway!.nextDeploymentEnds('NEEDS_APPROVAL');
    const failed = await provisionFailing('abe@example.com');
    expect(failed.failure!.reason).to.match(/^deployment \S+ was not approved within 2 s$/);
    expect(deploymentsOf(failed).map((d) => d.status)).to.deep.equal(['NEEDS_APPROVAL']);

    expect(await waitForIncidents(h, failed.instanceId, 'deployment.needs_approval')).to.have.length(1);
    expect(await waitForIncidents(h, failed.instanceId, 'instance.failed')).to.have.length(1);
    const posts = slackAbout('abe@example.com').map((p) => p.text!);
    expect(posts).to.have.length(2);
    expect(posts.filter((text) => text.includes('waits for an operator’s approval'))).to.have.length(1);
    expect(posts.filter((text) => text.includes('Provisioning failed') && text.includes('was not approved'))).to.have.length(1);
    expect(alertMailsAbout('abe@example.com')).to.have.length(2);
  });
});

describe('archives and secrets on Railway and Neon (emulated)', function () {
  this.timeout(90_000);
  let h: Harness;
  let view: InstanceView;
  /** Everything secret about the provisioned customer, read before anything else happens to it. */
  let secrets: { apiKey: string; databaseUrl: string; runtimeSecret: string };

  before(async () => {
    h = await startHarness({ ARCHIVE_AFTER: '1s', PURGE_AFTER: '1h' }, { cloud: {} });
    const { customerId, event } = h.checkout({ email: 'ana@example.com', plan: 'pro' });
    await h.deliver(event);
    view = await h.waitForStatus(customerId, ['active', 'failed'], 60_000);
    expect(view.status, JSON.stringify(view.failure)).to.equal('active');
    const apiKey = KEY_IN_MAIL.exec((await h.smtp.waitFor((m) => m.to.includes('ana@example.com'))).text)![0];
    const owner = instanceOwner(view.instanceId);
    secrets = {
      apiKey,
      databaseUrl: (await h.plane.ctx.secrets.get(owner, INSTANCE_SECRETS.databaseUrl))!,
      runtimeSecret: (await h.plane.ctx.secrets.get(owner, INSTANCE_SECRETS.runtimeSecret))!,
    };
    const memory = await fetch(`${view.accessUrl}/api/memory`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ content: 'Ana flies gliders' }),
    });
    expect(memory.status).to.equal(201);
  });
  after(async () => h?.close());

  it('refuses to delete anything when the stored archive no longer matches what was written', async () => {
    // Railway refuses to delete the service once, after the archive was exported and verified: the archive fails.
    h.railway!.failNext(1, 403, {}, { field: 'serviceDelete', body: { errors: [{ message: 'Not Authorized' }] } });
    expect((await h.admin(`/api/admin/customers/${view.customerId}/deprovision`, { method: 'POST' })).status).to.equal(202);
    await h.waitForStatus(view.customerId, ['cancelled']);
    const { rows } = await h.db.query('SELECT extract(epoch FROM cancelled_at)::bigint AS at, service_id, branch_id FROM instances WHERE id = $1', [
      view.instanceId,
    ]);
    const { at, service_id: serviceId, branch_id: branchRef } = rows[0];
    const archiveId = `${view.workspaceId}-archive-${at}`;
    const first = await waitForJob(h, 'lifecycle', archiveId, ['failed']);
    expect(first.failedReason).to.include('serviceDelete');
    const { rows: archives } = await h.db.query('SELECT location, verified_at FROM archives WHERE instance_id = $1', [view.instanceId]);
    expect(archives[0].verified_at).to.not.equal(null);

    // The stored archive is damaged before the operator retries.
    const file = path.join(h.config.lifecycle.archiveDir, archives[0].location);
    const bytes = await readFile(file);
    bytes[bytes.length >> 1]! ^= 0xff;
    await writeFile(file, bytes);
    expect(await bullBoardAction(h, 'lifecycle', archiveId, 'retry')).to.equal(204);
    await waitUntil(async () => {
      const job = (await h.plane.ctx.queues.get('lifecycle').getJob(archiveId))!;
      return (await job.getState()) === 'failed' && job.failedReason.includes('does not match what was written');
    }, 20_000);

    // Nothing is deleted: the service, the branch and its data, the connection secret, the archive itself.
    expect((await h.waitForStatus(view.customerId, ['cancelled', 'archived'])).status).to.equal('cancelled');
    expect(h.railway!.services({ includeDeleted: true }).find((s) => s.id === serviceId)?.deletedAt).to.equal(null);
    const [projectId, branchId] = (branchRef as string).split('/');
    expect(h.neon!.branches(projectId!).some((b) => b.branch.id === branchId)).to.equal(true);
    expect(await h.plane.ctx.secrets.get(instanceOwner(view.instanceId), INSTANCE_SECRETS.databaseUrl)).to.equal(secrets.databaseUrl);
    const customerDb = new pg.Client({ connectionString: secrets.databaseUrl });
    await customerDb.connect();
    const memories = await customerDb.query('SELECT content FROM memories').finally(() => customerDb.end());
    expect(memories.rows.map((r) => r.content)).to.deep.equal(['Ana flies gliders']);
    expect((await readFile(file)).equals(bytes)).to.equal(true);
    const { rows: trail } = await h.db.query(`SELECT action FROM audit WHERE instance_id = $1 AND action = 'instance.archived'`, [view.instanceId]);
    expect(trail).to.have.length(0);
  });

  it('leaves no API key, database URL or password, or runtime secret anywhere in Redis', async () => {
    const dump = (await dumpKeys(h.redis, `${h.config.queuePrefix}:*`)).join('\n');
    expect(dump).to.include(view.workspaceId); // the queues are really there
    const forbidden = {
      'customer API key': secrets.apiKey,
      'database URL': secrets.databaseUrl,
      'database password': decodeURIComponent(new URL(secrets.databaseUrl).password),
      'runtime secret': secrets.runtimeSecret,
      'Railway token': h.config.railway!.auth.token,
      'Neon API key': h.config.neon!.apiKey,
      'Anthropic API key': h.model.apiKey,
      'secrets key': h.config.secretsKey.toString('base64'),
      'admin token': ADMIN.token,
      'admin password': ADMIN.password,
      'Stripe webhook secret': WEBHOOK_SECRET,
    };
    for (const [what, secret] of Object.entries(forbidden)) {
      expect(secret.length, what).to.be.greaterThan(8);
      expect(dump.includes(secret), what).to.equal(false);
    }
    expect(dump).to.not.match(/claw_[0-9A-Za-z]{20,}/);
    expect(dump).to.not.match(/postgres(ql)?:\/\/[^"\s]*:[^"\s]*@/);
  });
});
