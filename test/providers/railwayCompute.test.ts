/**
 * RailwayComputeProvider through graphql-request against the Railway emulator, whose every document is validated
 * against Railway's published schema; and the provider's own documents validated against that schema here.
 */
import { expect } from 'chai';
import type { RailwayConfig } from '../../src/config.ts';
import { PermanentError, RateLimitedError, TransientError } from '../../src/errors.ts';
import { RailwayComputeProvider } from '../../src/providers/compute/railway.ts';
import { RAILWAY_DOCUMENTS } from '../../src/providers/compute/railwayDocuments.ts';
import { waitUntil } from '../support/wait.ts';
import { startRailwayEmulator, validateRailwayDocument, type ProjectHandle, type RailwayEmulator } from '../emulators/railwayEmulator.ts';

const STUB = "require('http').createServer((q,s)=>s.end(JSON.stringify({plan:process.env.PLAN}))).listen(process.env.PORT,process.env.HOST)";

describe('Railway GraphQL documents', () => {
  for (const [name, document] of Object.entries(RAILWAY_DOCUMENTS)) {
    it(`${name} validates against Railway's published schema`, () => {
      expect(validateRailwayDocument(document).map((e) => e.message)).to.deep.equal([]);
    });
  }
});

describe('RailwayComputeProvider (against the emulator)', function () {
  this.timeout(30_000);
  let railway: RailwayEmulator;
  let project: ProjectHandle;
  let provider: RailwayComputeProvider;
  const config = (over: Partial<RailwayConfig> = {}): RailwayConfig => ({
    apiUrl: railway.url,
    auth: { kind: 'project', token: project.token },
    projectId: project.projectId,
    environmentId: project.environmentId,
    repo: 'clawdbot/runtime',
    domainScheme: 'http',
    runtimePort: 8080,
    ...over,
  });

  before(async () => {
    railway = await startRailwayEmulator({ deployMs: 150, runtime: { command: process.execPath, args: ['-e', STUB] } });
    project = railway.createProject();
    provider = new RailwayComputeProvider(config());
  });
  after(async () => railway?.close());

  it('creates a service once, with one domain, and finds it by name on a re-run', async () => {
    const first = await provider.findOrCreateService('claw-0011223344556677');
    const again = await provider.findOrCreateService('claw-0011223344556677');
    expect(again).to.deep.equal(first);
    expect(railway.services().filter((s) => s.name === 'claw-0011223344556677')).to.have.length(1);
    expect(railway.domainsOf(first.serviceId)).to.have.length(1);
    expect(railway.services()[0]!.source).to.deep.include({ repo: 'clawdbot/runtime' });
    expect(await provider.findOrCreateService('x'.repeat(33)).catch((e: unknown) => e)).to.be.instanceOf(PermanentError);
  });

  it('sets variables without deploying, limits from the plan, deploys and reaches a running instance', async () => {
    const { serviceId, accessUrl } = await provider.findOrCreateService('claw-deploy');
    await provider.setVariables(serviceId, { PLAN: 'pro', DATABASE_URL: 'postgres://x' });
    expect(railway.deploymentsOf(serviceId)).to.have.length(0); // skipDeploys
    await provider.setLimits(serviceId, { cpu: 1, memoryMb: 1024 });
    expect(railway.limitsOf(serviceId)).to.deep.equal({ vCPUs: 1, memoryGB: 1 });
    const { deploymentId } = await provider.deploy(serviceId);
    await waitUntil(async () => (await provider.deploymentState(serviceId, deploymentId)).state !== 'in_progress');
    expect((await provider.deploymentState(serviceId, deploymentId)).state).to.equal('success');
    expect(await (await fetch(accessUrl)).json()).to.deep.equal({ plan: 'pro' });

    await provider.stop(serviceId);
    expect(railway.deployment(deploymentId)!.status).to.equal('REMOVED');
    await provider.deleteService(serviceId);
    await provider.deleteService(serviceId); // already gone: no error
    expect(railway.services().map((s) => s.id)).to.not.include(serviceId);
  });

  it('deletes a service by its name when its id was never recorded, and reports the latest deployment', async () => {
    const { serviceId } = await provider.findOrCreateService('claw-unrecorded');
    expect(await provider.latestDeployment(serviceId)).to.equal(null);
    const { deploymentId } = await provider.deploy(serviceId);
    expect((await provider.latestDeployment(serviceId))!.deploymentId).to.equal(deploymentId);
    await provider.deleteService('claw-unrecorded');
    expect(railway.services().filter((s) => s.name === 'claw-unrecorded' && !s.deletedAt)).to.have.length(0);
    await provider.deleteService('claw-never-created'); // nothing to delete: no error
  });

  it('reports failed, crashed and approval-waiting deployments', async () => {
    const { serviceId } = await provider.findOrCreateService('claw-failing');
    for (const [end, expected] of [['FAILED', 'failed'], ['CRASHED', 'failed'], ['NEEDS_APPROVAL', 'needs_approval']] as const) {
      railway.nextDeploymentEnds(end);
      const { deploymentId } = await provider.deploy(serviceId);
      await waitUntil(async () => (await provider.deploymentState(serviceId, deploymentId)).state !== 'in_progress');
      expect((await provider.deploymentState(serviceId, deploymentId)).state, end).to.equal(expected);
    }
  });

  it('turns 429 into a rate-limit pause with Railway’s wait, 5xx into a retry, GraphQL errors into permanent failures', async () => {
    railway.failNext(1, 429, { 'Retry-After': '3', 'X-RateLimit-Remaining': '0' });
    const limited = await provider.findOrCreateService('claw-429').catch((e: unknown) => e);
    expect(limited).to.be.instanceOf(RateLimitedError);
    expect((limited as RateLimitedError).retryAfterMs).to.equal(3_000);

    railway.failNext(1, 503);
    expect(await provider.findOrCreateService('claw-503').catch((e: unknown) => e)).to.be.instanceOf(TransientError);

    const wrongToken = new RailwayComputeProvider(config({ auth: { kind: 'bearer', token: 'not-a-token' } }));
    const refused = await wrongToken.findOrCreateService('claw-auth').catch((e: unknown) => e);
    expect(refused).to.be.instanceOf(PermanentError);
    expect((refused as Error).message).to.include('Not Authorized');
    expect((refused as Error).message).to.not.include('not-a-token');
  });
});
