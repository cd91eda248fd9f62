/** The key handovers gateway and the sealed key sweep, on Postgres: one reveal only, and no key deleted too early. */
import { randomBytes, randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { PgInstances } from '../../src/db/instances.ts';
import { PgKeyHandovers } from '../../src/db/keyHandovers.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../src/instances/secrets.ts';
import { sweepSealedKeys } from '../../src/jobs/keySweep.ts';
import { PLANS } from '../../core/plans.ts';
import { SecretStore } from '../../src/secrets.ts';
import { controlDb } from '../support/controlDb.ts';

describe('key handovers (Postgres)', () => {
  let control: Awaited<ReturnType<typeof controlDb>>;
  let handovers: PgKeyHandovers;
  let secrets: SecretStore;
  let instances: PgInstances;

  before(async () => {
    control = await controlDb('unit_handovers');
    handovers = new PgKeyHandovers(control.db);
    secrets = new SecretStore(control.db, randomBytes(32));
    instances = new PgInstances(control.db);
  });
  after(() => control?.drop());

  /** A new instance holding a sealed key. */
  async function withSealedKey(): Promise<string> {
    const instance = await instances.record(
      { stripeCustomerId: null, subscriptionRef: `comp_${randomUUID()}`, email: 'a@example.com', name: null, priceId: null, plan: PLANS.starter, subscriptionStatus: 'active', comped: true, actor: 'test' },
      { compute: 'local', database: 'local' },
    );
    await secrets.put(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey, 'claw_sealed');
    return instance.id;
  }
  const sealed = (id: string) => secrets.get(instanceOwner(id), INSTANCE_SECRETS.pendingApiKey);

  it('lets exactly one of many concurrent reveals claim the key', async () => {
    const id = await withSealedKey();
    const claims = await Promise.all(Array.from({ length: 8 }, () => handovers.claimReveal(id)));
    expect(claims.filter((c) => c !== null)).to.deep.equal([{ emailed: false }]);
    expect(await handovers.emailed(id)).to.deep.equal({ revealed: true });
    expect(await handovers.state(id)).to.deep.equal({ emailed: true, revealed: true });
  });

  it('sweeps a key once emailed and revealed, or emailed longer ago than the window, and never one not emailed yet', async () => {
    const [revealed, emailedOnly, notEmailed] = await Promise.all([withSealedKey(), withSealedKey(), withSealedKey()]);
    await handovers.claimReveal(revealed);
    await handovers.emailed(revealed);
    await handovers.emailed(emailedOnly);
    await handovers.claimReveal(notEmailed);

    expect(await sweepSealedKeys(handovers, 3_600_000)).to.include(revealed).and.not.include(emailedOnly);
    expect(await sealed(revealed)).to.equal(null);
    expect(await sealed(emailedOnly)).to.equal('claw_sealed'); // within its window

    expect(await sweepSealedKeys(handovers, 0)).to.include(emailedOnly).and.not.include(notEmailed);
    expect(await sealed(emailedOnly)).to.equal(null);
    expect(await sealed(notEmailed)).to.equal('claw_sealed');
  });

  it('forgets what happened to a key when a new one is issued', async () => {
    const id = await withSealedKey();
    await handovers.emailed(id);
    await handovers.forget(id);
    expect(await handovers.state(id)).to.equal(null);
    expect(await handovers.claimReveal(id)).to.deep.equal({ emailed: false });
  });
});
