/**
 * Railway compute provider (graphql-request against Railway's public GraphQL API). Each customer is a service
 * created from the prebuilt runtime image or from the runtime's GitHub repository (built with runtime/Dockerfile).
 * Every call names the service by the id the control plane recorded: none lists the project's services except the
 * recovery of a service whose id was never recorded, so a provision costs the same at 1 customer as at 10,000.
 * Variables, limits and build settings go in one request; a deployment is polled by id. 429 pauses the compute
 * queue globally until Railway's window resets; GraphQL errors in a 200 are errors.
 */
import { ClientError, GraphQLClient } from 'graphql-request';
import type { RailwayConfig } from '../../config.ts';
import { isTransientNetworkError, parseRetryAfter, PermanentError, RateLimitedError, TransientError } from '../../errors.ts';
import type { Plan } from '../../../core/plans.ts';
import { providerFetch } from '../http.ts';
import type { ComputeProvider, DeploymentState, ListedService, ServiceConfigurationInput, ServiceSettings, ServiceState } from '../types.ts';
import { imageWithVersion } from '../../fleet/settings.ts';
import { RAILWAY_DOCUMENTS as DOCS } from './railwayDocuments.ts';

const REQUEST_TIMEOUT_MS = 20_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Railway caps service names at 32 characters. */
export const MAX_SERVICE_NAME = 32;

const IN_PROGRESS = new Set(['INITIALIZING', 'QUEUED', 'WAITING', 'BUILDING', 'DEPLOYING']);
const SUCCEEDED = new Set(['SUCCESS', 'SLEEPING']);
const ENDED = new Set(['FAILED', 'CRASHED', 'REMOVED', 'REMOVING', 'SKIPPED']);

export function deploymentStateOf(status: string): DeploymentState {
  if (SUCCEEDED.has(status)) return 'success';
  if (ENDED.has(status)) return 'failed';
  if (status === 'NEEDS_APPROVAL') return 'needs_approval';
  return 'in_progress'; // the known in-progress states, and any state Railway adds later
}

/** What Railway builds from the repository: the runtime's Dockerfile (the root Dockerfile is the control plane's). */
export const RUNTIME_DOCKERFILE = 'runtime/Dockerfile';
/** Railway routes traffic to a deployment (and calls it SUCCESS) only once the runtime answers this with 200. */
export const RUNTIME_HEALTHCHECK_PATH = '/health';

export class RailwayComputeProvider implements ComputeProvider {
  readonly kind = 'railway';
  readonly serviceStateIsCheap = false;
  private readonly client: GraphQLClient;
  /** Requests made, by operation: the provision's API budget is measured from this. */
  readonly calls = new Map<string, number>();

  constructor(private readonly config: RailwayConfig) {
    const auth: Record<string, string> =
      config.auth.kind === 'bearer' ? { Authorization: `Bearer ${config.auth.token}` } : { 'Project-Access-Token': config.auth.token };
    this.client = new GraphQLClient(config.apiUrl, { headers: auth, fetch: providerFetch('railway') });
  }

  async createService(name: string, options: { mayExist?: boolean } = {}): Promise<{ serviceId: string; created: boolean }> {
    if (name.length > MAX_SERVICE_NAME) throw new PermanentError(`service name ${name} is longer than ${MAX_SERVICE_NAME} characters`);
    const found = options.mayExist ? await this.findService(name) : undefined;
    if (found) return { serviceId: found, created: false };
    const data = await this.call<{ serviceCreate: { id: string } }>('serviceCreate', {
      input: { ...this.scope(), name, source: this.source() },
    });
    return { serviceId: data.serviceCreate.id, created: true };
  }

  /** The service's public domain, created once: looked up first only when the service was not just created. */
  async accessUrl(serviceId: string, options: { fresh?: boolean } = {}): Promise<string> {
    const scheme = this.config.domainScheme;
    if (!options.fresh) {
      const found = await this.call<{ domains: { serviceDomains: { domain: string }[] } }>('serviceDomains', { ...this.scope(), serviceId });
      const existing = found.domains.serviceDomains[0]?.domain;
      if (existing) return `${scheme}://${existing}`;
    }
    const created = await this.call<{ serviceDomainCreate: { domain: string } }>('serviceDomainCreate', {
      ...this.envScope(),
      serviceId,
      targetPort: this.config.runtimePort,
    });
    return `${scheme}://${created.serviceDomainCreate.domain}`;
  }

