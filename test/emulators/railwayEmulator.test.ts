// Proves the Railway GraphQL emulator against the real `graphql-request` client, with the ready documents of
// test/fixtures/railway/readyDocuments.graphql (the operations the provisioner needs, see test/fixtures/README.md).
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { ClientError, GraphQLClient } from 'graphql-request';
import { Kind, parse, print } from 'graphql';
import { waitUntil } from '../support/wait.ts';
import {
  startRailwayEmulator,
  validateRailwayDocument,
  type DeploymentStatus,
  type ProjectHandle,
  type RailwayEmulator,
} from './railwayEmulator.ts';

const READY_DOCUMENTS = readFileSync(new URL('../fixtures/railway/readyDocuments.graphql', import.meta.url), 'utf8');

/** Every ready operation, by name, printed alone (one operation per request). */
const OPS: Record<string, string> = {};
for (const def of parse(READY_DOCUMENTS).definitions) {
  if (def.kind === Kind.OPERATION_DEFINITION && def.name) OPS[def.name.value] = print(def);
}
const op = (name: string): string => {
  const doc = OPS[name];
  if (!doc) throw new Error(`readyDocuments.graphql has no operation ${name}`);
  return doc;
};

const IN_PROGRESS = ['QUEUED', 'INITIALIZING', 'WAITING', 'BUILDING', 'DEPLOYING'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function expectClientError(p: Promise<unknown>): Promise<ClientError> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(ClientError);
    return e as ClientError;
  }
  throw new Error('expected the request to fail');
}

interface DeploymentResult {
  deployment: { id: string; status: DeploymentStatus; statusUpdatedAt: string | null; url: string | null; staticUrl: string | null; deploymentStopped: boolean; createdAt: string };
}

/** Polls DeploymentStatus until the status leaves the in-progress set; returns the statuses seen and the last one. */
async function pollDeployment(client: GraphQLClient, id: string, stopAt: string[] = []): Promise<{ seen: string[]; last: DeploymentResult['deployment'] }> {
  const seen: string[] = [];
  for (let i = 0; i < 500; i += 1) {
    const { deployment } = await client.request<DeploymentResult>(op('DeploymentStatus'), { id });
    if (seen[seen.length - 1] !== deployment.status) seen.push(deployment.status);
    if (!IN_PROGRESS.includes(deployment.status) || stopAt.includes(deployment.status)) return { seen, last: deployment };
    await sleep(10);
  }
  throw new Error(`deployment ${id} never finished: ${seen.join(' → ')}`);
}

