/**
 * The reconciler's gateway on a real control-plane database: first sightings kept across runs and forgotten when an
 * orphan is no longer seen, a dry run's read that writes nothing, the newest reports kept, and the lock that lets one
 * run act at a time across processes.
 */
import { expect } from 'chai';
import { LockConnections } from '../../src/db/instanceLocks.ts';
import { PgReconciliation, sightingKey, type OrphanRef } from '../../src/db/reconciliation.ts';
import { controlDb } from '../support/controlDb.ts';

describe('the reconciler’s gateway (Postgres)', function () {
  this.timeout(30_000);
  let control: Awaited<ReturnType<typeof controlDb>>;
  let gateway: PgReconciliation;
  let locks: LockConnections;
  const a: OrphanRef = { kind: 'service', provider: 'railway', id: 'svc-a', name: 'claw-aaaaaaaaaaaaaaaa' };
  const b: OrphanRef = { kind: 'database', provider: 'neon', id: 'p/br-b', name: 'claw_bbbbbbbbbbbbbbbb' };

  before(async () => {
    control = await controlDb('reconcile_gw');
    locks = new LockConnections(`postgres://postgres@127.0.0.1:5432/${control.name}`, 2);
    gateway = new PgReconciliation(control.db, locks);
  });
  after(async () => {
    await locks?.close();
    await control?.drop();
  });

  it('keeps an orphan’s first sighting across runs, and forgets those no longer seen', async () => {
    const first = await gateway.sighted([a, a, b]); // a repeat in one listing counts once
    const firstA = first.get(sightingKey(a))!;
    expect(firstA.ageMs, "seen just now").to.equal(0);
    await control.db.query(`UPDATE reconcile_orphans SET first_seen_at = first_seen_at - interval '2 hours'`);

    const second = await gateway.sighted([a]);
    expect(second.get(sightingKey(a))!.firstSeenAt.getTime()).to.equal(firstA.firstSeenAt.getTime() - 7_200_000);
    expect(second.get(sightingKey(a))!.ageMs).to.be.at.least(7_200_000);
    expect(second.has(sightingKey(b))).to.equal(false);

    // A dry run reads what is kept and writes nothing.
    const read = await gateway.sightings([a, b]);
    expect([...read.keys()]).to.deep.equal([sightingKey(a)]);
    const { rows } = await control.db.query('SELECT kind, provider, resource_id FROM reconcile_orphans');
    expect(rows).to.deep.equal([{ kind: 'service', provider: 'railway', resource_id: 'svc-a' }]);

    await gateway.forget(a);
    expect((await gateway.sightings([a])).size).to.equal(0);
  });

  it('keeps the newest reports and answers the last one', async () => {
    expect(await gateway.lastReport()).to.equal(undefined);
    for (let i = 0; i < 55; i++) await gateway.saveReport({ dryRun: i % 2 === 0, startedAt: new Date(i * 1000).toISOString() });
    expect(await gateway.lastReport()).to.deep.equal({ dryRun: true, startedAt: new Date(54_000).toISOString() });
    const { rows } = await control.db.query<{ n: string }>('SELECT count(*) AS n FROM reconcile_reports');
    expect(Number(rows[0]!.n)).to.equal(50);
  });

  it('lets one run act at a time, across connections', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const first = gateway.exclusive(async () => {
      entered();
      await held;
      return 'first';
    });
    await inside;
    expect(await gateway.exclusive(async () => 'second')).to.deep.equal({ ran: false });
    release();
    expect(await first).to.deep.equal({ ran: true, value: 'first' });
    expect(await gateway.exclusive(async () => 'third')).to.deep.equal({ ran: true, value: 'third' });
  });

  it('records when each instance’s drift was checked', async () => {
    const { rows } = await control.db.query<{ id: string }>(
      `WITH c AS (INSERT INTO customers (email) VALUES ('x@example.com') RETURNING id),
       s AS (INSERT INTO subscriptions (customer_id, stripe_subscription_id, status) SELECT id, 'sub_gw', 'active' FROM c RETURNING id, customer_id)
       INSERT INTO instances (subscription_id, customer_id, workspace_id, plan, status, compute_provider, database_provider)
       SELECT id, customer_id, 'ws-0000000000000001', 'pro', 'active', 'local', 'local' FROM s RETURNING id`,
    );
    const id = rows[0]!.id;
    expect((await gateway.fleet()).map((i) => [i.id, i.drift_checked_at])).to.deep.equal([[id, null]]);
    await gateway.driftChecked([id]);
    expect((await gateway.fleet())[0]!.drift_checked_at).to.be.instanceOf(Date);
  });
});
