/**
 * RailwayComputeProvider through graphql-request against the Railway emulator, whose every document is validated
 * against Railway's published schema; and the provider's own documents validated against that schema here.
 */
import { expect } from 'chai';
import { GraphQLClient } from 'graphql-request';
import type { RailwayConfig } from '../../src/config.ts';
import { PermanentError, RateLimitedError, TransientError } from '../../src/errors.ts';
import { RailwayComputeProvider, RUNTIME_DOCKERFILE } from '../../src/providers/compute/railway.ts';
import { RAILWAY_DOCUMENTS } from '../../src/providers/compute/railwayDocuments.ts';
import { waitUntil } from '../support/wait.ts';
import { CONTRACT_STUB, computeProviderContract } from './computeContract.ts';
import { startRailwayEmulator, validateRailwayDocument, type ProjectHandle, type RailwayEmulator, type RuntimeSpec } from '../emulators/railwayEmulator.ts';

const IMAGE = 'ghcr.io/clawdbot/runtime:1.0.0';
const LIMITS = { cpu: 1, memoryMb: 1024, pidsLimit: 256 };

describe('Railway GraphQL documents', () => {
  for (const [name, document] of Object.entries(RAILWAY_DOCUMENTS)) {
    it(`${name} validates against Railway's published schema`, () => {
      expect(validateRailwayDocument(document).map((e) => e.message)).to.deep.equal([]);
    });
  }
});

