/** The rollouts gateway: a rollout, its instances in their fixed order, and their states as the jobs move them. */
import { inTransaction } from '../../core/postgres.ts';
import type { PlannedInstance, RolloutInstanceState } from '../fleet/batches.ts';
import { insertAudit } from './audit.ts';
import type { Db } from './pool.ts';

export type RolloutState = 'running' | 'paused' | 'completed' | 'halted' | 'aborted' | 'rolling_back';
/** A rollout that still has work: only one at a time. */
export const OPEN_ROLLOUT_STATES: readonly RolloutState[] = ['running', 'paused', 'rolling_back'];

/** Which instances a rollout takes: every active one, or those on a plan, or those named (active ones only). */
export interface RolloutSelector {
  plan?: string;
  instanceIds?: string[];
}

export interface Rollout {
  id: number;
  state: RolloutState;
  ends_as: 'halted' | 'aborted' | null;
  target_generation: number;
  previous_generation: number;
  selector: RolloutSelector;
  batch_size: number;
  canary: number;
  max_failures: number;
  failures: number;
  created_by: string;
  halt_reason: string | null;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

export interface RolloutInstance {
  rollout_id: number;
  instance_id: string;
  workspace_id: string;
  batch: number;
  position: number;
  state: RolloutInstanceState;
  rollback: 'running' | 'done' | 'failed' | null;
  from_generation: number | null;
  from_version: string | null;
  started_at: Date | null;
  finished_at: Date | null;
  detail: string | null;
}

/** An instance a rollout may take, in rollout order, with what it runs now. */
export interface Candidate {
  id: string;
  settings_generation: number | null;
  runtime_version: string | null;
}

export interface NewRollout {
  target: number;
  previous: number;
  selector: RolloutSelector;
  batchSize: number;
  canary: number;
  maxFailures: number;
  createdBy: string;
  /** Each instance's place; those already on the target are recorded skipped. */
  plan: (PlannedInstance & { from: Candidate; skipped: boolean })[];
}

export interface Rollouts {
  /** Active instances with a service, oldest first (then by id): the order a rollout takes them in. */
  candidates(selector: RolloutSelector): Promise<Candidate[]>;
  /** Creates a rollout and its instances with its audit row; undefined when another rollout is still open. */
  create(rollout: NewRollout): Promise<Rollout | undefined>;
  byId(id: number): Promise<Rollout | undefined>;
  list(limit: number): Promise<Rollout[]>;
  instances(id: number): Promise<RolloutInstance[]>;
  instance(id: number, instanceId: string): Promise<RolloutInstance | undefined>;
  /** Moves the rollout from one of `from` to `to` (with what else changes): whether it did. */
  setState(id: number, from: readonly RolloutState[], to: RolloutState, set?: { ends_as?: 'halted' | 'aborted'; halt_reason?: string; failures?: number }): Promise<boolean>;
  /** Moves instances of a rollout from one state to another (with a detail): those it moved. */
  setInstances(id: number, instanceIds: string[], from: readonly RolloutInstanceState[], to: RolloutInstanceState, detail?: string | null): Promise<string[]>;
  /** The instances' rollback: running (from unset), done or failed. */
  setRollback(id: number, instanceIds: string[], to: 'running' | 'done' | 'failed', detail?: string | null): Promise<string[]>;
}

export class PgRollouts implements Rollouts {
  constructor(private readonly db: Db) {}

  async candidates(selector: RolloutSelector): Promise<Candidate[]> {
    const { rows } = await this.db.query<Candidate>(
      `SELECT id, settings_generation, runtime_version FROM instances
       WHERE status = 'active' AND service_id IS NOT NULL
         AND ($1::text IS NULL OR plan = $1) AND ($2::uuid[] IS NULL OR id = ANY($2))
       ORDER BY active_at NULLS LAST, provision_started_at, id`,
      [selector.plan ?? null, selector.instanceIds ?? null],
    );
    return rows;
  }