  /**
   * One request: every variable (deploys skipped), the plan's CPU and memory, and what the service builds and runs
   * (the image, or the repository with the runtime's Dockerfile, and the runtime's healthcheck).
   */
  async configure(serviceId: string, settings: ServiceConfigurationInput): Promise<void> {
    const source = this.source(settings.version);
    await this.call('configure', {
      ...this.envScope(),
      serviceId,
      variables: {
        ...this.scope(),
        serviceId,
        // The runtime listens where the domain sends traffic (Railway would otherwise pick a PORT of its own).
        variables: { ...settings.variables, PORT: String(this.config.runtimePort) },
        skipDeploys: true,
      },
      vCPUs: settings.limits.cpu,
      memoryGB: settings.limits.memoryMb / 1024,
      instance: { source, healthcheckPath: RUNTIME_HEALTHCHECK_PATH, ...(source.repo ? { dockerfilePath: RUNTIME_DOCKERFILE } : {}) },
    });
  }

  async deploy(serviceId: string): Promise<{ deploymentId: string }> {
    const data = await this.call<{ serviceInstanceDeployV2: string }>('deploy', { ...this.envScope(), serviceId });
    return { deploymentId: data.serviceInstanceDeployV2 };
  }

  async deploymentState(_serviceId: string, deploymentId: string): Promise<{ state: DeploymentState; detail?: string }> {
    const data = await this.call<{ deployment: { status: string } }>('deploymentStatus', { id: deploymentId });
    const { status } = data.deployment;
    return { state: deploymentStateOf(status), detail: `Railway status ${status}` };
  }

  async latestDeployment(serviceId: string): Promise<{ deploymentId: string; createdAt: Date } | null> {
    const data = await this.call<{ serviceInstance: { latestDeployment: { id: string; createdAt: string } | null } }>('activeDeployments', {
      ...this.envScope(),
      serviceId,
    });
    const latest = data.serviceInstance.latestDeployment;
    return latest ? { deploymentId: latest.id, createdAt: new Date(latest.createdAt) } : null;
  }

  /** Railway has no service-level stop: the running deployments are removed (a redeploy starts it again). */
  async stop(serviceId: string): Promise<void> {
    const data = await this.call<{ serviceInstance: { activeDeployments: { id: string }[]; latestDeployment: { id: string; status: string } | null } }>(
      'activeDeployments',
      { ...this.envScope(), serviceId },
    );
    const ids = new Set(data.serviceInstance.activeDeployments.map((d) => d.id));
    const latest = data.serviceInstance.latestDeployment;
    if (latest && (SUCCEEDED.has(latest.status) || IN_PROGRESS.has(latest.status))) ids.add(latest.id);
    for (const id of ids) await this.call('deploymentRemove', { id });
  }

  /** The newest deployment's status: one request (made only when the instance's /health failed). */
  async serviceState(serviceId: string): Promise<ServiceState> {
    let latest: { id: string; status: string } | null;
    try {
      latest = await this.latestWithStatus(serviceId);
    } catch (err) {
      if (err instanceof PermanentError && /not found/i.test(err.message)) return { running: false, detail: 'the service does not exist' };
      throw err;
    }
    if (!latest) return { running: false, detail: 'the service has no deployment' };
    return { running: latest.status === 'SUCCESS', detail: `deployment ${latest.id} is ${latest.status}` };
  }

  /**
   * Restarts the newest deployment when it runs or crashed (deploymentRestart: the same image, no build), else
   * deploys the service again.
   */
  async restart(serviceId: string): Promise<{ action: string }> {
    const latest = await this.latestWithStatus(serviceId);
    if (latest && (latest.status === 'SUCCESS' || latest.status === 'CRASHED')) {
      await this.call('deploymentRestart', { id: latest.id });
      return { action: `restarted deployment ${latest.id} (it was ${latest.status})` };
    }
    const { deploymentId } = await this.deploy(serviceId);
    return { action: `deployed again as ${deploymentId} (the newest deployment was ${latest ? `${latest.id}, ${latest.status}` : 'none'})` };
  }

  private async latestWithStatus(serviceId: string): Promise<{ id: string; status: string } | null> {
    const data = await this.call<{ serviceInstance: { latestDeployment: { id: string; status: string } | null } }>('activeDeployments', {
      ...this.envScope(),
      serviceId,
    });
    return data.serviceInstance.latestDeployment;
  }

