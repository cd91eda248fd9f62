/**
 * What every compute provider promises the jobs, proved the same way for each (local processes, Railway's emulator,
 * a real Docker engine): a service made once by name, configured, deployed and answering at its access URL with the
 * configuration it was given, redeployed with a new one, listed, stopped and deleted. The runtime is a stand-in that
 * answers every request with the PLAN variable it runs with (CONTRACT_STUB).
 */
import { expect } from 'chai';
import type { ComputeProvider, DeploymentState } from '../../src/providers/types.ts';
import { waitUntil } from '../support/wait.ts';

/** The stand-in runtime: node -e CONTRACT_STUB answers {"plan": $PLAN} on $HOST:$PORT. */
export const CONTRACT_STUB =
  "require('http').createServer((q,s)=>s.end(JSON.stringify({plan:process.env.PLAN}))).listen(Number(process.env.PORT),process.env.HOST)";

const LIMITS = { cpu: 1, memoryMb: 1024, pidsLimit: 256 };

export interface ContractSubject {
  provider: ComputeProvider;
  /** A service name not used before. */
  name: string;
}

async function planAt(url: string): Promise<string | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000), headers: { connection: 'close' } });
    return ((await res.json()) as { plan?: string }).plan;
  } catch {
    return undefined;
  }
}

async function deployed(provider: ComputeProvider, serviceId: string): Promise<string> {
  const { deploymentId } = await provider.deploy(serviceId);
  let last: DeploymentState | undefined;
  await waitUntil(async () => (last = (await provider.deploymentState(serviceId, deploymentId)).state) !== 'in_progress', 30_000);
  expect(last).to.equal('success');
  return deploymentId;
}

export function computeProviderContract(label: string, subject: () => ContractSubject): void {
  describe(`the compute provider contract: ${label}`, function () {
    this.timeout(90_000);
    let provider: ComputeProvider;
    let name: string;
    let serviceId: string;
    let accessUrl: string;

    before(() => ({ provider, name } = subject()));

    it('makes a service once by its name, and finds the same one when asked again', async () => {
      const first = await provider.createService(name);
      expect(first.created).to.equal(true);
      const again = await provider.createService(name, { mayExist: true });
      expect(again).to.deep.equal({ serviceId: first.serviceId, created: false });
      serviceId = first.serviceId;
      accessUrl = await provider.accessUrl(serviceId, { fresh: true });
      expect(new URL(accessUrl).protocol).to.match(/^https?:$/);
      expect((await provider.listServices()).map((s) => s.serviceId)).to.include(serviceId);
    });

    it('holds what it was configured with, and runs it at the access URL once deployed', async () => {
      await provider.configure(serviceId, { variables: { PLAN: 'pro' }, limits: LIMITS });
      const settings = await provider.readSettings(serviceId);
      expect(settings?.variables.PLAN).to.equal('pro');
      if (settings?.limits) expect(settings.limits).to.deep.equal({ cpu: 1, memoryMb: 1024 });
      const deploymentId = await deployed(provider, serviceId);
      expect((await provider.latestDeployment(serviceId))?.deploymentId).to.equal(deploymentId);
      await waitUntil(async () => (await planAt(accessUrl)) === 'pro', 15_000);
      expect((await provider.serviceState(serviceId)).running).to.equal(true);
    });

    it('runs a new configuration after a redeploy, at the same access URL', async () => {
      await provider.configure(serviceId, { variables: { PLAN: 'team' }, limits: { cpu: 2, memoryMb: 2048, pidsLimit: 512 } });
      await deployed(provider, serviceId);
      await waitUntil(async () => (await planAt(accessUrl)) === 'team', 15_000);
      const limits = (await provider.readSettings(serviceId))?.limits;
      if (limits) expect(limits).to.deep.equal({ cpu: 2, memoryMb: 2048 });
    });

    it('stops: the runtime no longer runs or answers, and a second stop changes nothing', async () => {
      await provider.stop(serviceId);
      await waitUntil(async () => !(await provider.serviceState(serviceId)).running, 15_000);
      await provider.stop(serviceId);
      expect(await planAt(accessUrl)).to.equal(undefined);
    });

    it('deletes the service: it is no longer listed or readable, and a second delete changes nothing', async () => {
      await provider.deleteService(serviceId);
      await provider.deleteService(serviceId);
      expect((await provider.listServices()).map((s) => s.serviceId)).not.to.include(serviceId);
      expect(await provider.readSettings(serviceId)).to.equal(null);
      expect((await provider.serviceState(serviceId)).running).to.equal(false);
    });
  });
}
