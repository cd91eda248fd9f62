/**
 * The provisioning flow of one subscription as a BullMQ FlowProducer tree. Children finish before their parent
 * and siblings run together, so the tree is the order and the parallelism:
 *
 *   finalize ← send-welcome-email ← health-check ← deploy ← { create-service, build-workspace ← create-branch }
 *
 * Deterministic job ids: adding the same flow again (a duplicate delivery, a retried intake job) adds nothing.
 */
import type { DefaultJobOptions, FlowJob } from 'bullmq';
import { JOB_IDS, JOBS, STEPS, type ProvisionData, type StepName } from './catalogue.ts';

export function provisionFlow(data: ProvisionData, jobOptions: DefaultJobOptions): FlowJob {
  const node = (step: StepName, children?: FlowJob[]): FlowJob => ({
    name: step,
    queueName: JOBS[step].queue,
    data,
    opts: { ...jobOptions, jobId: JOB_IDS.step(data.workspaceId, step, data.generation) },
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