  async create(rollout: NewRollout): Promise<Rollout | undefined> {
    return inTransaction(this.db, async (tx) => {
      const { rows } = await tx.query<Rollout>(
        `INSERT INTO rollouts (state, target_generation, previous_generation, selector, batch_size, canary, max_failures, created_by)
         VALUES ('running', $1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING *`,
        [rollout.target, rollout.previous, JSON.stringify(rollout.selector), rollout.batchSize, rollout.canary, rollout.maxFailures, rollout.createdBy],
      );
      const created = rows[0];
      if (!created) return undefined;
      for (const p of rollout.plan) {
        await tx.query(
          `INSERT INTO rollout_instances (rollout_id, instance_id, batch, position, state, from_generation, from_version, detail, finished_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
          [created.id, p.instanceId, p.batch, p.position, p.skipped ? 'skipped' : 'pending', p.from.settings_generation, p.from.runtime_version,
            p.skipped ? 'already runs the target generation' : null, p.skipped ? new Date() : null],
        );
      }
      await insertAudit(tx, {
        actor: rollout.createdBy,
        action: 'rollout.created',
        detail: { rolloutId: created.id, target: rollout.target, previous: rollout.previous, instances: rollout.plan.length, batchSize: rollout.batchSize, canary: rollout.canary, maxFailures: rollout.maxFailures },
      });
      return created;
    });
  }

  async byId(id: number): Promise<Rollout | undefined> {
    const { rows } = await this.db.query<Rollout>('SELECT * FROM rollouts WHERE id = $1', [id]);
    return rows[0];
  }

  async list(limit: number): Promise<Rollout[]> {
    const { rows } = await this.db.query<Rollout>('SELECT * FROM rollouts ORDER BY id DESC LIMIT $1', [limit]);
    return rows;
  }

  async instances(id: number): Promise<RolloutInstance[]> {
    const { rows } = await this.db.query<RolloutInstance>(
      `SELECT r.*, i.workspace_id FROM rollout_instances r JOIN instances i ON i.id = r.instance_id
       WHERE r.rollout_id = $1 ORDER BY r.position`,
      [id],
    );
    return rows;
  }

  async instance(id: number, instanceId: string): Promise<RolloutInstance | undefined> {
    const { rows } = await this.db.query<RolloutInstance>(
      `SELECT r.*, i.workspace_id FROM rollout_instances r JOIN instances i ON i.id = r.instance_id
       WHERE r.rollout_id = $1 AND r.instance_id = $2`,
      [id, instanceId],
    );
    return rows[0];
  }

  async setState(id: number, from: readonly RolloutState[], to: RolloutState, set: { ends_as?: 'halted' | 'aborted'; halt_reason?: string; failures?: number } = {}): Promise<boolean> {
    const final = ['completed', 'halted', 'aborted'].includes(to);
    const { rowCount } = await this.db.query(
      `UPDATE rollouts SET state = $3, updated_at = now(), ends_as = COALESCE($4, ends_as), halt_reason = COALESCE($5, halt_reason),
              failures = COALESCE($6, failures), finished_at = CASE WHEN $7 THEN now() ELSE finished_at END
       WHERE id = $1 AND state = ANY($2)`,
      [id, from, to, set.ends_as ?? null, set.halt_reason ?? null, set.failures ?? null, final],
    );
    return rowCount === 1;
  }

  async setInstances(id: number, instanceIds: string[], from: readonly RolloutInstanceState[], to: RolloutInstanceState, detail: string | null = null): Promise<string[]> {
    const { rows } = await this.db.query<{ instance_id: string }>(
      `UPDATE rollout_instances SET state = $4, detail = COALESCE($5, detail),
              started_at = CASE WHEN $4 = 'updating' THEN now() ELSE started_at END,
              finished_at = CASE WHEN $4 = 'updating' THEN NULL ELSE now() END
       WHERE rollout_id = $1 AND instance_id = ANY($2) AND state = ANY($3) RETURNING instance_id`,
      [id, instanceIds, from, to, detail],
    );
    return rows.map((r) => r.instance_id);
  }

  async setRollback(id: number, instanceIds: string[], to: 'running' | 'done' | 'failed', detail: string | null = null): Promise<string[]> {
    const { rows } = await this.db.query<{ instance_id: string }>(
      `UPDATE rollout_instances SET rollback = $3, detail = COALESCE($4, detail),
              state = CASE WHEN $3 = 'done' THEN 'rolled_back' ELSE state END,
              finished_at = CASE WHEN $3 = 'running' THEN finished_at ELSE now() END
       WHERE rollout_id = $1 AND instance_id = ANY($2) AND (CASE WHEN $3 = 'running' THEN rollback IS NULL ELSE rollback = 'running' END)
       RETURNING instance_id`,
      [id, instanceIds, to, detail],
    );
    return rows.map((r) => r.instance_id);
  }
}
