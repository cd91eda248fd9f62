/**
 * Where Neon branches go (table neon_projects, neon_placements; see migration 005): each project's branch count,
 * kept here so placing a customer costs no Neon call, and each customer's project, recorded before its branch is
 * made so a re-run finds the branch where it was put.
 *
 * A project's count starts from Neon's own count (taken once, the first time the project is used), goes up by one
 * per placement and down by one per branch deleted, and is replaced by Neon's count whenever Neon refuses a branch
 * for its limit (which also tells us the limit Neon really enforces there, trusted for an hour). Placing, moving and
 * releasing run one at a time (a transaction-level advisory lock), so concurrent sign-ups never overfill a project.
 * Choosing the project and counting the branch are functions in the database (migration 013): a placement is one
 * call, so the lock is held for its statements alone, never across round trips to a busy worker.
 */
import { inTransaction } from '../../core/postgres.ts';
import type { Queryable } from './instances.ts';
import type { Db } from './pool.ts';

/** A project reached 80 % of its branch limit (once per crossing: `key` names the project and the crossing). */
export interface CapacityAlert {
  key: string;
  projectId: string;
  branches: number;
  limit: number;
}

export interface ProjectLoad {
  projectId: string;
  branches: number;
  /** The limit in force: NEON_BRANCH_LIMIT, or the lower one Neon enforced when it last refused (for an hour). */
  limit: number;
}

/** Where a name was placed (and the alerts its placement set off), or, when no project has room, every project's load. */
export type Placement = { projectId: string; alerts: CapacityAlert[] } | { full: ProjectLoad[]; alerts: CapacityAlert[] };

export interface NeonPlacements {
  /** The projects of the pool whose branches were never counted here. */
  uncounted(projectIds: readonly string[]): Promise<string[]>;
  /** A project's first count of branches, from Neon (ignored if it was counted meanwhile). */
  counted(projectId: string, branches: number): Promise<void>;
  /** The name's project: where it was placed before, else the project with the most room, recorded now. */
  place(name: string, projectIds: readonly string[], limit: number): Promise<Placement>;
  /**
   * Neon refused a branch in `projectId` for its branch limit while holding `branches`: that is the project's count
   * and limit from now on, and the name is placed in the project with the most room left, if any.
   */
  refused(name: string, projectId: string, branches: number, projectIds: readonly string[], limit: number): Promise<Placement>;
  projectOf(name: string): Promise<string | undefined>;
  /** The name's branch is gone: its placement is forgotten and its project has one more free branch. */
  release(name: string, projectId: string | undefined, deleted: boolean, limit: number): Promise<void>;
  /**
   * Books the project's next turn for a mutation whose operations take about `ms`: how long to wait before sending it
   * (0: now). Turns follow each other, so concurrent sign-ups take turns instead of hitting Neon's 423.
   */
  book(projectId: string, ms: number): Promise<number>;
  loads(projectIds: readonly string[], limit: number): Promise<ProjectLoad[]>;
}

const LOCK_ID = 0x6e656f6e; // 'neon'

/** Re-arms the 80 % alert (raised in the database, see neon_take_room) once a project is below 75 % again. */
const belowRearm = (branches: number, limit: number) => branches * 4 < limit * 3;

export class PgNeonPlacements implements NeonPlacements {
  constructor(private readonly db: Db) {}

  async uncounted(projectIds: readonly string[]): Promise<string[]> {
    const { rows } = await this.db.query<{ project_id: string }>('SELECT project_id FROM neon_projects WHERE project_id = ANY ($1)', [projectIds]);
    const known = new Set(rows.map((r) => r.project_id));
    return projectIds.filter((id) => !known.has(id));
  }

  async counted(projectId: string, branches: number): Promise<void> {
    await this.db.query('INSERT INTO neon_projects (project_id, branches) VALUES ($1, $2) ON CONFLICT (project_id) DO NOTHING', [projectId, branches]);
  }

  async place(name: string, projectIds: readonly string[], limit: number): Promise<Placement> {
    const earlier = await placementOf(this.db, name);
    if (earlier) return earlier;
    // Under the lock, in the database: placed meanwhile by a concurrent run of the same step, or placed now.
    const { rows } = await this.db.query<{ placement: Placement }>('SELECT neon_place($1, $2, $3, $4) AS placement', [name, projectIds, limit, LOCK_ID]);
    return rows[0]!.placement;
  }

