/** The alerter without a Slack webhook logs the alert: by the customer's id, never their email. */
import { expect } from 'chai';
import { configureLogs, logTo } from '../../core/logger.ts';
import { Alerter } from '../../src/providers/alerter.ts';

describe('alerter', () => {
  const lines: string[] = [];
  before(() => {
    configureLogs({ level: 'info', format: 'json' }); // whatever an earlier test of this process set
    logTo({ write: (line: string) => lines.push(line) });
  });
  after(() => logTo(undefined));

  it('logs an alert it cannot post naming the customer by id, with no email in the line', async () => {
    const sent: unknown[] = [];
    const alerter = new Alerter(null, null, { send: async (m) => void sent.push(m), close: () => undefined });
    await alerter.slack({
      title: 'Provisioning failed at deploy',
      customer: 'ann@example.com (cus_123, ws-abc)',
      customerRef: 'c0ffee00-0000-4000-8000-000000000001',
      step: 'deploy',
      reason: 'the runtime exited',
      link: 'http://localhost/admin/queues/queue/compute/1',
    });
    await alerter.mail({ title: 't', customer: 'ann@example.com', customerRef: 'c1', step: 's', reason: 'r', link: 'l' }, '<m@x>');
    const logged = lines.join('');
    expect(logged).to.include('alert logged only').and.include('c0ffee00-0000-4000-8000-000000000001').and.include('the runtime exited');
    expect(logged).to.not.include('ann@example.com');
    expect(sent).to.deep.equal([]);
  });
});