describe('RailwayComputeProvider (against the emulator)', function () {
  this.timeout(60_000);
  let railway: RailwayEmulator;
  let project: ProjectHandle;
  let provider: RailwayComputeProvider;
  const stub: RuntimeSpec = { command: process.execPath, args: ['-e', CONTRACT_STUB] };
  const config = (over: Partial<RailwayConfig> = {}, on: ProjectHandle = project): RailwayConfig => ({
    apiUrl: railway.url,
    auth: { kind: 'project', token: on.token },
    projectId: on.projectId,
    environmentId: on.environmentId,
    source: { repo: 'clawdbot/runtime' },
    domainScheme: 'http',
    runtimePort: 8080,
    ...over,
  });

  before(async () => {
    // The root Dockerfile runs the control plane, which never answers the runtime's healthcheck; runtime/Dockerfile
    // and the image run the runtime (a stub here).
    railway = await startRailwayEmulator({
      deployMs: 150,
      builds: {
        repos: { 'clawdbot/runtime': { Dockerfile: { unhealthy: 'the control plane' }, [RUNTIME_DOCKERFILE]: stub } },
        images: { [IMAGE]: stub },
      },
    });
    project = railway.createProject();
    provider = new RailwayComputeProvider(config());
  });
  after(async () => railway?.close());

  computeProviderContract('railway (emulator)', () => ({ provider: new RailwayComputeProvider(config({ source: { image: IMAGE } })), name: 'claw-contract' }));

  /** What create-service and deploy ask of the provider for one new customer, up to one status query at the end. */
  async function provision(p: RailwayComputeProvider, name: string) {
    const { serviceId, created } = await p.createService(name);
    const accessUrl = await p.accessUrl(serviceId, { fresh: created });
    await p.configure(serviceId, { variables: { PLAN: 'pro' }, limits: LIMITS });
    const { deploymentId } = await p.deploy(serviceId);
    await railway.waitForDeployment(deploymentId); // the emulator's own view: no API call
    const { state } = await p.deploymentState(serviceId, deploymentId);
    return { serviceId, accessUrl, deploymentId, state };
  }

  /** `n` services made straight through the API, as other customers' would be. */
  async function fill(on: ProjectHandle, n: number): Promise<void> {
    const client = new GraphQLClient(railway.url, { headers: { 'Project-Access-Token': on.token } });
    for (let i = 0; i < n; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, k) =>
        client.request(RAILWAY_DOCUMENTS.serviceCreate, { input: { projectId: on.projectId, environmentId: on.environmentId, name: `claw-other-${i + k}` } })));
    }
  }

  it('provisions with the same calls in an empty project as among 250 other services: none lists the project', async () => {
    const alone = railway.createProject();
    const crowded = railway.createProject();
    await fill(crowded, 250); // more than two pages of 100
    const counts: Record<string, number>[] = [];
    for (const on of [alone, crowded]) {
      const p = new RailwayComputeProvider(config({}, on));
      railway.resetCalls();
      const made = await provision(p, 'claw-budget');
      expect(made.state).to.equal('success');
      expect(await (await fetch(made.accessUrl)).json()).to.deep.equal({ plan: 'pro' });
      counts.push(Object.fromEntries(p.calls));
      // The provider counts every request Railway saw.
      expect(Object.values(counts.at(-1)!).reduce((a, b) => a + b, 0)).to.equal(railway.calls.length);
    }
    expect(counts[0]).to.deep.equal({ serviceCreate: 1, serviceDomainCreate: 1, configure: 1, deploy: 1, deploymentStatus: 1 });
    expect(counts[1]).to.deep.equal(counts[0]);
  });

  it('finds a service made by a run that never recorded its id, across pages, and makes no second one', async () => {
    const crowded = railway.createProject();
    await fill(crowded, 250);
    const p = new RailwayComputeProvider(config({}, crowded));
    const made = await p.createService('claw-lost-answer');
    await fill(crowded, 10); // made after it: it is on the third page
    p.calls.clear();
    expect(await p.createService('claw-lost-answer', { mayExist: true })).to.deep.equal({ serviceId: made.serviceId, created: false });
    expect(Object.fromEntries(p.calls)).to.deep.equal({ projectServices: 3 }); // the rare recovery is the only listing
    expect(railway.services({ projectId: crowded.projectId }).filter((s) => s.name === 'claw-lost-answer')).to.have.length(1);

    // Asked for but never made: the recovery finds nothing and creates it.
    expect(await p.createService('claw-never-made', { mayExist: true })).to.include({ created: true });
    // Its domain, made by a run that died before recording it, is found instead of made twice.
    const url = await p.accessUrl(made.serviceId, { fresh: true });
    expect(await p.accessUrl(made.serviceId)).to.equal(url);
    expect(railway.domainsOf(made.serviceId)).to.have.length(1);
    expect(await p.createService('x'.repeat(33)).catch((e: unknown) => e)).to.be.instanceOf(PermanentError);
  });

  it('lists the whole project 100 services a request, and reads a service’s variables and limits back in one (the reconciler)', async () => {
    const listed = railway.createProject();
    await fill(listed, 150);
    const p = new RailwayComputeProvider(config({}, listed));
    const { serviceId } = await p.createService('claw-listed');
    await p.configure(serviceId, { variables: { PLAN: 'pro' }, limits: LIMITS });
    const bare = await p.createService('claw-bare');
    p.calls.clear();

    const services = await p.listServices();
    expect(services).to.have.length(152);
    expect(services).to.deep.include({ serviceId, name: 'claw-listed' });
    expect(Object.fromEntries(p.calls)).to.deep.equal({ projectServices: 2 });

    p.calls.clear();
    expect(await p.readSettings(serviceId)).to.deep.equal({ variables: { PLAN: 'pro', PORT: '8080' }, limits: { cpu: 1, memoryMb: 1024 } });
    expect(Object.fromEntries(p.calls)).to.deep.equal({ serviceSettings: 1 });
    // No limits set: none to compare (Railway's plan maximums are not the plan's).
    expect(await p.readSettings(bare.serviceId)).to.deep.equal({ variables: {}, limits: null });
    await p.deleteService(bare.serviceId);
    expect(await p.readSettings(bare.serviceId)).to.equal(null);
  });

  it('configures in one request: variables without deploying, limits, the runtime Dockerfile and its healthcheck', async () => {
    const { serviceId } = await provider.createService('claw-configure');
    provider.calls.clear();
    railway.resetCalls();
    await provider.configure(serviceId, { variables: { PLAN: 'pro', DATABASE_URL: 'postgres://x' }, limits: LIMITS });
    expect(railway.calls).to.have.length(1);
    expect(railway.counts()).to.deep.equal({ variableCollectionUpsert: 1, serviceInstanceLimitsUpdate: 1, serviceInstanceUpdate: 1 });
    expect(railway.deploymentsOf(serviceId)).to.have.length(0); // skipDeploys
    expect(railway.variablesOf(serviceId)).to.deep.equal({ PLAN: 'pro', DATABASE_URL: 'postgres://x', PORT: '8080' });
    expect(railway.limitsOf(serviceId)).to.deep.equal({ vCPUs: 1, memoryGB: 1 });
    expect(railway.settingsOf(serviceId)).to.deep.include({ dockerfilePath: 'runtime/Dockerfile', healthcheckPath: '/health' });
    expect(railway.services().find((s) => s.id === serviceId)!.source).to.deep.equal({ repo: 'clawdbot/runtime', image: null });
  });

  it('builds the runtime from the repository only with its Dockerfile: the root one would start the control plane', async () => {
    // Created from the repo and deployed with Railway's defaults (what the provider did before): the root Dockerfile.
    const { serviceId: bare } = await provider.createService('claw-root-dockerfile');
    const wrong = await railway.waitForDeployment((await provider.deploy(bare)).deploymentId);
    expect(wrong.runs).to.equal('unhealthy: the control plane');
    expect(wrong.running).to.equal(false);

    // As the provider configures it: runtime/Dockerfile, which runs the runtime.
    const made = await provision(provider, 'claw-runtime-dockerfile');
    expect(made.state).to.equal('success');
    expect(railway.deployment(made.deploymentId)).to.include({ runs: `runtime: ${process.execPath} -e ${CONTRACT_STUB}`, running: true });
    expect(await (await fetch(made.accessUrl)).json()).to.deep.equal({ plan: 'pro' });
  });

  it('with CLAWDBOT_IMAGE creates the service from the image, which runs the runtime', async () => {
    const fromImage = new RailwayComputeProvider(config({ source: { image: IMAGE } }));
    const made = await provision(fromImage, 'claw-image');
    expect(railway.services().find((s) => s.id === made.serviceId)!.source).to.deep.equal({ repo: null, image: IMAGE });
    expect(made.state).to.equal('success');
    expect(railway.deployment(made.deploymentId)!.runs).to.equal(`runtime: ${process.execPath} -e ${CONTRACT_STUB}`);
    expect(await (await fetch(made.accessUrl)).json()).to.deep.equal({ plan: 'pro' });
  });

  it('deploys, stops and deletes by id, and deletes by name when the id was never recorded', async () => {
    const { serviceId, deploymentId } = await provision(provider, 'claw-deploy');
    await provider.stop(serviceId);
    expect(railway.deployment(deploymentId)!.status).to.equal('REMOVED');
    await provider.deleteService(serviceId);
    await provider.deleteService(serviceId); // already gone: no error
    expect(railway.services().map((s) => s.id)).to.not.include(serviceId);

    const { serviceId: unrecorded } = await provider.createService('claw-unrecorded');
    expect(await provider.latestDeployment(unrecorded)).to.equal(null);
    const { deploymentId: latest } = await provider.deploy(unrecorded);
    expect((await provider.latestDeployment(unrecorded))!.deploymentId).to.equal(latest);
    await provider.deleteService('claw-unrecorded');
    expect(railway.services().filter((s) => s.name === 'claw-unrecorded')).to.have.length(0);
    await provider.deleteService('claw-never-created'); // nothing to delete: no error
  });

  it('reports failed, crashed and approval-waiting deployments', async () => {
    const { serviceId } = await provider.createService('claw-failing');
    await provider.configure(serviceId, { variables: {}, limits: LIMITS });
    for (const [end, expected] of [['FAILED', 'failed'], ['CRASHED', 'failed'], ['NEEDS_APPROVAL', 'needs_approval']] as const) {
      railway.nextDeploymentEnds(end);
      const { deploymentId } = await provider.deploy(serviceId);
      await waitUntil(async () => (await provider.deploymentState(serviceId, deploymentId)).state !== 'in_progress');
      expect((await provider.deploymentState(serviceId, deploymentId)).state, end).to.equal(expected);
    }
  });

  it('turns 429 into a rate-limit pause with Railway’s wait, 5xx into a retry, GraphQL errors into permanent failures', async () => {
    railway.failNext(1, 429, { 'Retry-After': '3', 'X-RateLimit-Remaining': '0' });
    const limited = await provider.createService('claw-429').catch((e: unknown) => e);
    expect(limited).to.be.instanceOf(RateLimitedError);
    expect((limited as RateLimitedError).retryAfterMs).to.equal(3_000);

    railway.failNext(1, 503);
    expect(await provider.createService('claw-503').catch((e: unknown) => e)).to.be.instanceOf(TransientError);

    const wrongToken = new RailwayComputeProvider(config({ auth: { kind: 'bearer', token: 'not-a-token' } }));
    const refused = await wrongToken.createService('claw-auth').catch((e: unknown) => e);
    expect(refused).to.be.instanceOf(PermanentError);
    expect((refused as Error).message).to.include('Not Authorized');
    expect((refused as Error).message).to.not.include('not-a-token');
  });
});
