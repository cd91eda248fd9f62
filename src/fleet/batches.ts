/** A rollout's plan: which instance goes in which batch, and what comes next. Pure. */

export interface PlannedInstance {
  instanceId: string;
  /** 0 = the canary batch, then 1, 2, ... */
  batch: number;
  /** The instance's place in the whole rollout, from 0. */
  position: number;
}

/**
 * Splits instances (already in their rollout order) into the canary batch (the first `canary`) and batches of
 * `batchSize`. With no canary, batch 0 is empty and the first batch is 1.
 */
export function planBatches(instanceIds: readonly string[], canary: number, batchSize: number): PlannedInstance[] {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError('batchSize must be a positive integer');
  if (!Number.isInteger(canary) || canary < 0) throw new RangeError('canary must be a non-negative integer');
  return instanceIds.map((instanceId, position) => ({
    instanceId,
    position,
    batch: position < canary ? 0 : 1 + Math.floor((position - canary) / batchSize),
  }));
}

/** A rollout instance's state, as its row holds it. */
export type RolloutInstanceState = 'pending' | 'updating' | 'healthy' | 'failed' | 'rolled_back' | 'skipped';

/** What the coordinator does next, from the rows' states (in batch order). */
export type NextStep =
  | { kind: 'launch'; batch: number; instanceIds: string[] }
  | { kind: 'wait' }
  | { kind: 'halt'; failures: number }
  | { kind: 'complete' };

/**
 * The next step of a running rollout: halt once failures pass maxFailures; wait while a batch is updating; launch
 * the first batch with pending instances once every earlier one has finished; complete when none is left.
 */
export function nextStep(rows: readonly { instanceId: string; batch: number; state: RolloutInstanceState }[], maxFailures: number): NextStep {
  const failures = rows.filter((r) => r.state === 'failed').length;
  if (failures > maxFailures) return { kind: 'halt', failures };
  if (rows.some((r) => r.state === 'updating')) return { kind: 'wait' };
  const pending = rows.filter((r) => r.state === 'pending');
  if (pending.length === 0) return { kind: 'complete' };
  const batch = Math.min(...pending.map((r) => r.batch));
  return { kind: 'launch', batch, instanceIds: pending.filter((r) => r.batch === batch).map((r) => r.instanceId) };
}
