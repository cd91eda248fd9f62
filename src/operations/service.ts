/** Configuring an instance's service for a plan: by the deploy step, and again by a plan change. */
import { randomBytes } from 'node:crypto';
import { INSTANCE_SECRETS, instanceOwner } from '../instances/secrets.ts';
import type { JobContext } from '../jobs/context.ts';
import { requestRate, type Plan } from '../../core/plans.ts';

/** The runtime's whole configuration, as env variables (secrets go straight from the sealed store to the provider). */
function runtimeVariables(
  ctx: Pick<JobContext, 'config'>,
  instance: ServiceInstance,
  plan: Plan,
  secrets: RuntimeSecrets,
): Record<string, string> {
  const { runtime } = ctx.config;
  const vars: Record<string, string> = {
    ...runtime.connections,
    DATABASE_URL: secrets.databaseUrl,
    WORKSPACE_ID: instance.workspace_id,
    PLAN: plan.name,
    MESSAGE_LIMIT: String(plan.messageLimit),
    RATE_LIMIT: requestRate(plan),
    FEATURES: plan.features.join(','),
    CONTROL_PLANE_URL: runtime.callbackUrl,
    CONTROL_PLANE_SECRET: secrets.runtimeSecret,
    CONNECTIONS_KEY: secrets.connectionsKey,
  };
  // Where the customer's browser comes back from an OAuth provider (the connection callbacks).
  if (instance.access_url) vars.PUBLIC_URL = instance.access_url;
  if (runtime.anthropicApiKey) vars.ANTHROPIC_API_KEY = runtime.anthropicApiKey;
  if (runtime.anthropicBaseUrl) vars.ANTHROPIC_BASE_URL = runtime.anthropicBaseUrl;
  if (runtime.anthropicModel) vars.ANTHROPIC_MODEL = runtime.anthropicModel;
  return vars;
}

/** What of an instance its service's configuration names. */
type ServiceInstance = { id: string; workspace_id: string; access_url?: string | null };
/** The instance's own secrets the runtime is given (made at the first configuration, sealed in the store). */
type InstanceRuntimeSecrets = { runtimeSecret: string; connectionsKey: string };
type RuntimeSecrets = InstanceRuntimeSecrets & { databaseUrl: string };

/** Hands the service its whole configuration for a plan: every variable and the plan's limits (one provider call). */
export async function configureService(
  ctx: Pick<JobContext, 'config' | 'secrets' | 'customerDbs' | 'compute'>,
  instance: ServiceInstance,
  serviceId: string,
  plan: Plan,
): Promise<void> {
  const owner = instanceOwner(instance.id);
  const secrets = {
    runtimeSecret: await ctx.secrets.putIfAbsent(owner, INSTANCE_SECRETS.runtimeSecret, randomBytes(32).toString('base64url')),
    connectionsKey: await ctx.secrets.putIfAbsent(owner, INSTANCE_SECRETS.connectionsKey, randomBytes(32).toString('base64')),
  };
  await ctx.compute.configure(serviceId, await settingsFor(ctx, instance, plan, secrets));
}

/**
 * What configureService would hand the service now, read without writing anything (the reconciler compares the
 * service with it). A secret never made is an empty one, which no service holds: configuring makes it.
 */
export async function configuredSettings(
  ctx: Pick<JobContext, 'config' | 'customerDbs'> & { secrets: Pick<JobContext['secrets'], 'get'> },
  instance: ServiceInstance,
  plan: Plan,
): Promise<ServiceConfiguration> {
  const owner = instanceOwner(instance.id);
  const secrets = {
    runtimeSecret: (await ctx.secrets.get(owner, INSTANCE_SECRETS.runtimeSecret)) ?? '',
    connectionsKey: (await ctx.secrets.get(owner, INSTANCE_SECRETS.connectionsKey)) ?? '',
  };
  return settingsFor(ctx, instance, plan, secrets);
}

type ServiceConfiguration = { variables: Record<string, string>; limits: Pick<Plan, 'cpu' | 'memoryMb'> };

async function settingsFor(
  ctx: Pick<JobContext, 'config' | 'customerDbs'>,
  instance: ServiceInstance,
  plan: Plan,
  secrets: InstanceRuntimeSecrets,
): Promise<ServiceConfiguration> {
  const databaseUrl = await ctx.customerDbs.connectionUrl(instance.id);
  return { variables: runtimeVariables(ctx, instance, plan, { ...secrets, databaseUrl }), limits: { cpu: plan.cpu, memoryMb: plan.memoryMb } };
}
