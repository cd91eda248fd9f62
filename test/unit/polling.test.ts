import { expect } from 'chai';
import { nextPollDelay, POLL, typicalOf, type TypicalDuration } from '../../src/jobs/pollTiming.ts';
import { deploymentStateOf } from '../../src/providers/compute/railway.ts';
import { OperationTimes } from '../../src/providers/database/neon.ts';

/** The times a deployment that ends at `endMs` is looked at, until it is seen done. */
function looks(endMs: number, typical: TypicalDuration | null): number[] {
  const at: number[] = [];
  let elapsed = 0;
  do {
    elapsed += nextPollDelay(elapsed, typical);
    at.push(elapsed);
  } while (elapsed < endMs);
  return at;
}

describe('deployment polling', () => {
  it('without history, doubles the wait from half a second up to 15 s: a 60 s deployment costs at most 10 looks', () => {
    expect(looks(60_000, null).length).to.be.at.most(10);
    expect(nextPollDelay(0, null)).to.equal(POLL.initialMs);
    expect(nextPollDelay(10 * 60_000, null)).to.equal(POLL.maxMs);
  });

  it('with history of 20 s deployments, sees one of the usual length within the brief interval of its end, in three looks or fewer', () => {
    const typical = { fastMs: 19_800, slowMs: 20_100 };
    const seen = looks(20_000, typical);
    expect(seen[0]).to.equal(19_800); // no look before the fastest usual one could be done
    expect(seen.at(-1)! - 20_000).to.be.at.most(POLL.briefMinMs);
    expect(seen.length).to.be.at.most(3);
  });

  it('closes in on the usual end within a few deployments of 20 s, starting from none', () => {
    const samples: { pendingMs: number; readyMs: number }[] = [];
    const overshoots: number[] = [];
    for (let deployment = 0; deployment < 5; deployment++) {
      const typical = samples.length
        ? typicalOf(Math.max(...samples.map((x) => x.pendingMs)), Math.min(...samples.map((x) => x.readyMs)))
        : null;
      const seen = looks(20_000, typical);
      expect(seen.length, `deployment ${deployment}`).to.be.at.most(10);
      overshoots.push(seen.at(-1)! - 20_000);
      samples.push({ pendingMs: seen.at(-2) ?? 0, readyMs: seen.at(-1)! });
    }
    expect(overshoots[0]).to.be.above(5_000); // the first one, seen by doubling waits
    expect(overshoots.at(-1)).to.be.at.most(POLL.briefMinMs);
  });

  it('keeps looks few when usual durations spread, and backs off again for one far slower than usual', () => {
    const spread = { fastMs: 60_000, slowMs: 180_000 };
    expect(looks(180_000, spread).length).to.be.at.most(1 + 120_000 / POLL.briefMaxMs + 1);
    const slow = looks(10 * 60_000, { fastMs: 19_800, slowMs: 20_100 });
    expect(slow.length).to.be.at.most(10 + 40);
    expect(nextPollDelay(5 * 60_000, { fastMs: 19_800, slowMs: 20_100 })).to.equal(POLL.maxMs);
  });

  it('reads every Railway deployment status', () => {
    const expected: Record<string, string> = {
      SUCCESS: 'success', SLEEPING: 'success', FAILED: 'failed', CRASHED: 'failed', REMOVED: 'failed', REMOVING: 'failed',
      SKIPPED: 'failed', NEEDS_APPROVAL: 'needs_approval', QUEUED: 'in_progress', INITIALIZING: 'in_progress',
      WAITING: 'in_progress', BUILDING: 'in_progress', DEPLOYING: 'in_progress', SOMETHING_NEW: 'in_progress',
    };
    for (const [status, state] of Object.entries(expected)) expect(deploymentStateOf(status), status).to.equal(state);
  });
});

describe('Neon operation times', () => {
  it('starts from the initial guess, learns a moving average, and learns an operation done at once', () => {
    const times = new OperationTimes(300, true);
    expect(times.expected('create_branch')).to.equal(300);
    times.observe('create_branch', 1_000);
    expect(times.expected('create_branch')).to.equal(1_000);
    times.observe('create_branch', 0);
    expect(times.expected('create_branch')).to.equal(700);
    times.observe('start_compute', 0);
    expect(times.expected('start_compute')).to.equal(0);
  });

  it('ignores durations that are not durations, and learns nothing when told not to', () => {
    const times = new OperationTimes(300, true);
    times.observe('create_branch', -5);
    times.observe('create_branch', Number.NaN);
    expect(times.expected('create_branch')).to.equal(300);
    const fixed = new OperationTimes(300, false);
    fixed.observe('create_branch', 50);
    expect(fixed.expected('create_branch')).to.equal(300);
  });
});
