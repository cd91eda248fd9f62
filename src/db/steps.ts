/** The steps ledger gateway: each provisioning step of an instance, its state, attempts, error and timings. */
import type { StepName } from '../queues/catalogue.ts';
import type { Db } from './pool.ts';

export interface StepRow {
  name: string;
  state: string;
  started_at: Date | null;
  finished_at: Date | null;
}

export interface StepLedger {
  /** The step runs (again, since `at`): attempt n, no error, not finished; its first start time stays. */
  started(instanceId: string, step: string, attempt: number, at?: Date): Promise<void>;
  /** An attempt failed and the step will be retried. */
  retrying(instanceId: string, step: string, error: string): Promise<void>;
  /** The step waits (a delayed re-run that holds no worker); with `run`, a run not written as started is written whole. */
  waiting(instanceId: string, step: string, run?: { attempt: number; startedAt: Date }): Promise<void>;
  /** Done; with `run`, a run not written as started (it ended at once) is written whole, in one statement. */
  completed(instanceId: string, step: string, result: object, run?: { attempt: number; startedAt: Date }): Promise<void>;
  /** The step failed for good. */
  failed(instanceId: string, step: string, reason: string): Promise<void>;
  /** Another step of the instance that failed for good, if any. */
  otherFailed(instanceId: string, step: string): Promise<{ name: StepName; error: string | null } | undefined>;
  /** How long each finished step took, in ms, in the order they started. */
  timings(instanceId: string): Promise<Record<string, number>>;
  list(instanceId: string): Promise<StepRow[]>;
}

export class PgStepLedger implements StepLedger {
  constructor(private readonly db: Db) {}

  async started(instanceId: string, step: string, attempt: number, at = new Date()): Promise<void> {
    await this.writeRun(instanceId, step, 'running', attempt, at);
  }

  /** A run (again) in `state`: attempt n, no error, not finished; the step's first start time stays. */
  private async writeRun(instanceId: string, step: string, state: 'running' | 'waiting', attempt: number, at: Date): Promise<void> {
    await this.db.query(
      `INSERT INTO steps (instance_id, name, state, attempts, started_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (instance_id, name) DO UPDATE SET state = $3, attempts = $4, error = NULL,
         started_at = COALESCE(steps.started_at, $5), finished_at = NULL`,
      [instanceId, step, state, attempt, at],
    );
  }

  async retrying(instanceId: string, step: string, error: string): Promise<void> {
    await this.db.query('UPDATE steps SET error = $3 WHERE instance_id = $1 AND name = $2', [instanceId, step, error.slice(0, 2000)]);
  }

  async waiting(instanceId: string, step: string, run?: { attempt: number; startedAt: Date }): Promise<void> {
    if (run) return this.writeRun(instanceId, step, 'waiting', run.attempt, run.startedAt);
    await this.db.query(`UPDATE steps SET state = 'waiting' WHERE instance_id = $1 AND name = $2`, [instanceId, step]);
  }

  async completed(instanceId: string, step: string, result: object, run?: { attempt: number; startedAt: Date }): Promise<void> {
    if (run) {
      await this.db.query(
        `INSERT INTO steps (instance_id, name, state, attempts, started_at, finished_at, result)
         VALUES ($1, $2, 'completed', $4, $5, now(), $3)
         ON CONFLICT (instance_id, name) DO UPDATE SET state = 'completed', attempts = $4, error = NULL,
           started_at = COALESCE(steps.started_at, $5), finished_at = now(), result = $3`,
        [instanceId, step, JSON.stringify(result), run.attempt, run.startedAt],
      );
      return;
    }
    await this.db.query(`UPDATE steps SET state = 'completed', finished_at = now(), result = $3 WHERE instance_id = $1 AND name = $2`, [
      instanceId,
      step,
      JSON.stringify(result),
    ]);
  }

  async failed(instanceId: string, step: string, reason: string): Promise<void> {
    await this.db.query(`UPDATE steps SET state = 'failed', error = $3, finished_at = now() WHERE instance_id = $1 AND name = $2`, [
      instanceId,
      step,
      reason,
    ]);
  }

  async otherFailed(instanceId: string, step: string): Promise<{ name: StepName; error: string | null } | undefined> {
    const { rows } = await this.db.query<{ name: StepName; error: string | null }>(
      `SELECT name, error FROM steps WHERE instance_id = $1 AND state = 'failed' AND name <> $2 LIMIT 1`,
      [instanceId, step],
    );
    return rows[0];
  }

  async timings(instanceId: string): Promise<Record<string, number>> {
    const { rows } = await this.db.query<{ name: string; ms: number }>(
      `SELECT name, (extract(epoch FROM finished_at - started_at) * 1000)::int AS ms
       FROM steps WHERE instance_id = $1 AND finished_at IS NOT NULL ORDER BY started_at`,
      [instanceId],
    );
    return Object.fromEntries(rows.map((r) => [r.name, r.ms]));
  }

  async list(instanceId: string): Promise<StepRow[]> {
    const { rows } = await this.db.query<StepRow>(
      'SELECT name, state, started_at, finished_at FROM steps WHERE instance_id = $1 ORDER BY started_at NULLS LAST, name',
      [instanceId],
    );
    return rows;
  }
}