  /** Deletes by id; given a service name instead (a step died before recording the id), finds it first. */
  async deleteService(serviceIdOrName: string): Promise<void> {
    const serviceId = UUID.test(serviceIdOrName) ? serviceIdOrName : await this.findService(serviceIdOrName);
    if (!serviceId) return; // never created
    try {
      await this.call('serviceDelete', { id: serviceId, environmentId: this.config.environmentId });
    } catch (err) {
      if (err instanceof PermanentError && /not found/i.test(err.message)) return; // already gone
      throw err;
    }
  }

  /** The project's services, 100 a request. */
  async listServices(): Promise<ListedService[]> {
    const listed: ListedService[] = [];
    for await (const page of this.servicePages()) listed.push(...page.map((s) => ({ serviceId: s.id, name: s.name })));
    return listed;
  }

  /** Variables and limit overrides in one request. */
  async readSettings(serviceId: string): Promise<ServiceSettings | null> {
    try {
      const data = await this.call<{ variables: Record<string, string>; serviceInstanceLimitOverride: unknown }>('serviceSettings', {
        ...this.scope(),
        serviceId,
      });
      return { variables: data.variables, limits: limitsOf(data.serviceInstanceLimitOverride) };
    } catch (err) {
      if (err instanceof PermanentError && /not found/i.test(err.message)) return null;
      throw err;
    }
  }

  async close(): Promise<void> {}

  /** Recovery only (a service asked for, its id never recorded): Railway has no lookup by name, so this lists. */
  private async findService(name: string): Promise<string | undefined> {
    for await (const page of this.servicePages()) {
      const found = page.find((s) => s.name === name);
      if (found) return found.id;
    }
    return undefined;
  }

  private async *servicePages(): AsyncGenerator<{ id: string; name: string }[]> {
    let after: string | null = null;
    do {
      const data: { project: { services: { edges: { node: { id: string; name: string } }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } } } } =
        await this.call('projectServices', { projectId: this.config.projectId, after });
      yield data.project.services.edges.map((e) => e.node);
      after = data.project.services.pageInfo.hasNextPage ? data.project.services.pageInfo.endCursor : null;
    } while (after);
  }

  /** Railway's ServiceSourceInput: the prebuilt image, or the repository. */
  /** What the service runs: the configured image (with its tag set to `version` when given), or the repository. */
  private source(version?: string): { image?: string; repo?: string } {
    const { source } = this.config;
    return 'image' in source ? { image: version ? imageWithVersion(source.image, version) : source.image } : { repo: source.repo };
  }

  private scope() {
    return { projectId: this.config.projectId, environmentId: this.config.environmentId };
  }

  private envScope() {
    return { environmentId: this.config.environmentId };
  }

  private async call<T = unknown>(operation: keyof typeof DOCS, variables: Record<string, unknown>): Promise<T> {
    this.calls.set(operation, (this.calls.get(operation) ?? 0) + 1);
    try {
      return await this.client.request<T>({ document: DOCS[operation], variables, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    } catch (err) {
      throw classify(operation, err);
    }
  }
}

/**
 * Railway's limit override (a JSON scalar the schema leaves open) as a plan's CPU and memory: `{ vCPUs, memoryGB }`,
 * what configure sets. Anything else (no override, another shape) is unknown, and no limits are compared.
 */
export function limitsOf(override: unknown): ServiceSettings['limits'] {
  const { vCPUs, memoryGB } = (override ?? {}) as { vCPUs?: unknown; memoryGB?: unknown };
  if (typeof vCPUs !== 'number' || typeof memoryGB !== 'number') return null;
  return { cpu: vCPUs, memoryMb: Math.round(memoryGB * 1024) };
}

/** Railway's answers, as the step should see them. */
function classify(operation: string, err: unknown): Error {
  if (err instanceof ClientError) {
    const { status, headers, errors } = err.response;
    if (status === 429) {
      const reset = Number(headers.get('x-ratelimit-reset'));
      const untilReset = Number.isFinite(reset) && reset > 0 ? reset * 1000 - Date.now() : undefined;
      const wait = parseRetryAfter(headers.get('retry-after')) ?? untilReset ?? 1_000;
      return new RateLimitedError(`Railway rate limit reached (${operation})`, Math.max(250, wait));
    }
    if (status >= 500 || status === 408) return new TransientError(`Railway answered HTTP ${status} (${operation})`);
    const message = errors?.map((e) => e.message).join('; ') || `HTTP ${status}`;
    return new PermanentError(`Railway refused ${operation}: ${message}`);
  }
  if (isTransientNetworkError(err) || (err instanceof TypeError && /fetch failed/.test(err.message))) {
    return new TransientError(`Railway unreachable (${operation}): ${(err as Error).message}`);
  }
  return err instanceof Error ? err : new Error(String(err));
}