  async refused(name: string, projectId: string, branches: number, projectIds: readonly string[], limit: number): Promise<Placement> {
    return inTransaction(this.db, async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_ID]);
      const { rows } = await tx.query<{ alerted: boolean; crossings: number }>(
        `INSERT INTO neon_projects AS p (project_id, branches, refused_at, refused_limit) VALUES ($1, $2, now(), $2)
         ON CONFLICT (project_id) DO UPDATE SET branches = $2, refused_at = now(), refused_limit = $2
         RETURNING alerted, crossings`,
        [projectId, branches],
      );
      const alerts: CapacityAlert[] = [];
      // A refusal means the project is full: past the 80 % line, whatever we counted before.
      if (!rows[0]!.alerted) {
        const crossing = rows[0]!.crossings + 1;
        await tx.query('UPDATE neon_projects SET alerted = true, crossings = $2 WHERE project_id = $1', [projectId, crossing]);
        alerts.push({ key: alertKey(projectId, crossing), projectId, branches, limit: Math.min(branches, limit) });
      }
      const { rows: room } = await tx.query<{ taken: { projectId: string; alerts: CapacityAlert[] } | null }>(
        'SELECT neon_take_room($1, $2) AS taken',
        [projectIds, limit],
      );
      const best = room[0]!.taken;
      if (best) alerts.push(...best.alerts);
      const { rows: placed } = await tx.query<{ alerts: CapacityAlert[] }>(
        `INSERT INTO neon_placements (name, project_id, alerts) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET project_id = $2, alerts = neon_placements.alerts || $3
         RETURNING alerts`,
        [name, best?.projectId ?? projectId, JSON.stringify(alerts)],
      );
      const all = placed[0]!.alerts;
      return best ? { projectId: best.projectId, alerts: all } : { full: await loadRows(tx, projectIds, limit), alerts: all };
    });
  }

  async projectOf(name: string): Promise<string | undefined> {
    return (await placementOf(this.db, name))?.projectId;
  }

  async release(name: string, projectId: string | undefined, deleted: boolean, limit: number): Promise<void> {
    await inTransaction(this.db, async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_ID]);
      const { rows } = await tx.query<{ project_id: string }>('DELETE FROM neon_placements WHERE name = $1 RETURNING project_id', [name]);
      // Placed here: its branch counted (made or not). Not placed here (made before placements were recorded): a
      // branch Neon deleted just now was in Neon's first count.
      const target = rows[0]?.project_id ?? (deleted ? projectId : undefined);
      if (!target) return;
      const [load] = await loadRows(tx, [target], limit);
      if (!load) return;
      const branches = Math.max(load.branches - 1, 0);
      await tx.query('UPDATE neon_projects SET branches = $2, alerted = alerted AND NOT $3 WHERE project_id = $1', [
        target,
        branches,
        belowRearm(branches, load.limit),
      ]);
    });
  }

  async book(projectId: string, ms: number): Promise<number> {
    const { rows } = await this.db.query<{ wait_ms: number }>(
      `UPDATE neon_projects SET free_at = GREATEST(free_at, clock_timestamp()) + $2::float8 * interval '1 millisecond'
       WHERE project_id = $1
       RETURNING GREATEST(0, extract(epoch FROM free_at - clock_timestamp()) * 1000 - $2::float8)::int AS wait_ms`,
      [projectId, Math.max(0, Math.round(ms))],
    );
    return rows[0]?.wait_ms ?? 0;
  }

  async loads(projectIds: readonly string[], limit: number): Promise<ProjectLoad[]> {
    return loadRows(this.db, projectIds, limit);
  }
}

async function placementOf(db: Queryable, name: string): Promise<{ projectId: string; alerts: CapacityAlert[] } | undefined> {
  const { rows } = await db.query<{ project_id: string; alerts: CapacityAlert[] }>('SELECT project_id, alerts FROM neon_placements WHERE name = $1', [name]);
  return rows[0] && { projectId: rows[0].project_id, alerts: rows[0].alerts };
}

async function loadRows(db: Queryable, projectIds: readonly string[], limit: number): Promise<ProjectLoad[]> {
  const { rows } = await db.query<ProjectLoad>(
    `SELECT project_id AS "projectId", branches, neon_branch_limit(refused_at, refused_limit, $2) AS "limit"
       FROM neon_projects WHERE project_id = ANY ($1)`,
    [projectIds, limit],
  );
  return rows;
}

const alertKey = (projectId: string, crossing: number) => `neon-capacity/${projectId}/${crossing}`;
