import { expect } from 'chai';
import { pollDelay } from '../../src/jobs/deploy.ts';
import { deploymentStateOf } from '../../src/providers/compute/railway.ts';

describe('deployment polling', () => {
  it('backs off, so a deployment that takes 60 s costs at most 10 status queries', () => {
    let elapsed = 0;
    let queries = 0;
    while (elapsed < 60_000) {
      elapsed += pollDelay(queries);
      queries++;
    }
    expect(queries).to.be.at.most(10);
    expect(pollDelay(0)).to.equal(500);
    expect(pollDelay(50)).to.equal(15_000); // capped
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
