/** Configuring an instance's service for a plan: by the deploy step, and again by a plan change. */
import { randomBytes } from 'node:crypto';
import { INSTANCE_SECRETS, instanceOwner } from '../instances/secrets.ts';
import type { JobContext } from '../jobs/context.ts';
import { requestRate, type Plan } from '../../core/plans.ts';
import type { Generation } from '../db/fleetGenerations.ts';
import { currentGeneration } from '../fleet/generations.ts';
import { fleetVariables } from '../fleet/settings.ts';

/**
 * The runtime's whole configuration, as env variables (secrets go straight from the sealed store to the provider):
 * the fleet settings of a generation (shared by every instance running it), then the instance's own values.
 */
function runtimeVariables(
  ctx: Pick<JobContext, 'config'>,
  instance: ServiceInstance,
  plan: Plan,
  secrets: RuntimeSecrets,
  generation: Generation,
): Record<string, string> {
  const { runtime } = ctx.config;
  const vars: Record<string, string> = {
    ...fleetVariables(generation),
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
  return vars;
}

/** What of an instance its service's configuration names. */
type ServiceInstance = { id: string; workspace_id: string; access_url?: string | null };
/** The instance's own secrets the runtime is given (made at the first configuration, sealed in the store). */
type InstanceRuntimeSecrets = { runtimeSecret: string; connectionsKey: string };
type RuntimeSecrets = InstanceRuntimeSecrets & { databaseUrl: string };

/**
 * Which fleet generation a configuration uses: the current one (new provisions, resizes, reactivations), the one the
 * instance was last configured with ('instance': the reconciler puts a drifted service back as it was), or a given
 * one (a rollout's target, or what a rollback returns to).
 */
export type GenerationChoice = 'current' | 'instance' | Generation;

/**
 * Hands the service its whole configuration for a plan: every variable, the plan's limits and the runtime version
 * (one provider call), and records on the instance which generation it now has.
 */
export async function configureService(
  ctx: Pick<JobContext, 'config' | 'secrets' | 'customerDbs' | 'compute' | 'fleet'>,
  instance: ServiceInstance,
  serviceId: string,
  plan: Plan,
  choice: GenerationChoice = 'current',
): Promise<Generation> {
  const owner = instanceOwner(instance.id);
  const secrets = {
    runtimeSecret: await ctx.secrets.putIfAbsent(owner, INSTANCE_SECRETS.runtimeSecret, randomBytes(32).toString('base64url')),
    connectionsKey: await ctx.secrets.putIfAbsent(owner, INSTANCE_SECRETS.connectionsKey, randomBytes(32).toString('base64')),
  };
  const generation = await generationFor(ctx, instance, choice);
  await ctx.compute.configure(serviceId, { ...(await settingsFor(ctx, instance, plan, secrets, generation)), version: generation.runtimeVersion });
  await ctx.fleet.recordOnInstance(instance.id, generation);
  return generation;
}

async function generationFor(ctx: Pick<JobContext, 'config' | 'fleet'>, instance: ServiceInstance, choice: GenerationChoice): Promise<Generation> {
  if (typeof choice === 'object') return choice;
  if (choice === 'instance') {
    const id = await ctx.fleet.ofInstance(instance.id);
    const recorded = id === null ? undefined : await ctx.fleet.byId(id);
    if (recorded) return recorded;
  }
  return currentGeneration(ctx);
}

/**
 * What configureService would hand the service now, read without writing anything (the reconciler compares the
 * service with it). A secret never made is an empty one, which no service holds: configuring makes it.
 */
export async function configuredSettings(
  ctx: Pick<JobContext, 'config' | 'customerDbs' | 'fleet'> & { secrets: Pick<JobContext['secrets'], 'get'> },
  instance: ServiceInstance,
  plan: Plan,
): Promise<ServiceConfiguration> {
  const owner = instanceOwner(instance.id);
  const secrets = {
    runtimeSecret: (await ctx.secrets.get(owner, INSTANCE_SECRETS.runtimeSecret)) ?? '',
    connectionsKey: (await ctx.secrets.get(owner, INSTANCE_SECRETS.connectionsKey)) ?? '',
  };
  return settingsFor(ctx, instance, plan, secrets, await generationFor(ctx, instance, 'instance'));
}

type ServiceConfiguration = { variables: Record<string, string>; limits: Pick<Plan, 'cpu' | 'memoryMb' | 'pidsLimit'> };

async function settingsFor(
  ctx: Pick<JobContext, 'config' | 'customerDbs'>,
  instance: ServiceInstance,
  plan: Plan,
  secrets: InstanceRuntimeSecrets,
  generation: Generation,
): Promise<ServiceConfiguration> {
  const databaseUrl = await ctx.customerDbs.connectionUrl(instance.id);
  return { variables: runtimeVariables(ctx, instance, plan, { ...secrets, databaseUrl }, generation), limits: { cpu: plan.cpu, memoryMb: plan.memoryMb, pidsLimit: plan.pidsLimit } };
}
