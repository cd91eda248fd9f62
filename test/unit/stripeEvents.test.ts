/**
 * Recording Stripe events on a real Postgres: deliveries arriving together are recorded in batches, yet each event
 * is recorded once, exactly one delivery of a new event is told it recorded it, and a bad event fails alone.
 */
import { expect } from 'chai';
import type { Db } from '../../src/db/pool.ts';
import { PgStripeEvents } from '../../src/db/stripeEvents.ts';
import { controlDb } from '../support/controlDb.ts';
import { rejection } from '../support/rejection.ts';

describe('PgStripeEvents.record', () => {
  let control: Awaited<ReturnType<typeof controlDb>>;
  let db: Db;
  let events: PgStripeEvents;

  before(async () => {
    control = await controlDb('cp_events');
    db = control.db;
    events = new PgStripeEvents(db);
  });

  after(() => control?.drop());

  const event = (id: string, extra: Record<string, unknown> = {}) => {
    const payload = JSON.stringify({ id, object: 'event', type: 'customer.updated', created: 1_700_000_000, data: { object: { id: 'cus_1' } }, ...extra });
    return { meta: { id, type: 'customer.updated', created: 1_700_000_000, livemode: false }, payload };
  };
  const record = (id: string, extra?: Record<string, unknown>) => {
    const e = event(id, extra);
    return events.record(e.meta, false, e.payload);
  };
  const stored = async (prefix: string) =>
    (await db.query<{ id: string; payload: { id: string } }>('SELECT id, payload FROM stripe_events WHERE id LIKE $1 ORDER BY id', [`${prefix}%`])).rows;

  it('records deliveries made together once each, and tells exactly one delivery of each new event that it recorded it', async () => {
    expect(await record('evt_dup_0')).to.equal(true); // already there before the burst
    const ids = ['evt_dup_0', 'evt_dup_1', 'evt_dup_2', 'evt_dup_3', 'evt_dup_4'];
    // 40 calls at once: the first go out alone, the rest gather into batches holding several deliveries of one id.
    const deliveries = Array.from({ length: 40 }, (_, i) => ids[i % ids.length]!);
    const answers = await Promise.all(deliveries.map((id) => record(id)));

    for (const id of ids) {
      const fresh = answers.filter((recorded, i) => recorded && deliveries[i] === id).length;
      expect(fresh, id).to.equal(id === 'evt_dup_0' ? 0 : 1);
    }
    const rows = await stored('evt_dup_');
    expect(rows.map((r) => r.id)).to.deep.equal(ids);
    expect(rows.map((r) => r.payload.id)).to.deep.equal(ids);
    const { rows: meta } = await db.query('SELECT type, livemode, handled, extract(epoch FROM stripe_created)::int AS created FROM stripe_events WHERE id = $1', ['evt_dup_3']);
    expect(meta[0]).to.deep.equal({ type: 'customer.updated', livemode: false, handled: false, created: 1_700_000_000 });
  });

  it('fails only the delivery whose payload Postgres refuses, and records the others of its batch', async () => {
    // JSON.parse takes \u0000 in a string; jsonb does not.
    const calls = Array.from({ length: 20 }, (_, i) => (i === 10 ? record('evt_mix_10', { bad: '\u0000' }) : record(`evt_mix_${String(i).padStart(2, '0')}`)));
    const settled = await Promise.allSettled(calls);
    expect(settled[10]!.status).to.equal('rejected');
    expect((await rejection(calls[10]!)).message).to.match(/unicode|\\u0000/i);
    expect(settled.filter((s, i) => i !== 10 && s.status === 'fulfilled' && s.value === true)).to.have.length(19);
    const rows = await stored('evt_mix_');
    expect(rows).to.have.length(19);
    expect(rows.map((r) => r.id)).to.not.include('evt_mix_10');
  });
});
