/** The Stripe events gateway: every verified event, recorded once by its id with its payload. */
import type Stripe from 'stripe';
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

export class PgStripeEvents implements StripeEvents {
  constructor(private readonly db: Db) {}

  async record(event: { id: string; type: string; created: number; livemode: boolean }, handled: boolean, payload: string): Promise<boolean> {
    const inserted = await this.db.query(
      `INSERT INTO stripe_events (id, type, stripe_created, livemode, handled, payload)
       VALUES ($1, $2, to_timestamp($3), $4, $5, $6) ON CONFLICT (id) DO NOTHING`,
      [event.id, event.type, event.created, event.livemode, handled, payload],
    );
    return inserted.rowCount !== 0;
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
