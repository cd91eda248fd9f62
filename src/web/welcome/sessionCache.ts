/**
 * What Stripe said of a Checkout Session, kept in this web process, so the welcome page asks Stripe once per session
 * and not at every visit, reload, stream reconnect and button press (anyone can send well-formed session ids, and
 * each would spend the Stripe account's request budget). Only answers that cannot change are kept long: a complete,
 * paid session stays so. An unknown id is kept briefly; anything else (unpaid, still open) is asked again.
 */
import { PermanentError } from '../../errors.ts';
import type { CheckoutSessionSnapshot, StripeGateway } from '../../providers/stripe.ts';

const SETTLED_MS = 60 * 60_000;
const UNKNOWN_MS = 60_000;
/** At most this many sessions are kept; the oldest go first. */
const MAX_ENTRIES = 10_000;

type Entry = { until: number } & ({ session: CheckoutSessionSnapshot } | { unknown: PermanentError });

export function cachedCheckoutSessions(stripe: Pick<StripeGateway, 'checkoutSession'>, now = () => Date.now()): Pick<StripeGateway, 'checkoutSession'> {
  const entries = new Map<string, Entry>();
  const keep = (id: string, entry: Entry) => {
    entries.delete(id);
    entries.set(id, entry);
    if (entries.size > MAX_ENTRIES) entries.delete(entries.keys().next().value!);
  };
  return {
    async checkoutSession(id) {
      const kept = entries.get(id);
      if (kept && kept.until > now()) {
        if ('unknown' in kept) throw kept.unknown;
        return kept.session;
      }
      try {
        const session = await stripe.checkoutSession(id);
        const settled = session.status === 'complete' && (session.paymentStatus === 'paid' || session.paymentStatus === 'no_payment_required');
        if (settled) keep(id, { until: now() + SETTLED_MS, session });
        else entries.delete(id);
        return session;
      } catch (err) {
        // Stripe's "no such session" (a PermanentError): the same answer for a while. An outage is not kept.
        if (err instanceof PermanentError) keep(id, { until: now() + UNKNOWN_MS, unknown: err });
        throw err;
      }
    },
  };
}
