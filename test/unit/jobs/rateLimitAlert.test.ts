/**
 * No silent loops, on fakes: a provider that answers 429 without end raises one incident once the limiting has
 * lasted RATE_LIMIT_ALERT_AFTER, and a new period of limiting (after a call got through, or after a long silence) is
 * a new incident.
 */
import { expect } from 'chai';
import { RateLimitedError } from '../../../src/errors.ts';
import { runStep } from '../../../src/jobs/step.ts';
import { noteRateLimited, RATE_LIMIT_INCIDENT } from '../../../src/operations/rateLimitAlert.ts';
import { RATE_LIMIT_GAP_MS } from '../../../src/queues/rateLimits.ts';
import type { ProvisionData } from '../../../src/queues/catalogue.ts';
import { FakeJob, fakeContext, type Fakes } from '../../support/fakes.ts';
import { rejection } from '../../support/rejection.ts';

function computeJob(f: Fakes): FakeJob<ProvisionData> {
  const instance = f.instances.add({ status: 'provisioning' });
  return new FakeJob<ProvisionData>('create-service', { instanceId: instance.id, workspaceId: instance.workspace_id }, 'compute');
}

const incidents = (f: Fakes) => f.audit.entries.filter((e) => e.action === RATE_LIMIT_INCIDENT);

describe('rate-limit alert (fakes)', () => {
  it('raises nothing before RATE_LIMIT_ALERT_AFTER, then one incident naming the provider and the held jobs', async () => {
    const f = fakeContext({ RATE_LIMIT_ALERT_AFTER: '15m' });
    const job = computeJob(f);
    f.jobs.held = { waiting: 3, delayed: 1, active: 1, ids: [job.id, 'ws-b-create-service', 'ws-c-deploy'] };
    const t0 = 1_700_000_000_000;
    // A 429 every half minute (the job runs again after each pause) for just under 15 minutes.
    for (let ms = 0; ms < 15 * 60_000; ms += 30_000) await noteRateLimited(f.ctx, job, 1_000, t0 + ms);
    await noteRateLimited(f.ctx, job, 1_000, t0 + 15 * 60_000 - 1);
    expect(incidents(f)).to.deep.equal([]);

    await noteRateLimited(f.ctx, job, 1_000, t0 + 15 * 60_000);
    await noteRateLimited(f.ctx, job, 1_000, t0 + 15.5 * 60_000); // alerted already: nothing more
    expect(incidents(f)).to.have.length(1);
    const detail = incidents(f)[0]!.detail as Record<string, string>;
    expect(detail.title).to.equal('fake has answered 429 (rate limited) for 15 min');
    expect(detail.reason).to.include('fake has answered every call with 429 since 2023-11-14T22:13:20.000Z');
    expect(detail.reason).to.include('Queue compute holds 1 running, 3 waiting and 1 delayed job(s), such as');
    expect(detail.reason).to.include(`${job.id}, ws-b-create-service, ws-c-deploy`);
    expect(detail.reason).to.include('COMPUTE_RATE_LIMIT');
    expect(detail.incidentKey).to.equal(`${RATE_LIMIT_INCIDENT}:fake:${t0}`);
    expect(f.jobs.of('addAlerts')).to.deep.equal([[incidents(f)[0]!.id, { queue: 'compute', jobId: job.id }]]);
  });

  it('starts a new period after a call got through, and after a silence longer than the wait asked for', async () => {
    const f = fakeContext({ RATE_LIMIT_ALERT_AFTER: '1s' });
    const job = computeJob(f);
    await noteRateLimited(f.ctx, job, 1_000, 0);
    await f.ctx.rateLimitPeriods.answered(new Map([['fake', 500]])); // a call got through at 0.5 s
    await noteRateLimited(f.ctx, job, 1_000, 900);
    await noteRateLimited(f.ctx, job, 1_000, 1_100); // 1.1 s after the first 429, but 0.2 s into this period
    expect(incidents(f)).to.deep.equal([]);
    await noteRateLimited(f.ctx, job, 1_000, 1_900);
    expect(incidents(f).map((e) => (e.detail as { incidentKey: string }).incidentKey)).to.deep.equal([`${RATE_LIMIT_INCIDENT}:fake:900`]);

    // Nothing tried for longer than the wait asked for and the gap: the next 429 begins afresh, then alerts again.
    const later = 1_900 + 1_000 + RATE_LIMIT_GAP_MS + 1;
    await noteRateLimited(f.ctx, job, 1_000, later);
    expect(incidents(f)).to.have.length(1);
    await noteRateLimited(f.ctx, job, 1_000, later + 1_000);
    expect(incidents(f)).to.have.length(2);
  });

  it('keeps periods per provider: the database queue is its own provider', async () => {
    const f = fakeContext({ RATE_LIMIT_ALERT_AFTER: '1s' });
    const compute = computeJob(f);
    const database = new FakeJob<ProvisionData>('create-branch', compute.data, 'database');
    Object.defineProperty(f.database, 'kind', { value: 'fake-db' });
    await noteRateLimited(f.ctx, compute, 1_000, 0);
    await noteRateLimited(f.ctx, database, 1_000, 1_000);
    expect(incidents(f)).to.deep.equal([]); // the database provider began limiting only now
    expect([...f.rateLimitPeriods.periods.keys()]).to.deep.equal(['fake', 'fake-db']);
  });

  it('is what the step runner does on a 429, after pausing the queue', async () => {
    const f = fakeContext({ RATE_LIMIT_ALERT_AFTER: '0' });
    const job = computeJob(f);
    const limited = () => Promise.reject(new RateLimitedError('Railway rate limit reached (serviceCreate)', 1_000));
    for (let i = 0; i < 2; i++) expect(((await rejection(runStep(f.ctx, job, 'token', limited))) as Error).name).to.equal('RateLimitError');
    expect(f.jobs.of('pause')).to.deep.equal([['compute', 1_000], ['compute', 1_000]]);
    expect(incidents(f)).to.have.length(1);
    expect(f.jobs.of('addAlerts')).to.have.length(1);
    expect(f.instances.get(job.data.instanceId).status).to.equal('provisioning');
  });
});
