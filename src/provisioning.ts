/**
 * Starting a customer's provisioning, for Stripe intake and the admin API alike: the request (whose customer,
 * subscription and instance rows the instances gateway finds or creates by unique keys, so a repeat changes
 * nothing), and the flow.
 */
import type { InstanceWithCustomer } from './db/instances.ts';
import { mayStartProvisioning } from './instances/stateMachine.ts';
import type { Plan } from '../core/plans.ts';
import type { JobQueue } from './queues/jobQueue.ts';

export interface ProvisionRequest {
  stripeCustomerId: string | null;
  /** Stripe's subscription id, or comp_<uuid> for a customer an operator provisions. */
  subscriptionRef: string;
  email: string | null;
  name: string | null;
  priceId: string | null;
  plan: Plan | undefined;
  subscriptionStatus: string;
  comped: boolean;
  actor: string;
}

/**
 * Adds the instance's flow, unless it is already running or was given up: a repeat that comes after the flow's
 * jobs were cleaned away (a Stripe resend days later, a reused Idempotency-Key) must not provision again.
 */
export async function startProvisioning(jobs: Pick<JobQueue, 'addProvisionFlow'>, instance: InstanceWithCustomer): Promise<boolean> {
  if (!mayStartProvisioning(instance.status)) return false;
  await jobs.addProvisionFlow({ instanceId: instance.id, workspaceId: instance.workspace_id, generation: instance.generation });
  return true;
}
