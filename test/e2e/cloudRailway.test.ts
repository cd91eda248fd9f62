/**
 * What one provision asks of Railway (emulated), and what the service it makes runs. The Railway requests of a
 * provision do not depend on how many customers there are: none lists the project's services. The emulator runs
 * what Railway would build from the service's source (the harness reads this repository's Dockerfiles): built from
 * the repository with Railway's defaults a service would run the root Dockerfile, the control plane; the provider
 * builds runtime/Dockerfile, and with CLAWDBOT_IMAGE the service runs the prebuilt runtime image.
 */
import { expect } from 'chai';
import { GraphQLClient } from 'graphql-request';
import { RAILWAY_DOCUMENTS } from '../../src/providers/compute/railwayDocuments.ts';
import { RUNTIME_IMAGE, RUNTIME_REPO, startHarness, type Harness, type InstanceView } from '../support/harness.ts';

/** Railway requests one provision may make, deployment status polls included (docs/cloud-providers.md). */
const RAILWAY_BUDGET = 10;
/** The requests of a provision besides the deployment status polls, by operation. */
const PROVISION_REQUESTS = { ServiceCreate: 1, ServiceDomainCreate: 1, Configure: 1, Deploy: 1 };

async function provision(h: Harness, email: string): Promise<{ view: InstanceView; key: string; serviceId: string }> {
  const { customerId, event } = h.checkout({ email, plan: 'pro' });
  expect((await h.deliver(event)).status).to.equal(200);
  const view = await h.waitForStatus(customerId, ['active', 'failed'], 60_000);
  expect(view.failure, JSON.stringify(view.failure)).to.equal(null);
  const mail = await h.smtp.waitFor((m) => m.to.includes(email));
  const { rows } = await h.db.query<{ service_id: string }>('SELECT service_id FROM instances WHERE id = $1', [view.instanceId]);
  return { view, key: /claw_[0-9A-Za-z]{43}/.exec(mail.text)![0], serviceId: rows[0]!.service_id };
}

/** The deployment that serves the service now. */
function servingDeployment(h: Harness, serviceId: string) {
  return h.railway!.deploymentsOf(serviceId).filter((d) => d.status === 'SUCCESS').at(-1)!;
}

/** The requests of what happened since the last reset: the status polls apart, the rest by operation. */
function requests(h: Harness): { polls: number; others: Record<string, number>; total: number } {
  const { DeploymentStatus: polls = 0, ...others } = h.railway!.operationCounts();
  return { polls, others, total: h.railway!.calls.length };
}

