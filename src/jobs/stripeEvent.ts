/**
 * The stripe-events job: acts on a verified, recorded Stripe event. The job carries only the event id; the
 * payload is read from Postgres, and the subscription's current state from Stripe (the event carries no price).
 */
import type Stripe from 'stripe';
import { errorMessage, PermanentError } from '../errors.ts';
import { canHappen, isRunning } from '../instances/stateMachine.ts';
import { clearFailure, isFinalFailure, markEventFailed, markFailed, ReportedFailure } from '../operations/incidents.ts';
import { planForPrice } from '../../core/plans.ts';
import { OVERDUE, PAID } from '../providers/stripe.ts';
import { startProvisioning, type ProvisionRequest } from '../provisioning.ts';
import { QUEUES, type StripeEventData } from '../queues/catalogue.ts';
import type { InstanceWithCustomer } from '../db/instances.ts';
import type { JobContext, JobHandle } from './context.ts';

export async function handleStripeEvent(ctx: JobContext, job: JobHandle<StripeEventData>): Promise<Record<string, string>> {
  try {
    return await actOnEvent(ctx, job);
  } catch (err) {
    if (isFinalFailure(job, err) && !(err instanceof ReportedFailure)) {
      const reason = errorMessage(err);
      await markEventFailed(ctx, { eventId: job.data.eventId, reason, queue: QUEUES.stripeEvents, jobId: job.id! });
    }
    throw err;
  }
}

async function actOnEvent(ctx: JobContext, job: JobHandle<StripeEventData>): Promise<Record<string, string>> {
  const event = await ctx.stripeEvents.payload(job.data.eventId);
  if (!event) throw new PermanentError(`event ${job.data.eventId} was not recorded`);
  switch (event.type) {
    case 'checkout.session.completed':
    case 'checkout.session.async_payment_succeeded':
      return checkoutCompleted(ctx, job, event.data.object);
    case 'customer.subscription.deleted':
    case 'customer.subscription.updated':
      return subscriptionChanged(ctx, job, event.data.object.id);
    case 'invoice.payment_failed':
    case 'invoice.paid':
      return invoiceSettled(ctx, job, event.type, event.data.object);
    default:
      return { ignored: event.type };
  }
}

/** An invoice of a subscription was paid or failed: dunning email on failure, then the subscription is looked at again. */
async function invoiceSettled(
  ctx: JobContext,
  job: JobHandle<StripeEventData>,
  type: string,
  invoice: Stripe.Invoice & { subscription?: string | { id: string } | null },
): Promise<Record<string, string>> {
  const linked = invoice.parent?.subscription_details?.subscription ?? invoice.subscription ?? null;
  const subscriptionId = typeof linked === 'string' ? linked : linked?.id;
  if (!subscriptionId) return { ignored: 'invoice of no subscription' };
  if (type === 'invoice.payment_failed') {
    const instance = await ctx.instances.forSubscription(subscriptionId);
    if (instance) await ctx.jobs.addDunningEmail(instance, invoice.attempt_count ?? 1, job.data.eventId);
  }
  return subscriptionChanged(ctx, job, subscriptionId);
}

/**
 * A subscription changed or ended. Stripe may deliver events late, twice or out of order, so the event only says
 * "look again": the subscription is re-read and the instance brought to what Stripe has now. A cancellation at
 * period end changes nothing until the subscription is actually deleted.
 */
async function subscriptionChanged(ctx: JobContext, job: JobHandle<StripeEventData>, subscriptionId: string): Promise<Record<string, string>> {
  const subscription = await ctx.stripe.subscription(subscriptionId);
  await ctx.subscriptions.setStatus(subscriptionId, subscription.status);
  const instance = await ctx.instances.forSubscription(subscriptionId);
  if (!instance) return { ignored: 'no instance for this subscription' };
  if (subscription.status === 'canceled' && subscription.canceledAt !== null) {
    await ctx.jobs.addCancel(instance, subscription.canceledAt);
    return { cancelling: instance.id };
  }
  if (OVERDUE.has(subscription.status) && canHappen(instance.status, 'suspended')) {
    // The grace runs from the first time Stripe reported the payment overdue; the suspend job checks again then.
    const from = (await ctx.instances.markPastDue(instance.id)).getTime();
    await ctx.jobs.addSuspend(instance, from, Math.max(0, from + ctx.config.lifecycle.paymentGraceMs - Date.now()));
    return { overdue: subscription.status };
  }
  if (!OVERDUE.has(subscription.status)) await ctx.instances.clearPastDue(instance.id);
  if (PAID.has(subscription.status) && canHappen(instance.status, 'resumed')) {
    await ctx.jobs.addResume(instance, job.data.eventId);
    return { resuming: instance.id };
  }
  const plan = subscription.priceId ? planForPrice(subscription.priceId, ctx.config.stripe.priceIds) : undefined;
  if (plan && plan.name !== instance.plan && isRunning(instance.status)) {
    await ctx.jobs.addResize(instance, plan.name, job.data.eventId);
    return { resizing: `${instance.plan} → ${plan.name}` };
  }
  return { unchanged: `subscription ${subscription.status}, plan ${instance.plan}` };
}

