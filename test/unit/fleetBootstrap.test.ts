/**
 * The fleet's current generation across control-plane starts (Postgres): a start with the same configuration keeps
 * what a completed rollout made current; a start with a changed configuration (a new Anthropic key) takes it and
 * keeps what rollouts had changed on top (a model, a version).
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { PgFleetGenerations } from '../../src/db/fleetGenerations.ts';
import { plansDigest, withOverrides, type FleetValues } from '../../src/fleet/settings.ts';
import { controlDb } from '../support/controlDb.ts';

function configValues(apiKey: string): FleetValues {
  return {
    runtimeVersion: 'builtin',
    settings: { model: 'claude-sonnet-4-5', anthropicBaseUrl: null, promptTokenBudget: null, maxOutputTokens: null, plansDigest: plansDigest(), connectionUrls: {} },
    secrets: { ANTHROPIC_API_KEY: apiKey },
  };
}

describe('fleet settings across starts (Postgres)', function () {
  this.timeout(30_000);
  let control: Awaited<ReturnType<typeof controlDb>>;
  let fleet: PgFleetGenerations;

  before(async () => {
    control = await controlDb('fleet_boot');
    fleet = new PgFleetGenerations(control.db, randomBytes(32));
  });
  after(async () => control?.drop());

  it('keeps a completed rollout current over a restart, and carries it onto a changed configuration', async () => {
    const first = await fleet.bootstrap(configValues('sk-old'));
    expect(first.current.settings.model).to.equal('claude-sonnet-4-5');

    // A rollout of a new model and version completes.
    const rolled = await fleet.ensure(withOverrides(first.current, { version: '0.2.0', settings: { model: 'claude-rolled' } }), 'rollout');
    expect(await fleet.setCurrent(rolled.id, first.current.id)).to.equal(true);

    // The same configuration starts again: the rollout's generation stays current.
    const again = await fleet.bootstrap(configValues('sk-old'));
    expect(again.current.id).to.equal(rolled.id);
    expect(again.replaced).to.equal(undefined);

    // A new key in the configuration: current takes it, with the rollout's model and version kept.
    const changed = await fleet.bootstrap(configValues('sk-new'));
    expect(changed.current.secrets.ANTHROPIC_API_KEY).to.equal('sk-new');
    expect(changed.current.settings.model).to.equal('claude-rolled');
    expect(changed.current.runtimeVersion).to.equal('0.2.0');
    expect(changed.replaced?.id).to.equal(rolled.id);
    expect((await fleet.current())!.id).to.equal(changed.current.id);
  });
});