describe('the Railway requests of a provision, and what its service runs (emulated)', function () {
  this.timeout(120_000);
  let h: Harness;
  let client: GraphQLClient;

  before(async () => {
    h = await startHarness({}, { cloud: {} });
    client = new GraphQLClient(h.railway!.url, { headers: { 'Project-Access-Token': h.config.railway!.auth.token } });
  });
  after(async () => h?.close());

  it('makes the same requests for the first customer as for one among 250 others: none lists the project', async () => {
    h.railway!.resetCalls();
    await provision(h, 'first@example.com');
    const first = requests(h);

    // 250 other customers' services: more than two pages of the project's services.
    const { projectId, environmentId } = h.config.railway!;
    for (let i = 0; i < 250; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, k) =>
        client.request(RAILWAY_DOCUMENTS.serviceCreate, { input: { projectId, environmentId, name: `claw-other-${i + k}` } })));
    }
    h.railway!.resetCalls();
    await provision(h, 'crowded@example.com');
    const crowded = requests(h);

    console.log(`      Railway requests of a provision: ${first.total} alone, ${crowded.total} among 250 services (${first.polls} and ${crowded.polls} status polls)`);
    expect(first.others).to.deep.equal(PROVISION_REQUESTS);
    expect(crowded.others).to.deep.equal(first.others);
    // Status polls follow the deployment's duration, not the number of customers.
    for (const { polls, total } of [first, crowded]) {
      expect(polls).to.be.at.least(1);
      expect(total).to.be.at.most(RAILWAY_BUDGET);
    }
  });

  it('runs the runtime from runtime/Dockerfile; with Railway’s defaults the repository would run the control plane', async () => {
    const { view, key, serviceId } = await provision(h, 'built@example.com');
    expect(h.railway!.services().find((s) => s.id === serviceId)!.source).to.deep.equal({ repo: RUNTIME_REPO, image: null });
    expect(h.railway!.settingsOf(serviceId)).to.deep.include({ dockerfilePath: 'runtime/Dockerfile', healthcheckPath: '/health' });
    expect(servingDeployment(h, serviceId).runs).to.match(/^runtime: .* --import tsx runtime\/src\/main\.ts$/);
    const status = await fetch(`${view.accessUrl}/status`, { headers: { authorization: `Bearer ${key}` } });
    expect(status.status).to.equal(200);

    // The same service as Railway builds it when nothing says which Dockerfile: the root one, the control plane.
    const { serviceCreate } = await client.request<{ serviceCreate: { id: string } }>(RAILWAY_DOCUMENTS.serviceCreate, {
      input: { projectId: h.config.railway!.projectId, environmentId: h.config.railway!.environmentId, name: 'claw-defaults', source: { repo: RUNTIME_REPO } },
    });
    const bare = serviceCreate.id;
    const { serviceDomainCreate } = await client.request<{ serviceDomainCreate: { domain: string } }>(RAILWAY_DOCUMENTS.serviceDomainCreate, {
      serviceId: bare, environmentId: h.config.railway!.environmentId, targetPort: 8080,
    });
    await client.request('mutation Variables($input: VariableCollectionUpsertInput!) { variableCollectionUpsert(input: $input) }', {
      input: { projectId: h.config.railway!.projectId, environmentId: h.config.railway!.environmentId, serviceId: bare, variables: h.railway!.variablesOf(serviceId), skipDeploys: true },
    });
    const { serviceInstanceDeployV2 } = await client.request<{ serviceInstanceDeployV2: string }>(RAILWAY_DOCUMENTS.deploy, {
      serviceId: bare, environmentId: h.config.railway!.environmentId,
    });
    const wrong = await h.railway!.waitForDeployment(serviceInstanceDeployV2);
    expect(wrong.runs).to.equal('unhealthy: Dockerfile: node dist/src/bin/start.js');
    expect(wrong.running).to.equal(false);
    expect((await fetch(`http://${serviceDomainCreate.domain}/health`)).status).to.not.equal(200);
  });
});

describe('a prebuilt runtime image (CLAWDBOT_IMAGE, emulated Railway)', function () {
  this.timeout(90_000);
  let h: Harness;

  before(async () => {
    h = await startHarness({ CLAWDBOT_IMAGE: RUNTIME_IMAGE }, { cloud: {} });
  });
  after(async () => h?.close());

  it('creates the service from the image, which runs the runtime: nothing is built from the repository', async () => {
    h.railway!.resetCalls();
    const { view, key, serviceId } = await provision(h, 'image@example.com');
    expect(requests(h).others).to.deep.equal(PROVISION_REQUESTS);
    expect(h.railway!.services().find((s) => s.id === serviceId)!.source).to.deep.equal({ repo: null, image: RUNTIME_IMAGE });
    expect(h.railway!.settingsOf(serviceId)).to.deep.include({ dockerfilePath: null, healthcheckPath: '/health' });
    expect(servingDeployment(h, serviceId).runs).to.match(/^runtime: .* --import tsx runtime\/src\/main\.ts$/);
    const status = await fetch(`${view.accessUrl}/status`, { headers: { authorization: `Bearer ${key}` } });
    expect(status.status).to.equal(200);
    expect(((await status.json()) as { plan: string }).plan).to.equal('pro');
  });
});
