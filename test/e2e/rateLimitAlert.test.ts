/**
 * No silent loops: Railway (emulated) answering 429 to every call holds a provisioning step for as long as it lasts;
 * once that has gone on for RATE_LIMIT_ALERT_AFTER, exactly one Slack post and one email name Railway and the jobs
 * that wait, and when Railway answers again the flow goes on and the period of limiting is over.
 */
import { expect } from 'chai';
import { startHarness, waitUntil, type Harness } from '../support/harness.ts';

describe('a provider answering 429 without end (Railway emulated)', function () {
  this.timeout(120_000);
  let h: Harness;

  before(async () => {
    h = await startHarness({ RATE_LIMIT_ALERT_AFTER: '1s' }, { cloud: {} });
  });
  after(async () => h?.close());

  const rateLimited = () => h.railway!.calls.filter((c) => c.status === 429);
  const alertPosts = () => h.slack.posts.filter((p) => p.text?.includes('answered 429'));
  const alertMails = () => h.smtp.messages.filter((m) => m.subject.includes('answered 429'));

  it('alerts once, naming Railway and the waiting jobs, only after RATE_LIMIT_ALERT_AFTER of limiting', async () => {
    h.railway!.failNext(1_000_000, 429, { 'Retry-After': '1' });
    const { customerId, event } = h.checkout({ email: 'rita@example.com', plan: 'starter' });
    expect((await h.deliver(event)).status).to.equal(200);

    const post = await h.slack.waitFor((p) => p.text?.includes('answered 429') ?? false, 30_000);
    const mail = await h.smtp.waitFor((m) => m.subject.includes('answered 429'), 30_000);
    const { rows } = await h.db.query<{ at: Date; detail: Record<string, string> }>(`SELECT at, detail FROM audit WHERE action = 'provider.rate_limited'`);
    expect(rows).to.have.length(1);
    // Raised no sooner than RATE_LIMIT_ALERT_AFTER after Railway's first 429.
    const first = Math.min(...rateLimited().map((c) => c.at));
    expect(rows[0]!.at.getTime() - first).to.be.at.least(1_000);

    const { rows: instances } = await h.db.query<{ workspace_id: string; status: string }>('SELECT workspace_id, status FROM instances');
    const jobId = `${instances[0]!.workspace_id}-create-service`;
    for (const text of [post.text!, mail.text]) {
      expect(text).to.include('railway has answered 429 (rate limited)');
      expect(text).to.include('Queue compute holds 1 running');
      expect(text).to.include(jobId);
    }
    expect(mail.subject).to.include('railway has answered 429');
    expect(instances[0]!.status).to.equal('provisioning'); // held, not failed

    // Railway goes on refusing and the step goes on trying: still the one alert.
    const seen = rateLimited().length;
    await waitUntil(async () => rateLimited().length >= seen + 3, 30_000);
    expect(alertPosts()).to.have.length(1);
    expect(alertMails()).to.have.length(1);

    // Railway answers again: the flow goes on, and the period is over (once this process's counts are written).
    h.railway!.clearFaults();
    await h.waitForStatus(customerId, ['active'], 60_000);
    expect((await h.admin('/metrics')).status).to.equal(200);
    expect(await h.redis.hgetall(`${h.config.queuePrefix}:rate-limited`)).to.deep.equal({});
    expect(alertPosts()).to.have.length(1);
    expect(alertMails()).to.have.length(1);
    expect((await h.db.query(`SELECT 1 FROM audit WHERE action = 'provider.rate_limited'`)).rowCount).to.equal(1);
  });
});
