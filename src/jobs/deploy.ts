/**
 * deploy: hands the service its configuration (the database URL included, straight from the encrypted store to
 * the provider), sets its limits from the plan, deploys, and waits for the deployment without holding a slot.
 */
import { PermanentError } from '../errors.ts';
import { configureService } from '../operations/service.ts';
import { planByName } from '../../core/plans.ts';
import { STEPS, type ProvisionData } from '../queues/catalogue.ts';
import { raiseJobIncident } from '../operations/incidents.ts';
import type { StepHandler } from './step.ts';
import { nextPollDelay } from './pollTiming.ts';

export interface DeployData extends ProvisionData {
  serviceId?: string;
  /** Set just before asking for a deployment: a re-run after a crash adopts the deployment made then. */
  deployRequestedAt?: number;
  deploymentId?: string;
  deployStartedAt?: number;
  polls?: number;
  /** When the deployment was last seen under way, in ms from its start. */
  pendingMs?: number;
  /** Set once it waited for an operator's approval: its duration says nothing of the provider's. */
  approvalAsked?: boolean;
}

/** How far the provider's clock may be behind ours when a re-run looks for the deployment it asked for. */
const CLOCK_SKEW_MS = 60_000;

/** What deployments of this compute provider are recorded as in the provider timings. */
const timingKind = (ctx: { compute: { kind: string } }) => `deployment:${ctx.compute.kind}`;

export const deploy: StepHandler<DeployData> = async (ctx, { job, instance, log, progress, done, waitFor }) => {
  const data = job.data;
  if (!data.deploymentId) {
    const children = await job.getChildrenValues<{ serviceId?: string }>();
    const serviceId = Object.values(children).find((v) => v?.serviceId)?.serviceId ?? instance.service_id;
    if (!serviceId) throw new PermanentError(`no service to deploy: ${STEPS.createService} has not completed`);
    const plan = planByName(instance.plan ?? '');
    if (!plan) throw new PermanentError(`instance has no known plan (${instance.plan ?? 'none'})`);
    await configureService(ctx, instance, serviceId, plan);
    await log(`variables and limits set (${plan.cpu} CPU, ${plan.memoryMb} MB)`);
    const adopted = data.deployRequestedAt ? await ctx.compute.latestDeployment(serviceId) : null;
    let deploymentId: string;
    if (adopted && adopted.createdAt.getTime() >= data.deployRequestedAt! - CLOCK_SKEW_MS) {
      deploymentId = adopted.deploymentId;
      await log(`adopting deployment ${deploymentId}, requested by an earlier run of this step`);
    } else {
      await job.updateData({ ...data, serviceId, deployRequestedAt: Date.now() });
      ({ deploymentId } = await ctx.compute.deploy(serviceId));
      await log(`deployment ${deploymentId} started`);
    }
    await progress(30);
    const typical = await ctx.timings.typical(timingKind(ctx));
    return waitFor(nextPollDelay(0, typical), { ...data, serviceId, deploymentId, deployStartedAt: Date.now(), polls: 0 });
  }

  const { serviceId, deploymentId } = data as Required<DeployData>;
  const { state, detail } = await ctx.compute.deploymentState(serviceId, deploymentId);
  const elapsed = Date.now() - (data.deployStartedAt ?? Date.now());
  const polls = (data.polls ?? 0) + 1;
  switch (state) {
    case 'success':
      if (instance.service_id !== serviceId) await ctx.instances.update(instance.id, { service_id: serviceId });
      if (!data.approvalAsked) await ctx.timings.record(timingKind(ctx), { pendingMs: data.pendingMs ?? 0, readyMs: elapsed });
      await log(`deployment ${deploymentId} succeeded after ${polls} status checks (${(elapsed / 1000).toFixed(1)} s)`);
      return done({ serviceId, deploymentId, readyAfterMs: elapsed });
    case 'failed':
      throw new PermanentError(`deployment ${deploymentId} failed${detail ? `: ${detail}` : ''}`);
    case 'needs_approval': {
      // An operator approves it in the provider's dashboard; meanwhile the step keeps watching (slowly, holding no
      // slot) until the approval or the deploy timeout, and operators are told once.
      await raiseJobIncident(ctx, job, 'deployment.needs_approval', `deployment ${deploymentId} needs an operator's approval in the provider's dashboard`);
      if (elapsed > ctx.config.deployTimeoutMs) {
        throw new PermanentError(`deployment ${deploymentId} was not approved within ${Math.round(ctx.config.deployTimeoutMs / 1000)} s`);
      }
      return waitFor(nextPollDelay(elapsed, null), { ...data, polls, approvalAsked: true });
    }
    case 'in_progress': {
      const timeoutMs = ctx.config.deployTimeoutMs;
      if (elapsed > timeoutMs) throw new PermanentError(`deployment ${deploymentId} did not finish in ${Math.round(timeoutMs / 1000)} s`);
      await progress(Math.min(90, 30 + polls * 5));
      const typical = data.approvalAsked ? null : await ctx.timings.typical(timingKind(ctx));
      return waitFor(nextPollDelay(elapsed, typical), { ...data, polls, pendingMs: elapsed });
    }
  }
};
