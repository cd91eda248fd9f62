/**
 * The provisioning flow of one subscription as a BullMQ FlowProducer tree. Children finish before their parent
 * and siblings run together, so the tree is the order and the parallelism:
 *
 *   finalize ← send-welcome-email ← health-check ← deploy ← { create-service, build-workspace ← create-branch }
 */
import type { FlowJob } from 'bullmq';
import type { Queues } from './connection.ts';
import { jobId, STEP_QUEUE, STEPS, type StepName } from './names.ts';

/** All a step's job carries: ids. Wait state (deadlines, deployment ids) is added by the step itself. */
export interface ProvisionData {
  instanceId: string;
  workspaceId: string;
  /** The instance's provisioning run: 1, then one more for each reactivation. */
  generation?: number;
}

/** `<workspace>-<step>` for the first run, `<workspace>-g<n>-<step>` for a reactivation's. */
export function stepJobId(workspaceId: string, step: StepName, generation = 1): string {
  return generation > 1 ? jobId(workspaceId, `g${generation}`, step) : jobId(workspaceId, step);
}

export function provisionFlow(data: ProvisionData, queues: Queues): FlowJob {
  const node = (step: StepName, children?: FlowJob[]): FlowJob => ({
    name: step,
    queueName: STEP_QUEUE[step],
    data,
    opts: { ...queues.jobOptions(), jobId: stepJobId(data.workspaceId, step, data.generation) },
    ...(children && { children }),
  });
  return node(STEPS.finalize, [
    node(STEPS.sendWelcomeEmail, [
      node(STEPS.healthCheck, [
        node(STEPS.deploy, [node(STEPS.createService), node(STEPS.buildWorkspace, [node(STEPS.createBranch)])]),
      ]),
    ]),
  ]);
}

export async function startProvisionFlow(queues: Queues, data: ProvisionData): Promise<void> {
  // Deterministic job ids: adding the same flow again (a duplicate delivery, a retried intake job) adds nothing.
  await queues.flow.add(provisionFlow(data, queues));
}
