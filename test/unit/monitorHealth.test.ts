/** The health monitor's rules (src/jobs/fleet/health.ts), probe by probe. */
import { expect } from 'chai';
import { assess, type HealthRecord, type MonitorLimits, type Probe } from '../../src/jobs/fleet/health.ts';

const LIMITS: MonitorLimits = { failures: 3, maxRestarts: 2, startGraceMs: 10_000 };
const T0 = Date.parse('2026-12-03T12:00:00Z');
const at = (s: number) => new Date(T0 + s * 1000);
const healthy: Probe = { state: 'healthy', error: null };
const silent: Probe = { state: 'down', error: 'GET /health failed: ECONNREFUSED' };
const dead: Probe = { state: 'down', error: 'killed by SIGKILL', notRunning: true };

/** Runs probes one a minute (or as given) from no record, collecting the actions. */
function run(probes: (Probe | [Probe, number])[], start: HealthRecord | null = null) {
  let record = start;
  const actions: string[] = [];
  probes.forEach((p, i) => {
    const [probe, second] = Array.isArray(p) ? p : [p, i * 60];
    const { next, action } = assess(record, probe, at(second), LIMITS);
    if (action?.kind === 'restart' && action.raiseIncident) next.incidentId ??= `inc-${i}`;
    if (action?.kind === 'crash-loop') next.incidentId ??= `loop-${i}`;
    actions.push(action ? `${action.kind}${action.kind === 'restart' && action.raiseIncident ? '+incident' : ''}` : '-');
    record = next;
  });
  return { record: record!, actions };
}

describe('health monitor rules', () => {
  it('a first healthy probe starts the record: healthy since then, nothing to do', () => {
    const { record, actions } = run([healthy]);
    expect(actions).to.deep.equal(['-']);
    expect(record).to.deep.include({ state: 'healthy', since: at(0), failures: 0, restartCount: 0, incidentId: null, crashLoop: false });
  });

  it('restarts after MONITOR_FAILURES consecutive failures, raising the incident once, and recovers once', () => {
    const { record, actions } = run([healthy, dead, dead, dead, healthy, healthy]);
    expect(actions).to.deep.equal(['-', '-', '-', 'restart+incident', 'recovered', '-']);
    expect(record).to.deep.include({ state: 'healthy', failures: 0, restartCount: 1, incidentId: null, lastError: 'killed by SIGKILL' });
  });

  it('a success in between resets the count: two failures, a success, two failures restart nothing', () => {
    expect(run([dead, dead, healthy, dead, dead]).actions).to.deep.equal(['-', '-', '-', '-', '-']);
  });

  it('degraded answers count as failures, and "since" follows the state', () => {
    const degraded: Probe = { state: 'degraded', error: 'GET /health answered 503' };
    const { record, actions } = run([healthy, degraded, degraded, silent]);
    expect(actions).to.deep.equal(['-', '-', '-', 'restart+incident']);
    expect(record.since).to.deep.equal(at(180));
  });

  it('gives a restarted runtime that runs but is silent its start-up grace; a dead one gets none', () => {
    // restart at 120 s; silent probes at 121–129 s are within the 10 s grace
    const silentAfter = run([dead, dead, dead, [silent, 121], [silent, 125], [silent, 129], [silent, 131], [silent, 132], [silent, 133]]);
    expect(silentAfter.actions).to.deep.equal(['-', '-', 'restart+incident', '-', '-', '-', '-', '-', 'restart']);
    const deadAfter = run([dead, dead, dead, [dead, 121], [dead, 122], [dead, 123]]);
    expect(deadAfter.actions).to.deep.equal(['-', '-', 'restart+incident', '-', '-', 'restart']);
  });

  it('stops after MONITOR_MAX_RESTARTS restarts within an hour: one crash-loop action, then nothing', () => {
    const { record, actions } = run(Array.from({ length: 14 }, () => dead));
    expect(actions).to.deep.equal(['-', '-', 'restart+incident', '-', '-', 'restart', '-', '-', 'crash-loop', '-', '-', '-', '-', '-']);
    expect(record).to.deep.include({ crashLoop: true, restartCount: 2, incidentId: 'inc-2' });
  });

  it('restarts older than an hour do not count towards a crash loop', () => {
    const probes: (Probe | [Probe, number])[] = [[dead, 0], [dead, 1], [dead, 2], [dead, 3], [dead, 4], [dead, 5], [healthy, 6]];
    const { record } = run(probes);
    expect(record.restarts).to.have.length(2);
    const later = run([[dead, 3700], [dead, 3701], [dead, 3702]], record);
    expect(later.actions).to.deep.equal(['-', '-', 'restart+incident']);
    expect(later.record.restarts, 'the old ones dropped').to.deep.equal([at(3702)]);
    expect(later.record.restartCount).to.equal(3);
  });

  it('a crash loop that becomes healthy (an operator fixed it) sends the recovery and restarts again if needed', () => {
    const loop = run(Array.from({ length: 9 }, () => dead)).record;
    const { record, actions } = run([[healthy, 600]], loop);
    expect(actions).to.deep.equal(['recovered']);
    expect(record).to.deep.include({ crashLoop: false, incidentId: null });
  });

  it('with no restarts allowed, the threshold is a crash loop at once', () => {
    let record: HealthRecord | null = null;
    const kinds: (string | null)[] = [];
    for (let i = 0; i < 3; i++) {
      const r = assess(record, dead, at(i), { ...LIMITS, maxRestarts: 0 });
      kinds.push(r.action?.kind ?? null);
      record = r.next;
    }
    expect(kinds).to.deep.equal([null, null, 'crash-loop']);
  });
});
