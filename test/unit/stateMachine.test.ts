import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import type { Db } from '../../src/db/pool.ts';
import { controlDb } from '../support/controlDb.ts';
import { configureLogs, logTo } from '../../core/logger.ts';
import {
  canHappen,
  ENDED_STATUSES,
  IllegalTransitionError,
  INSTANCE_STATUSES,
  isEnded,
  mayStartProvisioning,
  nextStatus,
  stepsMayRun,
  transition,
  TRANSITIONS,
  type InstanceEvent,
  type InstanceStatus,
} from '../../src/instances/stateMachine.ts';
import { rejection } from '../support/rejection.ts';

/** Every allowed transition, written out by hand: the table in the module must say exactly this. */
const ALLOWED: [InstanceStatus, InstanceEvent, InstanceStatus][] = [
  ['provisioning', 'provisioned', 'active'],
  ['provisioning', 'failed', 'failed'],
  ['failed', 'retried', 'provisioning'],
  ['failed', 'abandoned', 'abandoned'],
  ['provisioning', 'cancelled', 'cancelled'],
  ['active', 'cancelled', 'cancelled'],
  ['failed', 'cancelled', 'cancelled'],
  ['suspended', 'cancelled', 'cancelled'],
  ['cancelled', 'archived', 'archived'],
  ['archived', 'purged', 'purged'],
  ['active', 'suspended', 'suspended'],
  ['suspended', 'resumed', 'active'],
  ['cancelled', 'reactivated', 'provisioning'],
  ['archived', 'reactivated', 'provisioning'],
  ['purged', 'reactivated', 'provisioning'],
];

/** Forbidden changes that would hurt a customer or an operator if they slipped through. */
const FORBIDDEN: [InstanceStatus, InstanceEvent, string][] = [
  ['cancelled', 'failed', 'a late step failure must not hide a cancellation'],
  ['active', 'failed', 'a stray step failure must not fail a running customer'],
  ['abandoned', 'failed', 'an abandoned provisioning raises no new incident'],
  ['abandoned', 'provisioned', 'a stray step must not bring an abandoned instance to life'],
  ['cancelled', 'provisioned', 'a flow finishing after a cancellation must not reactivate'],
  ['active', 'abandoned', 'only a failed provisioning can be abandoned'],
  ['provisioning', 'abandoned', 'only a failed provisioning can be abandoned'],
  ['active', 'archived', 'nothing is archived before it is cancelled'],
  ['suspended', 'archived', 'nothing is archived before it is cancelled'],
  ['cancelled', 'purged', 'nothing is purged before it is archived'],
  ['active', 'purged', 'nothing is purged before it is archived'],
  ['purged', 'cancelled', 'a purged instance cannot be cancelled again'],
  ['archived', 'cancelled', 'an archived instance cannot be cancelled again'],
  ['cancelled', 'resumed', 'paying an old invoice does not undo a cancellation'],
  ['archived', 'resumed', 'paying an old invoice does not undo a cancellation'],
  ['provisioning', 'suspended', 'only a running instance is suspended'],
  ['cancelled', 'suspended', 'only a running instance is suspended'],
  ['active', 'reactivated', 'only an ended subscription is reactivated'],
  ['failed', 'reactivated', 'only an ended subscription is reactivated'],
  ['abandoned', 'reactivated', 'an abandoned provisioning is not a customer who left'],
];

