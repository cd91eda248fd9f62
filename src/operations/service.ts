/** Configuring an instance's service for a plan: by the deploy step, and again by a plan change. */
import { randomBytes } from 'node:crypto';
import { INSTANCE_SECRETS, instanceOwner } from '../instances/secrets.ts';
import type { JobContext } from '../jobs/context.ts';
import { requestRate, type Plan } from '../../core/plans.ts';

/** The runtime's whole configuration, as env variables (secrets go straight from the sealed store to the provider). */
function runtimeVariables(
  ctx: Pick<JobContext, 'config'>,
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
    RATE_LIMIT: requestRate(plan),
    FEATURES: plan.features.join(','),
    CONTROL_PLANE_URL: runtime.callbackUrl,
    CONTROL_PLANE_SECRET: secrets.runtimeSecret,
  };
  if (runtime.anthropicApiKey) vars.ANTHROPIC_API_KEY = runtime.anthropicApiKey;
  if (runtime.anthropicBaseUrl) vars.ANTHROPIC_BASE_URL = runtime.anthropicBaseUrl;
  if (runtime.anthropicModel) vars.ANTHROPIC_MODEL = runtime.anthropicModel;
  return vars;
}

/** Hands the service its whole configuration for a plan: every variable and the plan's limits (one provider call). */
export async function configureService(
  ctx: Pick<JobContext, 'config' | 'secrets' | 'customerDbs' | 'compute'>,
  instance: { id: string; workspace_id: string },
  serviceId: string,
  plan: Plan,
): Promise<void> {
  const runtimeSecret = await ctx.secrets.putIfAbsent(instanceOwner(instance.id), INSTANCE_SECRETS.runtimeSecret, randomBytes(32).toString('base64url'));
  await ctx.compute.configure(serviceId, await settingsFor(ctx, instance, plan, runtimeSecret));
}

/**
 * What configureService would hand the service now, read without writing anything (the reconciler compares the
 * service with it). A runtime secret never made is an empty one, which no service holds: configuring makes it.
 */
export async function configuredSettings(
  ctx: Pick<JobContext, 'config' | 'customerDbs'> & { secrets: Pick<JobContext['secrets'], 'get'> },
  instance: { id: string; workspace_id: string },
  plan: Plan,
): Promise<ServiceConfiguration> {
  return settingsFor(ctx, instance, plan, (await ctx.secrets.get(instanceOwner(instance.id), INSTANCE_SECRETS.runtimeSecret)) ?? '');
}

type ServiceConfiguration = { variables: Record<string, string>; limits: Pick<Plan, 'cpu' | 'memoryMb'> };

async function settingsFor(
  ctx: Pick<JobContext, 'config' | 'customerDbs'>,
  instance: { id: string; workspace_id: string },
  plan: Plan,
  runtimeSecret: string,
): Promise<ServiceConfiguration> {
  const databaseUrl = await ctx.customerDbs.connectionUrl(instance.id);
  return { variables: runtimeVariables(ctx, instance, plan, { databaseUrl, runtimeSecret }), limits: { cpu: plan.cpu, memoryMb: plan.memoryMb } };
}
