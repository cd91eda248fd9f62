/**
 * POST /webhooks/stripe: verifies the signature on the raw body, records the event once by its id, enqueues a job
 * whose id is the event id, and answers at once. Anything unverified is refused and leaves no trace.
 */
import type { Middleware } from 'koa';
import type Stripe from 'stripe';
import type { StripeEvents } from '../db/stripeEvents.ts';
import { STRIPE_EVENT_JOBS } from '../queues/catalogue.ts';
import type { JobQueue } from '../queues/jobQueue.ts';
import { logger } from '../../core/logger.ts';
import { HttpError } from '../../core/http/httpError.ts';
import { readRawBody } from '../../core/http/rawBody.ts';
import { jsonShapeProblem } from '../../core/http/jsonShape.ts';
import { verifyStripeSignature } from './stripeSignature.ts';
import { metrics } from '../metrics/recorder.ts';

export const WEBHOOK_BODY_LIMIT = 1024 * 1024;
/** The last second of year 9999: a created past it is no Stripe event's. */
const LATEST_CREATED = 253_402_300_799;
const log = logger('stripe-webhook');

export function stripeWebhook(deps: { stripeEvents: StripeEvents; jobs: JobQueue; webhookSecret: string }): Middleware {
  return async (ctx) => {
    const raw = await readRawBody(ctx.req, WEBHOOK_BODY_LIMIT);
    const signature = ctx.get('stripe-signature');
    if (!signature) throw new HttpError(400, 'missing_signature', 'the Stripe-Signature header is required');

    verifyStripeSignature(raw, signature, deps.webhookSecret);
    const text = raw.toString('utf8');
    let event: Stripe.Event;
    try {
      event = JSON.parse(text) as Stripe.Event;
    } catch {
      throw new HttpError(400, 'invalid_json', 'the body is not a JSON Stripe event');
    }
    if (typeof event?.id !== 'string' || !/^evt_\w+$/.test(event.id) || typeof event.type !== 'string' || !event.data?.object) {
      throw new HttpError(400, 'invalid_event', 'the body is not a Stripe event');
    }
    // Signed but unlike anything Stripe sends: refused before it is stored (it shares a batch with other events).
    const unstorable = jsonShapeProblem(text);
    if (unstorable) throw new HttpError(400, 'invalid_event', `the event cannot be stored: ${unstorable}`);
    if (!Number.isSafeInteger(event.created) || event.created < 0 || event.created > LATEST_CREATED) {
      throw new HttpError(400, 'invalid_event', 'the event\'s created is not a time in seconds');
    }
    ctx.state.stripeEventType = event.type;

    const handled = STRIPE_EVENT_JOBS.has(event.type);
    const recorded = await deps.stripeEvents.record(
      { id: event.id, type: event.type, created: event.created, livemode: Boolean(event.livemode) },
      handled,
      text,
    );
    const duplicate = !recorded;
    if (handled) {
      // The job id is the event id: a redelivery (say, after Redis was briefly away) adds the job if it is missing
      // and nothing if it is there.
      await deps.jobs.addStripeEvent(event.type, event.id);
    }
    // An event acted on is logged; one only recorded (most of what Stripe sends) is in stripe_events, and logged at
    // debug, so that a burst of them costs no log line each.
    (handled ? log.info : log.debug)('event received', { id: event.id, type: event.type, duplicate, handled });
    ctx.status = 200;
    ctx.body = { received: true, duplicate, handled };
  };
}

/**
 * Counts every delivery by its event type (once verified) and what came of it, before the webhook above: an
 * in-memory increment only (docs/operations.md#metrics).
 */
export const countDeliveries: Middleware = async (ctx, next) => {
  try {
    await next();
    const { duplicate, handled } = ctx.body as { duplicate: boolean; handled: boolean };
    metrics.webhookEvent(ctx.state.stripeEventType ?? null, duplicate ? 'duplicate' : handled ? 'accepted' : 'ignored');
  } catch (err) {
    metrics.webhookEvent(ctx.state.stripeEventType ?? null, err instanceof HttpError && err.status < 500 ? 'rejected' : 'failed');
    throw err;
  }
};