describe('Railway GraphQL emulator with graphql-request', () => {
  let emulator: RailwayEmulator;
  let project: ProjectHandle;
  const account = () => new GraphQLClient(emulator.url, { headers: { Authorization: `Bearer ${emulator.accountToken}` } });
  const projectClient = (token = project.token) => new GraphQLClient(emulator.url, { headers: { 'Project-Access-Token': token } });

  async function createService(client: GraphQLClient, name: string, variables: Record<string, string> = {}): Promise<string> {
    const { serviceCreate } = await client.request<{ serviceCreate: { id: string } }>(op('ServiceCreateFromRepo'), {
      input: { projectId: project.projectId, environmentId: project.environmentId, name, source: { repo: 'clawdbot/runtime' }, branch: 'main', variables },
    });
    return serviceCreate.id;
  }
  async function deploy(client: GraphQLClient, serviceId: string): Promise<string> {
    const r = await client.request<{ serviceInstanceDeployV2: string }>(op('ServiceDeploy'), { serviceId, environmentId: project.environmentId });
    return r.serviceInstanceDeployV2;
  }
  async function upsert(client: GraphQLClient, serviceId: string, variables: Record<string, string>, extra: Record<string, unknown> = {}) {
    return client.request<{ variableCollectionUpsert: boolean }>(op('VariablesUpsert'), {
      input: { projectId: project.projectId, environmentId: project.environmentId, serviceId, variables, ...extra },
    });
  }

  afterEach(async () => {
    await emulator?.close();
  });

  it('validates every ready document and rejects the docs mismatches', () => {
    expect(Object.keys(OPS)).to.have.length(12);
    for (const doc of Object.values(OPS)) expect(validateRailwayDocument(doc).map((e) => e.message), doc).to.deep.equal([]);
    expect(validateRailwayDocument('query { projectToken { projectId environmentId } }')).to.deep.equal([]);
    const rollback = validateRailwayDocument('mutation($id: String!) { deploymentRollback(id: $id) { id status } }');
    expect(rollback.map((e) => e.message).join()).to.match(/must not have a selection since type "Boolean!" has no subfields/);
  });

  it('runs the provisioning flow end to end with the ready documents', async () => {
    emulator = await startRailwayEmulator({ deployMs: 120 });
    project = emulator.createProject({ name: 'clawdbot' });
    const client = account();

    const { serviceCreate } = await client.request<{ serviceCreate: { id: string; name: string; projectId: string; createdAt: string } }>(
      op('ServiceCreateFromRepo'),
      { input: { projectId: project.projectId, environmentId: project.environmentId, name: 'cust-acme', source: { repo: 'clawdbot/runtime' }, branch: 'main', variables: { PORT: '8080' } } },
    );
    expect(Object.keys(serviceCreate)).to.deep.equal(['id', 'name', 'projectId', 'createdAt']);
    expect(serviceCreate).to.include({ name: 'cust-acme', projectId: project.projectId });
    expect(new Date(serviceCreate.createdAt).toISOString()).to.equal(serviceCreate.createdAt);
    const serviceId = serviceCreate.id;

    expect(await upsert(client, serviceId, { API_KEY: 'x', NODE_ENV: 'production' }, { skipDeploys: true })).to.deep.equal({ variableCollectionUpsert: true });
    expect(emulator.variablesOf(serviceId)).to.deep.equal({ PORT: '8080', API_KEY: 'x', NODE_ENV: 'production' });
    expect(emulator.deploymentsOf(serviceId)).to.deep.equal([]);

    const limits = await client.request(op('ServiceLimitsUpdate'), { serviceId, environmentId: project.environmentId, vCPUs: 2, memoryGB: 1.5 });
    expect(limits).to.deep.equal({ serviceInstanceLimitsUpdate: true });
    expect(emulator.limitsOf(serviceId)).to.deep.equal({ vCPUs: 2, memoryGB: 1.5 });

    const deploymentId = await deploy(client, serviceId);
    expect(deploymentId).to.be.a('string');
    const { seen, last } = await pollDeployment(client, deploymentId);
    expect(seen[seen.length - 1]).to.equal('SUCCESS');
    expect(seen).to.include('BUILDING');
    expect(emulator.deployment(deploymentId)?.history.map((h) => h.status)).to.deep.equal(['QUEUED', 'BUILDING', 'DEPLOYING', 'SUCCESS']);
    expect(last).to.include({ id: deploymentId, deploymentStopped: false, url: null, staticUrl: null });
    expect(emulator.deployment(deploymentId)?.variables).to.deep.equal({ PORT: '8080', API_KEY: 'x', NODE_ENV: 'production' });

    const { serviceDomainCreate } = await client.request<{ serviceDomainCreate: Record<string, unknown> }>(op('ServiceDomainCreate'), {
      serviceId, environmentId: project.environmentId, targetPort: 8080,
    });
    expect(serviceDomainCreate).to.have.all.keys('id', 'domain', 'suffix', 'targetPort', 'syncStatus');
    expect(serviceDomainCreate).to.include({ targetPort: 8080, syncStatus: 'ACTIVE', suffix: null });
    expect(serviceDomainCreate['domain']).to.match(/^127\.0\.0\.1:\d+$/);
    expect(emulator.domainsOf(serviceId).map((d) => d.domain)).to.deep.equal([serviceDomainCreate['domain']]);
    // One generated domain per service instance.
    const second = await expectClientError(client.request(op('ServiceDomainCreate'), { serviceId, environmentId: project.environmentId }));
    expect(second.response.errors?.[0]?.message).to.equal('Service already has a service domain');

    const listed = await client.request<{
      project: { id: string; name: string; services: { edges: Array<{ node: { id: string; name: string; createdAt: string } }>; pageInfo: { hasNextPage: boolean; endCursor: string | null } }; environments: { edges: Array<{ node: { id: string; name: string } }> } };
    }>(op('ProjectServicesByName'), { projectId: project.projectId });
    expect(listed.project.name).to.equal('clawdbot');
    expect(listed.project.services.edges.filter((e) => e.node.name === 'cust-acme').map((e) => e.node.id)).to.deep.equal([serviceId]);
    expect(listed.project.services.pageInfo.hasNextPage).to.equal(false);
    expect(listed.project.environments.edges.map((e) => e.node)).to.deep.equal([{ id: project.environmentId, name: 'production' }]);

    const state = await client.request<{
      serviceInstance: { id: string; serviceName: string; source: { repo: string | null; image: string | null }; latestDeployment: { id: string; status: string }; activeDeployments: Array<{ id: string; status: string; deploymentStopped: boolean }> };
      domains: { serviceDomains: Array<{ id: string; domain: string; targetPort: number }> };
      serviceInstanceLimits: unknown;
    }>(op('ServiceInstanceState'), { serviceId, environmentId: project.environmentId, projectId: project.projectId });
    expect(state.serviceInstance.serviceName).to.equal('cust-acme');
    expect(state.serviceInstance.source).to.deep.equal({ repo: 'clawdbot/runtime', image: null });
    expect(state.serviceInstance.latestDeployment).to.include({ id: deploymentId, status: 'SUCCESS' });
    expect(state.serviceInstance.activeDeployments).to.deep.equal([{ id: deploymentId, status: 'SUCCESS', deploymentStopped: false }]);
    expect(state.domains.serviceDomains.map((d) => d.domain)).to.deep.equal([serviceDomainCreate['domain']]);
    expect(state.serviceInstanceLimits).to.deep.equal({ vCPUs: 2, memoryGB: 1.5 });

    const after = await client.request<DeploymentResult>(op('DeploymentStatus'), { id: deploymentId });
    expect(after.deployment.staticUrl).to.equal(serviceDomainCreate['domain']);

    expect(await client.request(op('DeploymentRemove'), { id: deploymentId })).to.deep.equal({ deploymentRemove: true });
    expect(emulator.deployment(deploymentId)).to.include({ status: 'REMOVED', deploymentStopped: true });
    const removed = await client.request<{ serviceInstance: { activeDeployments: unknown[] } }>(op('ServiceInstanceState'), {
      serviceId, environmentId: project.environmentId, projectId: project.projectId,
    });
    expect(removed.serviceInstance.activeDeployments).to.deep.equal([]);

    expect(await client.request(op('ServiceDelete'), { id: serviceId, environmentId: project.environmentId })).to.deep.equal({ serviceDelete: true });
    expect(emulator.services()).to.deep.equal([]);
    expect(emulator.domainsOf(serviceId)).to.deep.equal([]);
    const empty = await client.request<{ project: { services: { edges: unknown[] } } }>(op('ProjectServicesByName'), { projectId: project.projectId });
    expect(empty.project.services.edges).to.deep.equal([]);
    const gone = await expectClientError(client.request(op('DeploymentStatus'), { id: 'no-such-deployment' }));
    expect(gone.response.status).to.equal(200);
    expect(gone.response.errors?.[0]).to.include({ message: 'Deployment not found' });
    expect(gone.response.errors?.[0]?.path).to.deep.equal(['deployment']);
    expect(gone.response.data).to.equal(null);

    const counts = emulator.counts();
    expect(counts['serviceCreate']).to.equal(1);
    expect(counts['serviceInstanceDeployV2']).to.equal(1);
    expect(counts['deployment']).to.be.at.least(3);
    expect(emulator.calls.find((c) => c.fieldNames.includes('serviceCreate'))).to.include({ operationName: 'ServiceCreateFromRepo', status: 200, auth: 'account' });
    expect(emulator.calls.find((c) => c.operationName === 'ServiceInstanceState')?.fieldNames).to.deep.equal(['serviceInstance', 'domains', 'serviceInstanceLimits']);
  });

  it('rejects a document that does not validate with HTTP 400 and runs nothing', async () => {
    emulator = await startRailwayEmulator();
    project = emulator.createProject();
    const client = account();
    const e = await expectClientError(client.request(
      `query Deployments($projectId: String!) {
        deployments(input: { projectId: $projectId, status: { successfulOnly: true } }) { edges { node { id status } } }
      }`,
      { projectId: project.projectId },
    ));
    expect(e.response.status).to.equal(400);
    expect(e.response.errors?.[0]?.message).to.match(/Field "successfulOnly" is not defined by type "DeploymentStatusInput"/);
    expect(e.response.errors?.[0]?.extensions).to.deep.equal({ code: 'GRAPHQL_VALIDATION_FAILED' });

    const parseError = await expectClientError(client.request('query { project(id: "x") { id '));
    expect(parseError.response.status).to.equal(400);
    const unknownField = await expectClientError(client.request(
      'mutation($input: ServiceCreateInput!) { serviceCreate(input: $input) { id nickname } }',
      { input: { projectId: project.projectId } },
    ));
    expect(unknownField.response.status).to.equal(400);
    expect(emulator.services()).to.deep.equal([]);
    // Variables that do not coerce never run either.
    const badVars = await expectClientError(client.request(op('ServiceCreateFromRepo'), { input: { name: 'no-project-id' } }));
    expect(badVars.response.status).to.equal(400);
    expect(emulator.services()).to.deep.equal([]);
    // Two operations without operationName.
    const twoOps = await expectClientError(client.request(`${op('DeploymentStop')}\n${op('DeploymentRemove')}`, { id: 'x' }));
    expect(twoOps.response.status).to.equal(400);
    expect(emulator.calls.map((c) => c.status)).to.deep.equal([400, 400, 400, 400, 400]);
    expect(emulator.calls[0]?.fieldNames).to.deep.equal(['deployments']);
  });

  it('checks the auth headers like Railway and scopes project tokens', async () => {
    emulator = await startRailwayEmulator();
    project = emulator.createProject();
    const other = emulator.createProject();
    const anonymous = new GraphQLClient(emulator.url);
    const query = 'query($id: String!) { project(id: $id) { id name } }';

    for (const client of [
      anonymous,
      new GraphQLClient(emulator.url, { headers: { Authorization: 'Bearer wrong' } }),
      new GraphQLClient(emulator.url, { headers: { Authorization: `Bearer ${project.token}` } }), // a project token is not a Bearer token
      projectClient('not-a-token'),
    ]) {
      const e = await expectClientError(client.request(query, { id: project.projectId }));
      expect(e.response.status).to.equal(200);
      expect(e.response.errors?.map((x) => x.message)).to.deep.equal(['Not Authorized']);
      expect(e.response.data).to.equal(null);
    }
    expect(emulator.calls.map((c) => c.auth)).to.deep.equal(['none', 'invalid', 'invalid', 'invalid']);

    const scoped = projectClient();
    expect(await scoped.request('query { projectToken { projectId environmentId } }'))
      .to.deep.equal({ projectToken: { projectId: project.projectId, environmentId: project.environmentId } });
    expect(await scoped.request(query, { id: project.projectId })).to.deep.equal({ project: { id: project.projectId, name: project.name } });
    const foreign = await expectClientError(scoped.request(query, { id: other.projectId }));
    expect(foreign.response.errors?.[0]?.message).to.equal('Not Authorized');
    const foreignCreate = await expectClientError(scoped.request(op('ServiceCreateFromRepo'), { input: { projectId: other.projectId, name: 'x' } }));
    expect(foreignCreate.response.errors?.[0]?.message).to.equal('Not Authorized');
    expect(emulator.services()).to.deep.equal([]);
    const serviceId = await createService(scoped, 'scoped');
    expect(emulator.services().map((s) => s.id)).to.deep.equal([serviceId]);

    const notProject = await expectClientError(account().request('query { projectToken { projectId } }'));
    expect(notProject.response.errors?.[0]?.message).to.equal('Project Token not found');
    const unknownProject = await expectClientError(account().request(query, { id: 'no-such-project' }));
    expect(unknownProject.response.errors?.[0]?.message).to.equal('Not Authorized');
  });

  it('coerces the JSON scalars from variables and literals and rejects non-string values', async () => {
    emulator = await startRailwayEmulator();
    project = emulator.createProject();
    const client = account();
    const serviceId = await createService(client, 'json');
    await client.request(
      `mutation($projectId: String!, $environmentId: String!, $serviceId: String!, $v: String!) {
        variableCollectionUpsert(input: { projectId: $projectId, environmentId: $environmentId, serviceId: $serviceId,
          variables: { LITERAL: "yes", FROM_VAR: $v }, skipDeploys: true })
      }`,
      { projectId: project.projectId, environmentId: project.environmentId, serviceId, v: 'var' },
    );
    expect(emulator.variablesOf(serviceId)).to.deep.equal({ LITERAL: 'yes', FROM_VAR: 'var' });
    const vars = await client.request<{ variables: Record<string, string> }>(
      'query($p: String!, $e: String!, $s: String) { variables(projectId: $p, environmentId: $e, serviceId: $s) }',
      { p: project.projectId, e: project.environmentId, s: serviceId },
    );
    expect(vars.variables).to.deep.equal({ LITERAL: 'yes', FROM_VAR: 'var' });

    const literal = await expectClientError(client.request(
      `mutation { variableCollectionUpsert(input: { projectId: "${project.projectId}", environmentId: "${project.environmentId}", variables: { N: 1 } }) }`,
    ));
    expect(literal.response.status).to.equal(400);
    expect(literal.response.errors?.[0]?.message).to.match(/values must be strings/);
    const variable = await expectClientError(upsert(client, serviceId, { N: 1 } as unknown as Record<string, string>, { replace: true }));
    expect(variable.response.status).to.equal(400);
    expect(emulator.variablesOf(serviceId)).to.deep.equal({ LITERAL: 'yes', FROM_VAR: 'var' });

    // replace deletes the variables not in the set.
    await upsert(client, serviceId, { ONLY: '1' }, { replace: true, skipDeploys: true });
    expect(emulator.variablesOf(serviceId)).to.deep.equal({ ONLY: '1' });
  });

  it('answers Railway-style errors: long names, unknown ids, limits above the plan', async () => {
    emulator = await startRailwayEmulator();
    project = emulator.createProject();
    const client = account();
    const long = await expectClientError(createService(client, 'x'.repeat(33)));
    expect(long.response.status).to.equal(200);
    expect(long.response.errors?.[0]?.message).to.equal('Service name must be 32 characters or less');
    expect(long.response.data).to.equal(null);
    await createService(client, 'y'.repeat(32));

    const unknownService = await expectClientError(deploy(client, 'no-such-service'));
    expect(unknownService.response.errors?.[0]?.message).to.equal('Service not found');
    const unknownRemove = await expectClientError(client.request(op('DeploymentRemove'), { id: 'nope' }));
    expect(unknownRemove.response.errors?.[0]?.message).to.equal('Deployment not found');
    const serviceId = await createService(client, 'limits');
    const tooBig = await expectClientError(client.request(op('ServiceLimitsUpdate'), { serviceId, environmentId: project.environmentId, vCPUs: 64 }));
    expect(tooBig.response.errors?.[0]?.message).to.match(/vCPUs must be less than or equal to 32/);
    const defaults = await client.request<{ serviceInstanceLimits: unknown }>(
      'query($s: String!, $e: String!) { serviceInstanceLimits(serviceId: $s, environmentId: $e) }',
      { s: serviceId, e: project.environmentId },
    );
    expect(defaults.serviceInstanceLimits).to.deep.equal({ vCPUs: 32, memoryGB: 32 });
    const partial = await client.request<{ serviceInstance: { id: string } | null }>(
      'query($s: String!, $e: String!) { serviceInstance(serviceId: $s, environmentId: $e) { id } }',
      { s: serviceId, e: project.environmentId },
    );
    expect(partial.serviceInstance?.id).to.be.a('string');
  });

  it('redeploys on a variable change without skipDeploys, and pages services', async () => {
    emulator = await startRailwayEmulator({ deployMs: 60 });
    project = emulator.createProject();
    const client = account();
    const serviceId = await createService(client, 'redeploy', { A: '1' });
    await upsert(client, serviceId, { B: '2' }); // never deployed: nothing to redeploy
    expect(emulator.deploymentsOf(serviceId)).to.have.length(0);
    const first = await deploy(client, serviceId);
    await emulator.waitForDeployment(first);
    await upsert(client, serviceId, { C: '3' });
    const all = emulator.deploymentsOf(serviceId);
    expect(all).to.have.length(2);
    expect(all[1]?.variables).to.deep.equal({ A: '1', B: '2', C: '3' });
    const second = await emulator.waitForDeployment(all[1]!.id);
    expect(second.status).to.equal('SUCCESS');
    expect(emulator.deployment(first)?.status).to.equal('REMOVED');
    await upsert(client, serviceId, { D: '4' }, { skipDeploys: true });
    expect(emulator.deploymentsOf(serviceId)).to.have.length(2);

    expect(await client.request(op('ServiceRedeploy'), { serviceId, environmentId: project.environmentId })).to.deep.equal({ serviceInstanceRedeploy: true });
    expect((await emulator.waitForDeployment(emulator.deploymentsOf(serviceId)[2]!.id)).commitSha).to.equal(null);

    // A deployment superseded while in progress is removed.
    const a = await deploy(client, serviceId);
    const b = await deploy(client, serviceId);
    expect(emulator.deployment(a)?.status).to.equal('REMOVED');
    expect((await emulator.waitForDeployment(b)).status).to.equal('SUCCESS');

    for (let i = 0; i < 4; i += 1) await createService(client, `page-${i}`);
    const q = 'query($id: String!, $after: String) { project(id: $id) { services(first: 2, after: $after) { edges { node { name } } pageInfo { hasNextPage endCursor } } } }';
    const names: string[] = [];
    let after: string | null = null;
    for (;;) {
      const page: { project: { services: { edges: Array<{ node: { name: string } }>; pageInfo: { hasNextPage: boolean; endCursor: string | null } } } } =
        await client.request(q, { id: project.projectId, after });
      names.push(...page.project.services.edges.map((e) => e.node.name));
      if (!page.project.services.pageInfo.hasNextPage) break;
      after = page.project.services.pageInfo.endCursor;
    }
    expect(names).to.deep.equal(['redeploy', 'page-0', 'page-1', 'page-2', 'page-3']);
  });

  it('injects 429 with rate-limit headers, 5xx, slow answers and lost responses', async () => {
    emulator = await startRailwayEmulator();
    project = emulator.createProject();
    const client = account();

    emulator.failNext(1, 429);
    const limited = await expectClientError(createService(client, 'rl'));
    expect(limited.response.status).to.equal(429);
    const headers = limited.response.headers as Headers;
    expect(headers.get('retry-after')).to.equal('1');
    expect(headers.get('x-ratelimit-remaining')).to.equal('0');
    expect(Number(headers.get('x-ratelimit-limit'))).to.be.greaterThan(0);
    expect(Number(headers.get('x-ratelimit-reset'))).to.be.closeTo(Date.now() / 1000, 5);
    expect(emulator.services()).to.deep.equal([]);

    emulator.failNext(1, 429, { 'Retry-After': '7', 'X-RateLimit-Limit': '1000', 'X-RateLimit-Reset': '1900000000' });
    const custom = await expectClientError(createService(client, 'rl'));
    expect((custom.response.headers as Headers).get('retry-after')).to.equal('7');
    expect((custom.response.headers as Headers).get('x-ratelimit-reset')).to.equal('1900000000');

    emulator.failNext(1, 503);
    const unavailable = await expectClientError(createService(client, 'rl'));
    expect(unavailable.response.status).to.equal(503);
    emulator.failNext(1, 500);
    expect((await expectClientError(createService(client, 'rl'))).response.status).to.equal(500);

    // Only requests selecting the field consume a targeted fault.
    emulator.failNext(1, 502, {}, { field: 'serviceCreate' });
    await client.request(op('ProjectServicesByName'), { projectId: project.projectId });
    expect((await expectClientError(createService(client, 'rl'))).response.status).to.equal(502);

    emulator.slowNext(1, 150);
    const t0 = Date.now();
    await client.request(op('ProjectServicesByName'), { projectId: project.projectId });
    expect(Date.now() - t0).to.be.at.least(140);

    // The mutation commits, then the response is lost.
    emulator.failNext(1, 504, {}, { afterExecute: true });
    expect((await expectClientError(createService(client, 'committed'))).response.status).to.equal(504);
    expect(emulator.services().map((s) => s.name)).to.deep.equal(['committed']);

    expect(await createService(client, 'rl')).to.be.a('string');
    expect(emulator.calls.map((c) => c.injected)).to.deep.equal(['fail', 'fail', 'fail', 'fail', null, 'fail', null, 'fail', null]);
    expect(emulator.counts((c) => c.status === 200)).to.deep.equal({ project: 2, serviceCreate: 1 });
  });

  it('rate-limits at ratePerSecond with 429 and the rate-limit headers', async () => {
    emulator = await startRailwayEmulator({ ratePerSecond: 3 });
    project = emulator.createProject();
    const client = account();
    const q = op('ProjectServicesByName');
    const ok = await client.rawRequest(q, { projectId: project.projectId });
    expect(ok.headers.get('x-ratelimit-limit')).to.equal('3');
    expect(ok.headers.get('x-ratelimit-remaining')).to.equal('2');
    await client.request(q, { projectId: project.projectId });
    await client.request(q, { projectId: project.projectId });
    const e = await expectClientError(client.request(q, { projectId: project.projectId }));
    expect(e.response.status).to.equal(429);
    const h = e.response.headers as Headers;
    expect(h.get('retry-after')).to.equal('1');
    expect(h.get('x-ratelimit-limit')).to.equal('3');
    expect(h.get('x-ratelimit-remaining')).to.equal('0');
    expect(Number(h.get('x-ratelimit-reset'))).to.be.within(Math.floor(Date.now() / 1000), Math.ceil(Date.now() / 1000) + 1);
    expect(emulator.calls.map((c) => c.injected)).to.deep.equal([null, null, null, 'rate-limit']);
  });

  it('ends deployments as told by nextDeploymentEnds', async () => {
    emulator = await startRailwayEmulator({ deployMs: 60 });
    project = emulator.createProject();
    const client = account();
    const serviceId = await createService(client, 'faults');

    emulator.nextDeploymentEnds('FAILED');
    const failed = await pollDeployment(client, await deploy(client, serviceId));
    expect(failed.last.status).to.equal('FAILED');
    expect(failed.seen).to.include('BUILDING');

    emulator.nextDeploymentEnds('CRASHED');
    const crashed = await pollDeployment(client, await deploy(client, serviceId));
    expect(crashed.last).to.include({ status: 'CRASHED', deploymentStopped: true });

    emulator.nextDeploymentEnds('SKIPPED');
    expect((await pollDeployment(client, await deploy(client, serviceId))).last.status).to.equal('SKIPPED');

    emulator.nextDeploymentEnds('NEEDS_APPROVAL');
    const waiting = await deploy(client, serviceId);
    expect((await pollDeployment(client, waiting, ['NEEDS_APPROVAL'])).last.status).to.equal('NEEDS_APPROVAL');
    await client.request('mutation($id: String!) { deploymentApprove(id: $id) }', { id: waiting });
    expect((await pollDeployment(client, waiting)).last.status).to.equal('SUCCESS');
  });

  it('parks a held call until released, lets others pass, and runs it even when its client has gone', async () => {
    emulator = await startRailwayEmulator({ deployMs: 30 });
    project = emulator.createProject();
    const client = account();
    const serviceId = await createService(client, 'held');

    const held = emulator.holdNext('serviceInstanceDeployV2');
    const answer = deploy(client, serviceId);
    const call = await held.arrived;
    expect(call.fieldNames).to.deep.equal(['serviceInstanceDeployV2']);
    await client.request(op('ProjectServicesByName'), { projectId: project.projectId }); // not held
    expect(emulator.deploymentsOf(serviceId)).to.deep.equal([]);
    held.release();
    const deploymentId = await answer;
    expect(emulator.deploymentsOf(serviceId).map((d) => d.id)).to.deep.equal([deploymentId]);

    // The caller gives up while its call is parked; released, the call still runs, as a request Railway received would.
    const gone = emulator.holdNext('serviceInstanceDeployV2');
    const abort = new AbortController();
    const abandoned = client.request({ document: op('ServiceDeploy'), variables: { serviceId, environmentId: project.environmentId }, signal: abort.signal });
    await gone.arrived;
    abort.abort();
    await abandoned.then(() => expect.fail('the request was aborted'), (e: Error) => expect(e.name).to.equal('AbortError'));
    gone.release();
    await waitUntil(async () => emulator.deploymentsOf(serviceId).length === 2);
    expect(emulator.counts()).to.include({ serviceInstanceDeployV2: 2 });
  });

  it('deploys on serviceCreate only with deployOnCreate', async () => {
    emulator = await startRailwayEmulator({ deployMs: 30, deployOnCreate: true });
    project = emulator.createProject();
    const serviceId = await createService(account(), 'auto');
    const [first] = emulator.deploymentsOf(serviceId);
    expect((await emulator.waitForDeployment(first!.id)).status).to.equal('SUCCESS');
    const bare = await account().request<{ serviceCreate: { id: string } }>(op('ServiceCreateFromRepo'), { input: { projectId: project.projectId, name: 'no-source' } });
    expect(emulator.deploymentsOf(bare.serviceCreate.id)).to.deep.equal([]);
  });

  describe('with the real runtime', () => {
    const SERVER = "require('http').createServer((q,s)=>s.end(JSON.stringify({ok:true,env:process.env.MARKER,port:process.env.PORT,host:process.env.HOST,keys:Object.keys(process.env).sort()}))).listen(process.env.PORT,process.env.HOST)";

    it('starts it with the service variables on SUCCESS, reaches it through the domain, replaces and stops it', async () => {
      emulator = await startRailwayEmulator({ deployMs: 90, runtime: { command: process.execPath, args: ['-e', SERVER] } });
      project = emulator.createProject();
      const client = projectClient();
      const serviceId = await createService(client, 'runtime', { PORT: '8080' });
      await upsert(client, serviceId, { MARKER: 'first' }, { skipDeploys: true });
      const { serviceDomainCreate } = await client.request<{ serviceDomainCreate: { domain: string } }>(op('ServiceDomainCreate'), {
        serviceId, environmentId: project.environmentId,
      });
      const base = `http://${serviceDomainCreate.domain}/`;
      const before = await fetch(base);
      expect(before.status).to.equal(404);
      expect(before.headers.get('x-railway-fallback')).to.equal('true');

      const first = await deploy(client, serviceId);
      expect((await pollDeployment(client, first)).last.status).to.equal('SUCCESS');
      const body = await (await fetch(base)).json() as { ok: boolean; env: string; port: string; host: string; keys: string[] };
      expect(body).to.include({ ok: true, env: 'first', host: '127.0.0.1' });
      expect(body.port).to.not.equal('8080');
      expect(body.keys).to.deep.equal(['HOST', 'MARKER', 'PORT']);
      const firstPid = emulator.deployment(first)?.pid;
      expect(emulator.deployment(first)?.running).to.equal(true);

      // A variable change redeploys (no skipDeploys); the domain keeps its address and reaches the new process.
      await upsert(client, serviceId, { MARKER: 'second' });
      const second = emulator.deploymentsOf(serviceId)[1]!.id;
      expect((await pollDeployment(client, second)).last.status).to.equal('SUCCESS');
      expect(await (await fetch(base)).json()).to.include({ env: 'second' });
      expect(emulator.deployment(first)?.status).to.equal('REMOVED');
      // The swap stops the old process after the new one is live: it exits when the machine gets round to it.
      await waitUntil(async () => emulator.deployment(first)?.running === false);
      expect(emulator.deployment(second)?.pid).to.not.equal(firstPid);

      // Stop: the process ends, the deployment keeps its status but is no longer active.
      expect(await client.request(op('DeploymentStop'), { id: second })).to.deep.equal({ deploymentStop: true });
      expect(emulator.deployment(second)).to.include({ status: 'SUCCESS', deploymentStopped: true, running: false });
      expect((await fetch(base)).status).to.equal(404);
      const stopped = await client.request<{ serviceInstance: { activeDeployments: unknown[] } }>(op('ServiceInstanceState'), {
        serviceId, environmentId: project.environmentId, projectId: project.projectId,
      });
      expect(stopped.serviceInstance.activeDeployments).to.deep.equal([]);

      await client.request(op('DeploymentRemove'), { id: second });
      expect(emulator.deployment(second)).to.include({ status: 'REMOVED', running: false });
      expect((await fetch(base)).status).to.equal(404);
      expect(emulator.logsOf(second).join('\n')).to.match(/status SUCCESS/);
    });

    it('runs what the source builds: a repo by the instance’s Dockerfile path, an image by its reference', async () => {
      const spec = { command: process.execPath, args: ['-e', SERVER] };
      emulator = await startRailwayEmulator({
        deployMs: 60,
        healthcheckTimeoutMs: 100,
        builds: {
          repos: { 'clawdbot/runtime': { Dockerfile: { unhealthy: 'a control plane' }, 'runtime/Dockerfile': spec } },
          images: { 'ghcr.io/clawdbot/runtime:1.0.0': spec },
        },
      });
      project = emulator.createProject();
      const client = account();
      const update = (serviceId: string, input: Record<string, unknown>) =>
        client.request(
          'mutation Update($serviceId: String!, $environmentId: String, $input: ServiceInstanceUpdateInput!) { serviceInstanceUpdate(serviceId: $serviceId, environmentId: $environmentId, input: $input) }',
          { serviceId, environmentId: project.environmentId, input },
        );
      const deployed = async (serviceId: string) => emulator.waitForDeployment(await deploy(client, serviceId));

      // Railway's default, the root Dockerfile: it runs, but nothing in it answers (no healthcheck to fail it).
      const root = await createService(client, 'root');
      const { serviceDomainCreate } = await client.request<{ serviceDomainCreate: { domain: string } }>(op('ServiceDomainCreate'), {
        serviceId: root, environmentId: project.environmentId,
      });
      expect(await deployed(root)).to.include({ status: 'SUCCESS', runs: 'unhealthy: a control plane', running: false });
      expect((await fetch(`http://${serviceDomainCreate.domain}/`)).status).to.equal(502);
      // With a healthcheck path Railway fails it.
      await update(root, { healthcheckPath: '/health' });
      const unhealthy = await deployed(root);
      expect(unhealthy.status).to.equal('FAILED');
      expect(emulator.logsOf(unhealthy.id).join('\n')).to.include('healthcheck failed: /health never answered 200');

      // runtime/Dockerfile runs the runtime; a path the repository does not have fails the build.
      const built = await createService(client, 'built');
      await update(built, { dockerfilePath: 'runtime/Dockerfile', startCommand: 'ignored', healthcheckPath: '/' });
      expect(emulator.settingsOf(built)).to.deep.equal({ dockerfilePath: 'runtime/Dockerfile', startCommand: 'ignored', healthcheckPath: '/', rootDirectory: null });
      const state = await client.request<{ serviceInstance: { dockerfilePath: string; healthcheckPath: string } }>(
        'query($serviceId: String!, $environmentId: String!) { serviceInstance(serviceId: $serviceId, environmentId: $environmentId) { dockerfilePath healthcheckPath } }',
        { serviceId: built, environmentId: project.environmentId },
      );
      expect(state.serviceInstance).to.deep.equal({ dockerfilePath: 'runtime/Dockerfile', healthcheckPath: '/' });
      expect(await deployed(built)).to.include({ status: 'SUCCESS', runs: `runtime: ${process.execPath} -e ${SERVER}`, running: true });
      await update(built, { dockerfilePath: 'nope/Dockerfile' });
      const missing = await deployed(built);
      expect(missing).to.include({ status: 'FAILED', runs: 'build failed: Dockerfile `nope/Dockerfile` does not exist in clawdbot/runtime' });

      // An image runs what the image holds; switching a service's source to it takes effect at the next deployment.
      await update(built, { source: { image: 'ghcr.io/clawdbot/runtime:1.0.0' } });
      expect(emulator.services().find((x) => x.id === built)!.source).to.deep.equal({ repo: null, image: 'ghcr.io/clawdbot/runtime:1.0.0' });
      expect(await deployed(built)).to.include({ status: 'SUCCESS', running: true });
      expect(emulator.operationCounts()).to.include({ Update: 4, ServiceDeploy: 5 });
    });

    it('ends FAILED when the process exits while deploying', async () => {
      emulator = await startRailwayEmulator({ deployMs: 60, runtime: { command: process.execPath, args: ['-e', 'process.exit(3)'] } });
      project = emulator.createProject();
      const client = account();
      const serviceId = await createService(client, 'exits');
      const id = await deploy(client, serviceId);
      const { seen, last } = await pollDeployment(client, id);
      expect(last.status).to.equal('FAILED');
      expect(seen).to.not.include('SUCCESS');
      expect(emulator.logsOf(id).join('\n')).to.match(/exited \(code 3/);
    });

    it('marks a process that dies after SUCCESS as CRASHED, and close() kills what runs', async () => {
      emulator = await startRailwayEmulator({ deployMs: 60, runtime: { command: process.execPath, args: ['-e', SERVER] } });
      project = emulator.createProject();
      const client = account();
      const a = await createService(client, 'crashes');
      const b = await createService(client, 'still-running');
      const idA = await deploy(client, a);
      const idB = await deploy(client, b);
      await emulator.waitForDeployment(idA);
      const runningB = await emulator.waitForDeployment(idB);
      expect(runningB.status).to.equal('SUCCESS');
      await emulator.crash(a);
      expect((await pollDeployment(client, idA)).last).to.include({ status: 'CRASHED', deploymentStopped: true });
      const pid = runningB.pid as number;
      await emulator.close();
      expect(() => process.kill(pid, 0)).to.throw();
    });
  });
});
