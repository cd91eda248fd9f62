/**
 * A Neon project filling up, end to end (Railway and Neon emulated): with NEON_BRANCH_LIMIT=5 the project holds its
 * default branch and four customers. Four sign-ups at once all succeed, operators are told once (one Slack post, one
 * email) when it reaches 80 %, and the fifth sign-up fails with a reason that says every project is full.
 */
import { expect } from 'chai';
import { startHarness, waitUntil, type Harness } from '../support/harness.ts';

describe('a Neon project reaching its branch limit (emulated)', function () {
  this.timeout(120_000);
  let h: Harness;

  before(async () => {
    h = await startHarness({ NEON_BRANCH_LIMIT: '5' }, { cloud: {} });
  });
  after(async () => h?.close());

  const titled = 'reached 80 % of its branch limit';

  it('tells operators once at 80 %, and fails only the sign-up that finds every project full', async () => {
    const [projectId] = h.config.neon!.projectIds;
    const signups = ['kai', 'lea', 'max', 'noa'].map((n) => h.checkout({ email: `${n}@example.com` }));
    for (const s of signups) expect((await h.deliver(s.event)).status).to.equal(200);
    const views = await Promise.all(signups.map((s) => h.waitForStatus(s.customerId, ['active', 'failed'], 90_000)));
    expect(views.map((v) => v.status), JSON.stringify(views.map((v) => v.failure))).to.deep.equal(['active', 'active', 'active', 'active']);
    expect(h.neon!.branches(projectId!)).to.have.length(5);

    // One incident for the crossing (whichever sign-up made it), its Slack post and email sent.
    const incidents = async () => (await h.db.query(`SELECT id, detail FROM audit WHERE action = 'provider.alert'`)).rows;
    await waitUntil(async () => (await incidents()).length > 0, 30_000);
    const [incident, ...more] = await incidents();
    expect(more).to.deep.equal([]);
    expect(incident.detail).to.include({ incidentKey: `neon-capacity/${projectId}/1`, step: 'create-branch' });
    for (const channel of ['slack', 'email']) await h.completedJob('alerts', `alert-${incident.id}-${channel}`);

    const last = h.checkout({ email: 'ola@example.com' });
    await h.deliver(last.event);
    const failed = await h.waitForStatus(last.customerId, ['active', 'failed'], 60_000);
    expect(failed.status).to.equal('failed');
    expect(failed.failure!.step).to.equal('create-branch');
    expect(failed.failure!.reason).to.match(/^every Neon project in NEON_PROJECT_IDS has reached its branch limit/);
    expect(failed.failure!.reason).to.include(`${projectId} holds 5 of 5 branches`);
    expect(h.neon!.branches(projectId!)).to.have.length(5);
    await h.slack.waitFor((p) => (p.text ?? '').includes('ola@example.com'));

    expect((await incidents()).length).to.equal(1);
    const posts = h.slack.posts.filter((p) => (p.text ?? '').includes(titled));
    expect(posts).to.have.length(1);
    expect(posts[0]!.text).to.include(`Neon project ${projectId}`).and.include('holds 4 of 5 branches (80 %)');
    expect(h.smtp.messages.filter((m) => m.to.includes('ops@clawdbot.test') && m.text.includes(titled))).to.have.length(1);
  });
});
