/**
 * A step that fails for good: the instance is failed, operators get exactly one Slack post and one email with the
 * step, the reason and a Bull Board link, what was made is on record, and an operator's retry resumes the flow.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { QUEUES } from '../../src/queues/catalogue.ts';
import { startHarness, waitUntil, type Harness } from '../support/harness.ts';
import { bullBoardHeaders } from '../support/jobWaits.ts';

describe('a provisioning step that fails for good', function () {
  this.timeout(90_000);
  let h: Harness;
  let dir: string;
  let marker: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'clawdbot-late-'));
    marker = path.join(dir, 'ready');
    h = await startHarness({
      // The runtime does not answer until the marker exists, so the health check runs out of time.
      RUNTIME_ARGS: `--import tsx ${path.resolve('test/support/lateRuntime.ts')} ${marker}`,
      HEALTH_CHECK_TIMEOUT: '1500ms',
    });
  });
  after(async () => {
    await h?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('abandons a failed provisioning: the flow is removed and what it made is undone', async () => {
    const { customerId, event } = h.checkout({ email: 'jill@example.com' });
    await h.deliver(event);
    const failed = await h.waitForStatus(customerId, ['failed', 'active']);
    expect(failed.status).to.equal('failed');
    const { rows } = await h.db.query('SELECT service_id, database_name FROM instances WHERE id = $1', [failed.instanceId]);
    const [service, database] = [rows[0].service_id as string, rows[0].database_name as string];
    const exists = async () => ({
      service: (await h.db.query('SELECT 1 FROM local_services WHERE name = $1', [service])).rowCount,
      database: (await h.db.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rowCount,
    });
    expect(await exists()).to.deep.equal({ service: 1, database: 1 });

    const active = await h.admin(`/api/admin/instances/${failed.instanceId}/abandon`, { method: 'POST' });
    expect(active.status).to.equal(202);
    const view = await h.waitForStatus(customerId, ['abandoned']);
    expect(view.status).to.equal('abandoned');
    expect(await exists()).to.deep.equal({ service: 0, database: 0 });
    expect(await h.plane.ctx.queues.get(QUEUES.provision).getJob(`${failed.workspaceId}-finalize`)).to.equal(undefined);
    expect(await h.plane.ctx.queues.get(QUEUES.provision).getJob(`${failed.workspaceId}-health-check`)).to.equal(undefined);
    const audit = await h.db.query("SELECT detail FROM audit WHERE action = 'instance.abandoned' AND instance_id = $1", [failed.instanceId]);
    expect(audit.rows[0].detail.undone).to.deep.equal([`service ${service}`, 'workspace', `database ${database}`]);

    const again = await h.admin(`/api/admin/instances/${failed.instanceId}/abandon`, { method: 'POST' });
    expect(again.status).to.equal(409);
  });

  it('fails the instance, alerts once by Slack and email, and an operator retry finishes it', async () => {
    const attemptsBefore = h.slack.attempts;
    h.slack.failNext(1, 503); // the alert itself is retried, and still posted once
    const { customerId, event } = h.checkout({ email: 'hank@example.com', name: 'Hank' });
    await h.deliver(event);
    const failed = await h.waitForStatus(customerId, ['failed', 'active']);
    expect(failed.status).to.equal('failed');
    expect(failed.failure!.step).to.equal('health-check');
    expect(failed.failure!.reason).to.include('/health');
    expect(failed.steps.find((s) => s.name === 'health-check')!.state).to.equal('failed');
    expect(failed.steps.filter((s) => s.state === 'completed').map((s) => s.name)).to.have.members([
      'create-branch', 'create-service', 'build-workspace', 'deploy',
    ]);

    const post = await h.slack.waitFor((p) => (p.text ?? '').includes('hank@example.com'));
    expect(post.text).to.include('health-check').and.include(`${h.config.publicUrl}/admin/queues/queue/provision/${failed.workspaceId}-health-check`);
    const mail = await h.smtp.waitFor((m) => m.to.includes('ops@clawdbot.test') && m.text.includes('hank@example.com'));
    expect(mail.text).to.include('health-check').and.include('/health').and.include(failed.workspaceId);
    // One incident, and both its alerts sent (their jobs completed, the Slack one after a retry): nothing more of it comes.
    const { rows: incidents } = await h.db.query(`SELECT id FROM audit WHERE instance_id = $1 AND action = 'instance.failed'`, [failed.instanceId]);
    expect(incidents).to.have.length(1);
    for (const channel of ['slack', 'email']) {
      await h.completedJob(QUEUES.alerts, `alert-${incidents[0].id}-${channel}`);
    }
    const hanksPosts = () => h.slack.posts.filter((p) => (p.text ?? '').includes('hank@example.com'));
    expect(hanksPosts()).to.have.length(1);
    expect(h.slack.attempts - attemptsBefore).to.equal(2);
    expect(h.smtp.messages.filter((m) => m.to.includes('ops@clawdbot.test') && m.text.includes('hank@example.com'))).to.have.length(1);
    expect(h.smtp.messages.filter((m) => m.to.includes('hank@example.com'))).to.have.length(0);

    // Nothing half-made is unaccounted for: what was created is on the instance's record.
    const { rows } = await h.db.query('SELECT service_id, database_name FROM instances WHERE workspace_id = $1', [failed.workspaceId]);
    expect(rows[0].service_id).to.be.a('string');
    expect(rows[0].database_name).to.be.a('string');
    const audit = await h.db.query("SELECT detail FROM audit WHERE action = 'instance.failed' AND instance_id = $1", [failed.instanceId]);
    expect(audit.rows).to.have.length(1);

    const deployedOf = async () =>
      (await h.db.query('SELECT deployment_id FROM local_services WHERE name = $1', [rows[0].service_id])).rows[0].deployment_id;
    const deployedBefore = await deployedOf();
    // The operator fixes the cause, sees the runtime answer (however long it takes to start), and retries the failed
    // job from Bull Board: the flow resumes at that step.
    await writeFile(marker, 'ready');
    await waitUntil(async () => (await fetch(`${failed.accessUrl}/health`).catch(() => undefined))?.status === 200, 30_000);
    const retry = await fetch(`${h.url}/admin/queues/api/queues/provision/${failed.workspaceId}-health-check/retry`, {
      method: 'PUT',
      headers: bullBoardHeaders(h),
    });
    expect(retry.status).to.equal(204);
    const retriedTwice = await h.admin(`/api/admin/instances/${failed.instanceId}/retry`, { method: 'POST' });
    expect(retriedTwice.status).to.equal(409);
    const active = await h.waitForStatus(customerId, ['active']);
    expect(active.failure).to.equal(null);
    await h.smtp.waitFor((m) => m.to.includes('hank@example.com') && m.subject === 'Your Clawdbot is ready');
    const deployedAfter = await deployedOf();
    expect(deployedAfter, 'resumed at the failed step: no second deployment').to.equal(deployedBefore);
    await waitUntil(async () => (await h.plane.ctx.queues.get(QUEUES.provision).getJob(`${failed.workspaceId}-finalize`))!.isCompleted());
    expect(hanksPosts()).to.have.length(1);
  });
});