/**
 * The instance a returning customer comes back to: one still live here whose subscription Stripe has already
 * cancelled (its cancellation event is late, or not handled yet: `cancelling` is its canceled_at), else their newest
 * instance whose subscription ended. An instance whose subscription is still live in Stripe is not theirs to take
 * over: a second subscription is a second assistant.
 */
async function returningTo(
  ctx: JobContext,
  subscription: { id: string; customerId: string },
): Promise<{ instance: InstanceWithCustomer; cancelling?: number } | undefined> {
  for (const instance of await ctx.instances.liveForStripeCustomer(subscription.customerId, subscription.id)) {
    const previous = await ctx.stripe.subscription(instance.stripe_subscription_id);
    if (previous.status === 'canceled') return { instance, cancelling: previous.canceledAt ?? Math.floor(Date.now() / 1000) };
  }
  const ended = await ctx.instances.endedForStripeCustomer(subscription.customerId);
  return ended && { instance: ended };
}

async function checkoutCompleted(
  ctx: JobContext,
  job: JobHandle<StripeEventData>,
  session: Stripe.Checkout.Session,
): Promise<Record<string, string>> {
  if (session.mode !== 'subscription' || !session.subscription) return { ignored: `checkout in ${session.mode} mode` };
  const subscriptionId = typeof session.subscription === 'string' ? session.subscription : session.subscription.id;
  const subscription = await ctx.stripe.subscription(subscriptionId);
  // Acted on as Stripe has it now, not as the event said: an unpaid checkout waits for its payment event.
  if (session.payment_status === 'unpaid' || !PAID.has(subscription.status)) {
    return { deferred: `payment ${session.payment_status}, subscription ${subscription.status}` };
  }
  let email = session.customer_details?.email ?? session.customer_email ?? null;
  let name = session.customer_details?.name ?? null;
  if (!email) ({ email, name } = await ctx.stripe.customer(subscription.customerId));
  const plan = subscription.priceId ? planForPrice(subscription.priceId, ctx.config.stripe.priceIds) : undefined;
  const request: ProvisionRequest = {
    stripeCustomerId: subscription.customerId,
    subscriptionRef: subscription.id,
    email,
    name,
    priceId: subscription.priceId,
    plan,
    subscriptionStatus: subscription.status,
    comped: false,
    actor: `stripe:${job.data.eventId}`,
  };

  // A customer whose earlier subscription ended comes back to the same workspace, with whatever data is left.
  const comeback = plan && email ? await returningTo(ctx, subscription) : undefined;
  if (comeback && plan) {
    const { instance: previous, cancelling } = comeback;
    const { subscriptionId } = await ctx.subscriptions.record(request);
    // Its cancellation is queued here too (the same job the late event would add), so the wait cannot be endless.
    if (cancelling !== undefined) await ctx.jobs.addCancel(previous, cancelling);
    await ctx.jobs.addReactivate(previous, { subscriptionId, plan: plan.name, ...(cancelling !== undefined && { afterCancellation: true }) }, job.data.eventId);
    return { reactivating: previous.id, from: cancelling === undefined ? previous.status : 'cancelling', plan: plan.name };
  }

  const instance = await ctx.instances.record(request, { compute: ctx.config.computeProvider, database: ctx.config.databaseProvider });
  if (!plan) {
    const reason = `price ${subscription.priceId ?? '(none)'} of subscription ${subscription.id} is not one of this product's plans`;
    await markFailed(ctx, { instanceId: instance.id, step: 'resolve-plan', reason, queue: QUEUES.stripeEvents, jobId: job.id! });
    throw new ReportedFailure(reason);
  }
  if (!email) {
    const reason = `Stripe customer ${subscription.customerId} has no email address to send the welcome email to`;
    await markFailed(ctx, { instanceId: instance.id, step: 'resolve-customer', reason, queue: QUEUES.stripeEvents, jobId: job.id! });
    throw new ReportedFailure(reason);
  }
  if (canHappen(instance.status, 'retried') && (instance.failed_step === 'resolve-plan' || instance.failed_step === 'resolve-customer')) {
    // An operator fixed what stopped this intake (a price mapping, the customer's email) and retried it.
    await ctx.instances.update(instance.id, { plan: plan.name });
    // The customer row was made without an email; the one Stripe has now is where the welcome email goes.
    if (!instance.email) await ctx.subscriptions.setContact(instance.customer_id, email, name);
    await ctx.subscriptions.setPlan(instance.subscription_id, plan.name);
    await clearFailure(ctx, instance, instance.failed_step);
  }
  const started = await startProvisioning(ctx.jobs, instance);
  return { instanceId: instance.id, workspaceId: instance.workspace_id, plan: plan.name, ...(!started && { already: instance.status }) };
}
