/**
 * Drives NeonDatabaseProvider.ensureDatabase to `ready` the way the create-branch step does: called again with the
 * progress it returned after retryInMs (the step re-schedules itself instead of sleeping); a TransientError re-runs
 * it with the progress saved before. With `settle`, each re-run also waits for the emulator's operations to end, so
 * a run never looks at an operation still running: the requests of a provision are then the same on any machine.
 */
import { expect } from 'chai';
import { TransientError } from '../../src/errors.ts';
import type { NeonDatabaseProvider } from '../../src/providers/database/neon.ts';
import type { DatabaseProgress, DatabaseRef, ProviderAlert } from '../../src/providers/types.ts';
import type { NeonEmulator } from '../emulators/neonEmulator.ts';

export type Ready = DatabaseRef & { connectionUrl: string };

export interface Run {
  ready: Ready;
  /** ensureDatabase calls, i.e. runs of the step. */
  steps: number;
  progresses: DatabaseProgress[];
  transient: Error[];
  alerts: ProviderAlert[];
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function provision(
  provider: NeonDatabaseProvider,
  name: string,
  options: { start?: DatabaseProgress; settle?: NeonEmulator } = {},
): Promise<Run> {
  let progress = options.start;
  const progresses: DatabaseProgress[] = [];
  const transient: Error[] = [];
  const alerts: ProviderAlert[] = [];
  for (let steps = 1; steps <= 60; steps++) {
    let result;
    try {
      result = await provider.ensureDatabase(name, progress);
    } catch (err) {
      if (!(err instanceof TransientError)) throw err;
      transient.push(err);
      await sleep(Math.min(err.retryAfterMs ?? 100, 100));
      continue;
    }
    alerts.push(...(result.alerts ?? []));
    if ('ready' in result) return { ready: result.ready, steps, progresses, transient, alerts };
    expect(result.retryInMs).to.be.within(1, 60_000);
    progresses.push(result.pending);
    progress = result.pending;
    await sleep(result.retryInMs);
    await options.settle?.idle();
  }
  throw new Error(`${name} was not ready after 60 steps`);
}
