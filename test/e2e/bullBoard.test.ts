/**
 * Bull Board's doors: an action needs the board's own origin and leaves an audit row naming the operator; a viewer
 * may look but not act.
 */
import { expect } from 'chai';
import { QUEUES } from '../../src/queues/catalogue.ts';
import { ADMIN, startHarness, type Harness } from '../support/harness.ts';
import { bullBoardHeaders } from '../support/jobWaits.ts';

const VIEWER = { user: 'watcher', password: 'viewer-password-0123' };

describe('Bull Board actions', function () {
  this.timeout(60_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ ADMIN_VIEWER_USER: VIEWER.user, ADMIN_VIEWER_PASSWORD: VIEWER.password }, { webOnly: true });
  });
  after(async () => h?.close());

  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  /** A job waiting an hour on the fleet queue (no worker runs here): promoting it is an action whose effect shows. */
  async function delayedJob(): Promise<string> {
    const job = await h.plane.ctx.queues.get(QUEUES.fleet).add('reconcile', {}, { delay: 3_600_000 });
    return job.id!;
  }
  const promote = (id: string, headers: Record<string, string>) =>
    fetch(`${h.url}/admin/queues/api/queues/${QUEUES.fleet}/${id}/promote`, { method: 'PUT', headers });
  const stateOf = async (id: string) => (await h.plane.ctx.queues.get(QUEUES.fleet).getJob(id))!.getState();
  const audited = async () =>
    (await h.db.query(`SELECT actor, detail FROM audit WHERE action = 'bullboard.action' ORDER BY id`)).rows as { actor: string; detail: { method: string; path: string } }[];

  it('refuses an action without the board’s origin, or from another site, and changes nothing', async () => {
    const id = await delayedJob();
    const auth = { authorization: basic(ADMIN.user, ADMIN.password) };
    for (const headers of [auth, { ...auth, origin: 'https://evil.example' }, { ...auth, referer: 'https://evil.example/page' }, { ...auth, origin: 'null' }]) {
      const refused = await promote(id, headers);
      expect(refused.status, JSON.stringify(headers)).to.equal(403);
      expect(((await refused.json()) as { error: string }).error).to.equal('cross_origin');
    }
    expect(await stateOf(id)).to.equal('delayed');
    expect(await audited()).to.deep.equal([]);
  });

  it('acts from the board’s own origin (Origin or Referer) and audits the operator and what was done', async () => {
    const first = await delayedJob();
    expect((await promote(first, bullBoardHeaders(h))).status).to.equal(204);
    expect(await stateOf(first)).to.equal('waiting');
    const second = await delayedJob();
    const viaReferer = { authorization: basic(ADMIN.user, ADMIN.password), referer: `${h.url}/admin/queues/queue/fleet` };
    expect((await promote(second, viaReferer)).status).to.equal(204);
    expect(await audited()).to.deep.equal([
      { actor: `operator:${ADMIN.user}`, detail: { method: 'PUT', path: `/admin/queues/api/queues/fleet/${first}/promote` } },
      { actor: `operator:${ADMIN.user}`, detail: { method: 'PUT', path: `/admin/queues/api/queues/fleet/${second}/promote` } },
    ]);
  });

  it('lets a viewer look at the queues but not act, even from the board', async () => {
    const auth = basic(VIEWER.user, VIEWER.password);
    const queues = await fetch(`${h.url}/admin/queues/api/queues?activeQueue=fleet&status=delayed&page=1`, { headers: { authorization: auth } });
    expect(queues.status).to.equal(200);
    const listed = (await queues.json()) as { queues: { name: string; readOnlyMode: boolean }[] };
    expect(listed.queues.find((q) => q.name === QUEUES.fleet)!.readOnlyMode).to.equal(true);
    const id = await delayedJob();
    const refused = await promote(id, { authorization: auth, origin: h.url });
    expect(refused.status).to.equal(403);
    expect(((await refused.json()) as { error: string }).error).to.equal('read_only');
    expect(await stateOf(id)).to.equal('delayed');
    expect((await fetch(`${h.url}/admin/queues`, { headers: { authorization: basic(VIEWER.user, 'wrong-password-000') } })).status).to.equal(401);
  });
});
