/**
 * Which fleet generation a service is configured with (fakes): a provision, a plan change or a reactivation takes
 * the current one; the reconciler compares a service with, and corrects it to, the generation its instance was
 * last configured with, so an instance behind the current generation is not drift (a rollout moves it).
 */
import { expect } from 'chai';
import { instanceResources } from '../../../src/instances/resources.ts';
import { inspectFleet, reconcile } from '../../../src/jobs/fleet/reconcile.ts';
import { configureService } from '../../../src/operations/service.ts';
import { currentGeneration } from '../../../src/fleet/generations.ts';
import { valuesFromConfig, withOverrides } from '../../../src/fleet/settings.ts';
import { PLANS } from '../../../core/plans.ts';
import { setLogLevel } from '../../../core/logger.ts';
import type { FleetData } from '../../../src/queues/catalogue.ts';
import { FakeJob, fakeContext, type Fakes } from '../../support/fakes.ts';

describe('fleet generations in service configuration (fakes)', () => {
  let f: Fakes;
  before(() => setLogLevel('warn'));
  after(() => setLogLevel('info'));
  beforeEach(() => {
    f = fakeContext({ ANTHROPIC_API_KEY: 'sk-ant-unit', ANTHROPIC_MODEL: 'claude-old' });
  });

  async function activeInstance() {
    const names = instanceResources('ws-0123456789abcdef');
    const { serviceId } = await f.compute.createService(names.serviceName);
    const instance = f.instances.add({ workspace_id: 'ws-0123456789abcdef', status: 'active', plan: 'pro', compute_provider: 'fake', database_provider: 'fake', service_id: serviceId });
    await f.customerDbs.give(instance.id);
    return { instance, serviceId };
  }

  it('configures a new service with the current generation, its version, and records it on the instance', async () => {
    const { instance, serviceId } = await activeInstance();
    const used = await configureService(f.ctx, instance, serviceId, PLANS.pro);
    const current = await currentGeneration(f.ctx);
    expect(used.id).to.equal(current.id);
    expect(f.compute.services.get(serviceId)!.variables).to.include({
      ANTHROPIC_API_KEY: 'sk-ant-unit',
      ANTHROPIC_MODEL: 'claude-old',
      RUNTIME_VERSION: 'builtin',
      SETTINGS_GENERATION: String(current.id),
      PLAN: 'pro',
    });
    expect(await f.fleet.ofInstance(instance.id)).to.equal(current.id);
  });

  it('leaves an instance behind the current generation alone in the reconciler, and corrects drift to its own generation', async () => {
    const { instance, serviceId } = await activeInstance();
    const first = await configureService(f.ctx, instance, serviceId, PLANS.pro);
    const newer = await f.fleet.ensure(withOverrides(valuesFromConfig(f.config), { settings: { model: 'claude-new' } }), 'rollout');
    await f.fleet.setCurrent(newer.id);
    expect(newer.id).to.not.equal(first.id);

    expect((await inspectFleet(f.ctx)).drift.found).to.deep.equal([]);
    const service = f.compute.services.get(serviceId)!;
    service.variables.PLAN = 'team';
    await reconcile(f.ctx, new FakeJob<FleetData>('reconcile', {}, 'fleet'));
    expect(service.variables).to.include({ PLAN: 'pro', ANTHROPIC_MODEL: 'claude-old', SETTINGS_GENERATION: String(first.id) });
    expect(await f.fleet.ofInstance(instance.id)).to.equal(first.id);

    // A plan change (or any other configuration) takes the current one.
    await configureService(f.ctx, instance, serviceId, PLANS.team);
    expect(service.variables).to.include({ PLAN: 'team', ANTHROPIC_MODEL: 'claude-new', SETTINGS_GENERATION: String(newer.id) });
  });
});
