/**
 * Payments: a failed payment gets a dunning email; a payment still overdue after the grace suspends the customer
 * (service stopped, key refused with 402, data kept); paying again resumes them.
 */
import { dunningEmail as dunningText, suspendedEmail } from '../../emails/customerEmails.ts';
import { canHappen } from '../../instances/stateMachine.ts';
import { planForPrice } from '../../../core/plans.ts';
import { OVERDUE, PAID } from '../../providers/stripe.ts';
import type { DunningData, PaymentData } from '../../queues/catalogue.ts';
import type { JobContext, JobHandle } from '../context.ts';
import { loadInstance, withLockedInstance, type Outcome } from './lockedInstance.ts';

/**
 * The grace after a failed payment is over: if Stripe still has the subscription past_due or unpaid, the service is
 * stopped and the key refused with 402 (data kept); otherwise nothing happens.
 */
export async function suspend(ctx: JobContext, job: JobHandle<PaymentData>, token?: string): Promise<Outcome> {
  return withLockedInstance(ctx, job, token, async (instance): Promise<Outcome> => {
    if (!canHappen(instance.status, 'suspended')) return { skipped: `instance is ${instance.status}` };
    const subscription = await ctx.stripe.subscription(instance.stripe_subscription_id);
    if (!OVERDUE.has(subscription.status)) return { skipped: `subscription is ${subscription.status}` };
    await ctx.customerDbs.setSuspension(instance.id, `the subscription's payment is overdue (${subscription.status}); update the payment method to resume`);
    if (instance.service_id) await ctx.compute.stop(instance.service_id);
    await ctx.instances.transition(instance.id, 'suspended', { actor: 'worker', detail: { stripeStatus: subscription.status } });
    if (instance.email) {
      await ctx.mailer.send({ to: instance.email, ...suspendedEmail(), messageId: `<suspended-${instance.workspace_id}-${job.id}@clawdbot>` });
    }
    return { suspended: subscription.status };
  });
}

/** Paid again: the key is accepted and the service runs again. */
export async function resume(ctx: JobContext, job: JobHandle<PaymentData>, token?: string): Promise<Outcome> {
  return withLockedInstance(ctx, job, token, async (instance): Promise<Outcome> => {
    if (!canHappen(instance.status, 'resumed')) return { skipped: `instance is ${instance.status}` };
    const subscription = await ctx.stripe.subscription(instance.stripe_subscription_id);
    if (!PAID.has(subscription.status)) return { skipped: `subscription is ${subscription.status}` };
    await ctx.customerDbs.setSuspension(instance.id, null);
    const deployment = instance.service_id ? await ctx.compute.deploy(instance.service_id) : undefined;
    await ctx.instances.transition(instance.id, 'resumed', {
      actor: 'worker',
      set: { past_due_since: null },
      detail: { deploymentId: deployment?.deploymentId ?? null },
    });
    // A plan change made while suspended was not applied then (resize acts on active instances): apply it now.
    const plan = subscription.priceId ? planForPrice(subscription.priceId, ctx.config.stripe.priceIds) : undefined;
    if (plan && plan.name !== instance.plan) await ctx.jobs.addResize(instance, plan.name, `resume-${job.id}`);
    return { resumed: subscription.status };
  });
}

/** A payment failed: the customer is told, with the grace before the assistant pauses. */
export async function dunningEmail(ctx: JobContext, job: JobHandle<DunningData>): Promise<Outcome> {
  const instance = await loadInstance(ctx, job.data.instanceId);
  if (!instance.email) return { skipped: 'no email address' };
  const graceDays = Math.max(1, Math.round(ctx.config.lifecycle.paymentGraceMs / 86_400_000));
  await ctx.mailer.send({
    to: instance.email,
    ...dunningText({ attempt: job.data.attempt, graceDays }),
    messageId: `<dunning-${instance.workspace_id}-${job.id}@clawdbot>`,
  });
  return { sent: instance.email.replace(/^[^@]*/, '***') };
}