describe('instance state machine', () => {
  it('allows exactly the transitions of the table', () => {
    for (const [from, event, to] of ALLOWED) {
      expect(nextStatus('i', from, event), `${from} --${event}-->`).to.equal(to);
    }
    const declared = Object.entries(TRANSITIONS).flatMap(([event, t]) => t.from.map((from) => `${from} ${event} ${t.to}`));
    expect(declared.sort()).to.deep.equal(ALLOWED.map((a) => a.join(' ')).sort());
  });

  it('refuses the forbidden transitions with a readable error', () => {
    for (const [from, event, why] of FORBIDDEN) {
      expect(() => nextStatus('inst-1', from, event), why).to.throw(IllegalTransitionError, `instance inst-1 is ${from}: "${event}"`);
    }
  });

  it('treats an event repeated in its target status as nothing to do, and every other pair as illegal', () => {
    for (const status of INSTANCE_STATUSES) {
      for (const event of Object.keys(TRANSITIONS) as InstanceEvent[]) {
        if (canHappen(status, event)) continue;
        if (TRANSITIONS[event].to === status) expect(nextStatus('i', status, event), `${status} ${event}`).to.equal(null);
        else expect(() => nextStatus('i', status, event), `${status} ${event}`).to.throw(IllegalTransitionError);
      }
    }
  });

  it('answers the guards from the table', () => {
    expect([...ENDED_STATUSES]).to.deep.equal(['cancelled', 'archived', 'purged']);
    expect(INSTANCE_STATUSES.filter(isEnded)).to.deep.equal(['cancelled', 'archived', 'purged']);
    expect(INSTANCE_STATUSES.filter(stepsMayRun)).to.deep.equal(['provisioning', 'active', 'failed', 'suspended']);
    expect(INSTANCE_STATUSES.filter(mayStartProvisioning)).to.deep.equal(['provisioning', 'failed', 'suspended', 'cancelled', 'archived', 'purged']);
  });

  describe('transition() on the control-plane database', () => {
    let control: Awaited<ReturnType<typeof controlDb>>;
    let db: Db;
    // What the changes log is kept here (and read by a test), not printed among the results.
    let logged: Record<string, unknown>[] = [];

    before(async () => {
      configureLogs({ level: 'info', format: 'json' }); // whatever an earlier test of this process set
      logTo({ write: (line: string) => logged.push(JSON.parse(line) as Record<string, unknown>) });
      control = await controlDb('claw_sm');
      db = control.db;
    });

    after(async () => {
      await control?.drop();
      logTo(undefined);
    });

    async function newInstance(status: InstanceStatus): Promise<string> {
      const { rows: c } = await db.query<{ id: string }>(`INSERT INTO customers (email) VALUES ('sm@example.com') RETURNING id`);
      const sub = `sub_${randomBytes(6).toString('hex')}`;
      const { rows: s } = await db.query<{ id: string }>(
        `INSERT INTO subscriptions (customer_id, stripe_subscription_id, plan, status) VALUES ($1, $2, 'starter', 'active') RETURNING id`,
        [c[0]!.id, sub],
      );
      const { rows } = await db.query<{ id: string }>(
        `INSERT INTO instances (subscription_id, customer_id, workspace_id, plan, status, compute_provider, database_provider)
         VALUES ($1, $2, $3, 'starter', $4, 'local', 'local') RETURNING id`,
        [s[0]!.id, c[0]!.id, `ws-${sub}`, status],
      );
      return rows[0]!.id;
    }

    const statusOf = async (id: string) =>
      (await db.query<{ status: string; failed_step: string | null }>('SELECT status, failed_step FROM instances WHERE id = $1', [id])).rows[0]!;
    const auditOf = async (id: string) =>
      (await db.query<{ actor: string; action: string; detail: object }>('SELECT actor, action, detail FROM audit WHERE instance_id = $1 ORDER BY id', [id])).rows;

    it('writes the status, the other columns and one audit row together', async () => {
      const id = await newInstance('provisioning');
      const result = await transition(db, id, 'failed', {
        actor: 'worker',
        set: { failed_step: 'deploy', failure_reason: 'boom' },
        detail: { step: 'deploy' },
      });
      expect(result).to.include({ from: 'provisioning', to: 'failed' });
      expect(await statusOf(id)).to.deep.equal({ status: 'failed', failed_step: 'deploy' });
      expect(await auditOf(id)).to.deep.equal([{ actor: 'worker', action: 'instance.failed', detail: { step: 'deploy' } }]);
      expect(result!.auditId).to.be.a('string');
    });

    it('logs each change once, with the event and the ids; a repeat or a refusal logs nothing', async () => {
      const id = await newInstance('active');
      const { rows } = await db.query<{ workspace_id: string; customer_id: string }>('SELECT workspace_id, customer_id FROM instances WHERE id = $1', [id]);
      logged = [];
      await transition(db, id, 'suspended', { actor: 'worker' });
      await transition(db, id, 'suspended', { actor: 'worker' });
      await rejection(transition(db, id, 'archived', { actor: 'worker' }));
      await transition(db, id, 'cancelled', { actor: 'stripe:evt_1' });
      expect(logged.map(({ time: _, ...line }) => line)).to.deep.equal([
        { level: 'info', scope: 'instances', event: 'suspended', instance: id, workspace: rows[0]!.workspace_id, customer: rows[0]!.customer_id, from: 'active', to: 'suspended', actor: 'worker', message: 'instance suspended' },
        { level: 'info', scope: 'instances', event: 'cancelled', instance: id, workspace: rows[0]!.workspace_id, customer: rows[0]!.customer_id, from: 'suspended', to: 'cancelled', actor: 'stripe:evt_1', message: 'instance cancelled' },
      ]);
    });

    it('does nothing for a repeat, and refuses an illegal change without writing anything', async () => {
      const id = await newInstance('active');
      expect(await transition(db, id, 'provisioned', { actor: 'worker' })).to.equal(null);
      const error = await rejection(transition(db, id, 'archived', { actor: 'worker', set: { archived_at: new Date() } }));
      expect(error).to.be.instanceOf(IllegalTransitionError);
      expect((await statusOf(id)).status).to.equal('active');
      expect(await auditOf(id)).to.deep.equal([]);
    });

    it('writes nothing when a `when` condition does not hold', async () => {
      const id = await newInstance('provisioning');
      await transition(db, id, 'failed', { actor: 'worker', set: { failed_step: 'deploy' } });
      expect(await transition(db, id, 'retried', { actor: 'operator', when: { failed_step: 'health-check' } })).to.equal(null);
      expect((await statusOf(id)).status).to.equal('failed');
      const retried = await transition(db, id, 'retried', { actor: 'operator', set: { failed_step: null }, when: { failed_step: 'deploy' } });
      expect(retried).to.include({ from: 'failed', to: 'provisioning' });
      expect(await statusOf(id)).to.deep.equal({ status: 'provisioning', failed_step: null });
    });

    it('writes neither the status nor the audit row when a column it sets is refused', async () => {
      const id = await newInstance('cancelled');
      const error = await rejection(transition(db, id, 'archived', { actor: 'worker', set: { archived_at: 'not a time' } }));
      expect(error.message).to.match(/invalid input syntax for type timestamp/);
      expect((await statusOf(id)).status).to.equal('cancelled');
      expect(await auditOf(id)).to.deep.equal([]);
    });

    it('compares a time in `when` to the millisecond, as it was read', async () => {
      const id = await newInstance('provisioning');
      await db.query(`UPDATE instances SET provision_started_at = '2026-12-03 10:00:00.123456+00' WHERE id = $1`, [id]);
      const { rows } = await db.query<{ provision_started_at: Date }>('SELECT provision_started_at FROM instances WHERE id = $1', [id]);
      const read = rows[0]!.provision_started_at;
      expect(await transition(db, id, 'failed', { actor: 'worker', when: { provision_started_at: new Date(read.getTime() + 1) } })).to.equal(null);
      expect(await transition(db, id, 'failed', { actor: 'worker', when: { provision_started_at: read } })).to.include({ to: 'failed' });
    });

    it('lets one of two concurrent identical changes through, once', async () => {
      const id = await newInstance('active');
      const results = await Promise.all([1, 2, 3].map(() => transition(db, id, 'suspended', { actor: 'worker' })));
      expect(results.filter(Boolean)).to.have.length(1);
      expect((await auditOf(id)).map((a) => a.action)).to.deep.equal(['instance.suspended']);
    });

    it('refuses a column it does not know how to name, and the status itself', async () => {
      const id = await newInstance('active');
      const error = await rejection(transition(db, id, 'suspended', { actor: 'worker', set: { status: 'active' } }));
      expect(error.message).to.match(/invalid column status/);
      expect((await statusOf(id)).status).to.equal('active');
    });
  });
});
