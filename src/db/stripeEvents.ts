/** The Stripe events gateway: every verified event, recorded once by its id with its payload. */
import type Stripe from 'stripe';
import { Batcher } from './batch.ts';
import type { Db } from './pool.ts';

export interface StripeEvents {
  /** Records a verified event; false when it was recorded already (a redelivery). */
  record(event: { id: string; type: string; created: number; livemode: boolean }, handled: boolean, payload: string): Promise<boolean>;
  payload(eventId: string): Promise<Stripe.Event | undefined>;
  /** Marks the event's failure as alerted, once: its type and customer the first time, undefined after. */
  markFailureAlerted(eventId: string): Promise<{ type: string; customer: string | null } | undefined>;
  /** Replaces the payloads that carry a Stripe customer's personal data with their id and type; returns how many. */
  scrubCustomer(stripeCustomerId: string): Promise<number>;
}

/** One verified event to record. */
interface EventRecord {
  id: string;
  type: string;
  created: number;
  livemode: boolean;
  handled: boolean;
  payload: string;
}

/**
 * Records a batch of events in one statement (prepared once per connection): one round trip and one commit for
 * however many deliveries arrived together. RETURNING names the ids this statement inserted; an id already there
 * is left as it is.
 */
const RECORD = {
  name: 'stripe-events-record',
  text: `INSERT INTO stripe_events (id, type, stripe_created, livemode, handled, payload)
         SELECT id, type, to_timestamp(created), livemode, handled, payload::jsonb
         FROM unnest($1::text[], $2::text[], $3::float8[], $4::bool[], $5::bool[], $6::text[])
           AS e(id, type, created, livemode, handled, payload)
         ON CONFLICT (id) DO NOTHING
         RETURNING id`,
};

/**
 * How deliveries arriving together are recorded: up to 4 statements at once (the pool keeps the rest of its
 * connections for everything else), each of up to 200 events and 4 MB of payloads.
 */
const RECORD_BATCHES = { concurrency: 4, maxItems: 200, maxWeight: 4 * 1024 * 1024, weight: (e: EventRecord) => e.payload.length };

export class PgStripeEvents implements StripeEvents {
  private readonly recorder = new Batcher<EventRecord, boolean>((events) => this.recordBatch(events), RECORD_BATCHES);

  constructor(private readonly db: Db) {}

  record(event: { id: string; type: string; created: number; livemode: boolean }, handled: boolean, payload: string): Promise<boolean> {
    return this.recorder.call({ id: event.id, type: event.type, created: event.created, livemode: event.livemode, handled, payload });
  }

  /** Records the events together; if that fails, each on its own, so that one bad event fails only its delivery. */
  private async recordBatch(events: EventRecord[]): Promise<PromiseSettledResult<boolean>[]> {
    try {
      return (await this.insert(events)).map((value) => ({ status: 'fulfilled', value }));
    } catch (err) {
      if (events.length === 1) return [{ status: 'rejected', reason: err }];
      return Promise.allSettled(events.map(async (event) => (await this.insert([event]))[0]!));
    }
  }

  /** Whether each event was recorded by this call: true for the first delivery of a new id, false for any other. */
  private async insert(events: EventRecord[]): Promise<boolean[]> {
    const byId = new Map<string, EventRecord>();
    for (const e of events) if (!byId.has(e.id)) byId.set(e.id, e);
    const distinct = [...byId.values()];
    const { rows } = await this.db.query<{ id: string }>({
      ...RECORD,
      values: [
        distinct.map((e) => e.id),
        distinct.map((e) => e.type),
        distinct.map((e) => e.created),
        distinct.map((e) => e.livemode),
        distinct.map((e) => e.handled),
        distinct.map((e) => e.payload),
      ],
    });
    const inserted = new Set(rows.map((r) => r.id));
    return events.map((e) => inserted.delete(e.id));
  }

  async payload(eventId: string): Promise<Stripe.Event | undefined> {
    const { rows } = await this.db.query<{ payload: Stripe.Event }>('SELECT payload FROM stripe_events WHERE id = $1', [eventId]);
    return rows[0]?.payload;
  }

  async markFailureAlerted(eventId: string): Promise<{ type: string; customer: string | null } | undefined> {
    const { rows } = await this.db.query<{ type: string; customer: string | null }>(
      `UPDATE stripe_events SET failure_alerted_at = now() WHERE id = $1 AND failure_alerted_at IS NULL
       RETURNING type, payload->'data'->'object'->>'customer' AS customer`,
      [eventId],
    );
    return rows[0];
  }

  async scrubCustomer(stripeCustomerId: string): Promise<number> {
    const scrubbed = await this.db.query(
      `UPDATE stripe_events SET payload = jsonb_build_object('id', id, 'type', type, 'purged', true)
       WHERE payload->'data'->'object'->>'customer' = $1 OR payload->'data'->'object'->>'id' = $1`,
      [stripeCustomerId],
    );
    return scrubbed.rowCount ?? 0;
  }
}
