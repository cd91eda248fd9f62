/** The instances' locks on the local Postgres: one holder at a time across connections, kept connections reused. */
import { expect } from 'chai';
import { LockConnections, PgInstanceLocks } from '../../src/db/instanceLocks.ts';
import pg from 'pg';
import { rejection } from '../support/rejection.ts';

describe('instance locks (Postgres)', function () {
  this.timeout(20_000);
  let connections: LockConnections;
  let locks: PgInstanceLocks;

  beforeEach(() => {
    connections = new LockConnections('postgres://postgres@127.0.0.1:5432/postgres', 2);
    locks = new PgInstanceLocks(connections);
  });
  afterEach(async () => connections.close());

  /** Whether another session can take the instance's lock now (it takes and gives it back at once). */
  async function freeElsewhere(instanceId: string): Promise<boolean> {
    const client = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
    await client.connect();
    try {
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [`lifecycle/${instanceId}`]);
      return rows[0]!.locked;
    } finally {
      await client.end();
    }
  }

  it('refuses a second holder of one instance while the first works, and lets others through', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const first = locks.withLock('inst-a', async () => {
      entered();
      await held;
      return 'first';
    });
    await inside;
    expect(await locks.withLock('inst-a', async () => 'second')).to.deep.equal({ ran: false });
    expect(await locks.withLock('inst-b', async () => 'other')).to.deep.equal({ ran: true, value: 'other' });
    release();
    expect(await first).to.deep.equal({ ran: true, value: 'first' });
    expect(await locks.withLock('inst-a', async () => 'third')).to.deep.equal({ ran: true, value: 'third' });
  });

  it('lets shared holders (one instance\'s steps) in together, and never together with an exclusive one', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const step = locks.withLock('inst-s', async () => (entered(), await held, 'step'), { shared: true });
    await inside;
    expect(await locks.withLock('inst-s', async () => 'sibling', { shared: true })).to.deep.equal({ ran: true, value: 'sibling' });
    expect(await locks.withLock('inst-s', async () => 'cancel')).to.deep.equal({ ran: false });
    release();
    expect(await step).to.deep.equal({ ran: true, value: 'step' });
    const cancel = locks.withLock('inst-s', async () => {
      expect(await locks.withLock('inst-s', async () => 'step', { shared: true })).to.deep.equal({ ran: false });
      return 'cancel';
    });
    expect(await cancel).to.deep.equal({ ran: true, value: 'cancel' });
    expect(await freeElsewhere('inst-s')).to.equal(true);
  });

  it('releases the lock when the work fails, and takes every lock on the same kept connection', async () => {
    const err = await rejection(locks.withLock('inst-c', async () => Promise.reject(new Error('step failed'))));
    expect(err.message).to.equal('step failed');
    expect(await freeElsewhere('inst-c')).to.equal(true);
    for (let i = 0; i < 20; i++) expect(await locks.withLock('inst-c', async () => i)).to.deep.equal({ ran: true, value: i });
    expect(connections.open).to.equal(1);
    expect(await freeElsewhere('inst-c')).to.equal(true);
  });
});
