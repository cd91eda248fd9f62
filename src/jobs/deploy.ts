/**
 * deploy: hands the service its configuration (the database URL included, straight from the encrypted store to
 * the provider), sets its limits from the plan, deploys, and waits for the deployment without holding a slot.
 */
import { randomBytes } from 'node:crypto';
import { updateInstance } from '../db/instances.ts';
import { PermanentError } from '../errors.ts';
import { planByName, type Plan } from '../plans.ts';
import { STEPS } from '../queues/names.ts';
import type { ProvisionData } from '../queues/provisionFlow.ts';
import { INSTANCE_SECRETS, instanceOwner, type JobContext } from './context.ts';
import { raiseJobIncident } from './failure.ts';
import type { StepHandler } from './step.ts';

export interface DeployData extends ProvisionData {
  serviceId?: string;
  /** Set just before asking for a deployment: a re-run after a crash adopts the deployment made then. */
  deployRequestedAt?: number;
  deploymentId?: string;
  deployStartedAt?: number;
  polls?: number;
}

/** The runtime's whole configuration, as env variables (secrets go straight from the sealed store to the provider). */
export function runtimeVariables(
  ctx: JobContext,
  instance: { workspace_id: string },
  plan: Plan,
  secrets: { databaseUrl: string; runtimeSecret: string },
): Record<string, string> {
  const { runtime } = ctx.config;
  const vars: Record<string, string> = {
    DATABASE_URL: secrets.databaseUrl,
    WORKSPACE_ID: instance.workspace_id,
    PLAN: plan.name,
    MESSAGE_LIMIT: String(plan.messageLimit),
    FEATURES: plan.features.join(','),
    CONTROL_PLANE_URL: runtime.callbackUrl,
    CONTROL_PLANE_SECRET: secrets.runtimeSecret,
  };
  if (runtime.anthropicApiKey) vars.ANTHROPIC_API_KEY = runtime.anthropicApiKey;
  if (runtime.anthropicBaseUrl) vars.ANTHROPIC_BASE_URL = runtime.anthropicBaseUrl;
  if (runtime.anthropicModel) vars.ANTHROPIC_MODEL = runtime.anthropicModel;
  return vars;
}

/** Hands the service its whole configuration for a plan: every variable (one upsert) and the plan's limits. */
export async function configureService(ctx: JobContext, instance: { id: string; workspace_id: string }, serviceId: string, plan: Plan): Promise<void> {
  const owner = instanceOwner(instance.id);
  const databaseUrl = await ctx.secrets.get(owner, INSTANCE_SECRETS.databaseUrl);
  if (!databaseUrl) throw new PermanentError(`no database connection: ${STEPS.createBranch} has not completed`);
  const runtimeSecret = await ctx.secrets.putIfAbsent(owner, INSTANCE_SECRETS.runtimeSecret, randomBytes(32).toString('base64url'));
  await ctx.compute.setVariables(serviceId, runtimeVariables(ctx, instance, plan, { databaseUrl, runtimeSecret }));
  await ctx.compute.setLimits(serviceId, plan);
}

/** How far the provider's clock may be behind ours when a re-run looks for the deployment it asked for. */
const CLOCK_SKEW_MS = 60_000;

/** Polling backs off: 0.5 s, 1 s, 2 s … up to 15 s, so a 60 s deployment costs about 8 status queries. */
export function pollDelay(polls: number, initialMs = 500, maxMs = 15_000): number {
  return Math.min(initialMs * 2 ** polls, maxMs);
}

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
    return waitFor(pollDelay(0), { ...data, serviceId, deploymentId, deployStartedAt: Date.now(), polls: 0 });
  }

  const { serviceId, deploymentId } = data as Required<DeployData>;
  const { state, detail } = await ctx.compute.deploymentState(serviceId, deploymentId);
  switch (state) {
    case 'success':
      await updateInstance(ctx.db, instance.id, { service_id: serviceId });
      await log(`deployment ${deploymentId} succeeded after ${data.polls} status checks`);
      return done({ serviceId, deploymentId });
    case 'failed':
      throw new PermanentError(`deployment ${deploymentId} failed${detail ? `: ${detail}` : ''}`);
    case 'needs_approval': {
      // An operator approves it in the provider's dashboard; meanwhile the step keeps watching (slowly, holding no
      // slot) until the approval or the deploy timeout, and operators are told once.
      await raiseJobIncident(ctx, job, 'deployment.needs_approval', `deployment ${deploymentId} needs an operator's approval in the provider's dashboard`);
      if (Date.now() - (data.deployStartedAt ?? Date.now()) > ctx.config.deployTimeoutMs) {
        throw new PermanentError(`deployment ${deploymentId} was not approved within ${Math.round(ctx.config.deployTimeoutMs / 1000)} s`);
      }
      const polls = (data.polls ?? 0) + 1;
      return waitFor(pollDelay(polls), { ...data, polls });
    }
    case 'in_progress': {
      const elapsed = Date.now() - (data.deployStartedAt ?? Date.now());
      const timeoutMs = ctx.config.deployTimeoutMs;
      if (elapsed > timeoutMs) throw new PermanentError(`deployment ${deploymentId} did not finish in ${Math.round(timeoutMs / 1000)} s`);
      const polls = (data.polls ?? 0) + 1;
      await progress(Math.min(90, 30 + polls * 5));
      return waitFor(pollDelay(polls), { ...data, polls });
    }
  }
};
