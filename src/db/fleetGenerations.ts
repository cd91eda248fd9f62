/**
 * The fleet generations gateway: each generation's settings (secrets sealed under SECRETS_KEY in the row, never in
 * clear), which one is current, and which one each instance's service was last configured with.
 */
import { open, seal } from '../../core/sealing.ts';
import { inTransaction } from '../../core/postgres.ts';
import { generationDigest, overridesBetween, withOverrides, type FleetSettings, type FleetValues } from '../fleet/settings.ts';
import type { Db } from './pool.ts';

/** One generation, its secrets opened (for configuring services only: never logged, returned or queued). */
export interface Generation extends FleetValues {
  id: number;
  digest: string;
  source: 'config' | 'rollout';
  createdAt: Date;
}

/** What the control plane found at start, comparing its configuration with the fleet. */
export interface Bootstrap {
  current: Generation;
  /** The generation that was current before (undefined when none was, or it was the same). */
  replaced?: Generation;
  /** Active instances configured with another generation than the current one. */
  behind: number;
  /** The generations those instances run (none recorded: null), with how many run each. */
  behindOn: { generation: Generation | null; instances: number }[];
}

export interface FleetGenerations {
  /** The generation with these values, added if none has them (equal values share one row). */
  ensure(values: FleetValues, source: Generation['source']): Promise<Generation>;
  byId(id: number): Promise<Generation | undefined>;
  /** The current generation; undefined before the first bootstrap. */
  current(): Promise<Generation | undefined>;
  /** Makes a generation current, if `expected` is current (or nothing is, with null): whether it did. */
  setCurrent(id: number, expected?: number | null): Promise<boolean>;
  /**
   * At start: the configuration's values become current, with what completed rollouts changed on top of the
   * configuration last seen (a version, a model) carried over; an unchanged configuration changes nothing. Instances
   * from before generations get the first one there was. Safe when several workers start at once.
   */
  bootstrap(values: FleetValues): Promise<Bootstrap>;
  /** The instance's service was configured with this generation. */
  recordOnInstance(instanceId: string, generation: Pick<Generation, 'id' | 'runtimeVersion'>): Promise<void>;
  /** The generation the instance's service was last configured with (null when not recorded). */
  ofInstance(instanceId: string): Promise<number | null>;
  /** Active instances configured with another generation than `id`. */
  behind(id: number): Promise<number>;
}

interface GenerationRow {
  id: number;
  runtime_version: string;
  settings: FleetSettings;
  secrets_ciphertext: Buffer;
  secrets_iv: Buffer;
  secrets_tag: Buffer;
  digest: string;
  source: Generation['source'];
  created_at: Date;
}

type Queryable = Pick<Db, 'query'>;

const BOOTSTRAP_LOCK = 0x666c6574; // 'flet'

export class PgFleetGenerations implements FleetGenerations {
  constructor(
    private readonly db: Db,
    private readonly key: Buffer,
  ) {}

  ensure(values: FleetValues, source: Generation['source']): Promise<Generation> {
    return this.ensureWith(this.db, values, source);
  }

  private async ensureWith(db: Queryable, values: FleetValues, source: Generation['source']): Promise<Generation> {
    const digest = generationDigest(values, this.key);
    const sealed = seal(this.key, JSON.stringify(values.secrets), context(digest));
    await db.query(
      `INSERT INTO fleet_generations (runtime_version, settings, secrets_ciphertext, secrets_iv, secrets_tag, digest, source)
       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (digest) DO NOTHING`,
      [values.runtimeVersion, JSON.stringify(values.settings), sealed.ciphertext, sealed.iv, sealed.tag, digest, source],
    );
    const { rows } = await db.query<GenerationRow>('SELECT * FROM fleet_generations WHERE digest = $1', [digest]);
    return this.opened(rows[0]!);
  }

  async byId(id: number): Promise<Generation | undefined> {
    const { rows } = await this.db.query<GenerationRow>('SELECT * FROM fleet_generations WHERE id = $1', [id]);
    return rows[0] && this.opened(rows[0]);
  }

  async current(): Promise<Generation | undefined> {
    const { rows } = await this.db.query<GenerationRow>(
      'SELECT g.* FROM fleet_current c JOIN fleet_generations g ON g.id = c.generation_id',
    );
    return rows[0] && this.opened(rows[0]);
  }

  async setCurrent(id: number, expected?: number | null): Promise<boolean> {
    if (expected === null) {
      const { rowCount } = await this.db.query('INSERT INTO fleet_current (generation_id) VALUES ($1) ON CONFLICT DO NOTHING', [id]);
      return rowCount === 1;
    }
    const { rowCount } = await this.db.query(
      `UPDATE fleet_current SET generation_id = $1, updated_at = now() WHERE $2::int IS NULL OR generation_id = $2`,
      [id, expected ?? null],
    );
    return rowCount === 1;
  }

  bootstrap(values: FleetValues): Promise<Bootstrap> {
    return inTransaction(this.db, async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [BOOTSTRAP_LOCK]);
      const configured = await this.ensureWith(tx, values, 'config');
      const { rows } = await tx.query<GenerationRow & { config_generation_id: number | null }>(
        'SELECT g.*, c.config_generation_id FROM fleet_current c JOIN fleet_generations g ON g.id = c.generation_id FOR UPDATE OF c',
      );
      const before = rows[0] && this.opened(rows[0]);
      const lastConfigured = rows[0]?.config_generation_id;
      let generation = before && lastConfigured === configured.id ? before : configured;
      if (before && lastConfigured !== configured.id && lastConfigured != null) {
        // The configuration changed: what rollouts had changed on top of the last one stays changed.
        const last = (await tx.query<GenerationRow>('SELECT * FROM fleet_generations WHERE id = $1', [lastConfigured])).rows[0];
        if (last) generation = await this.ensureWith(tx, withOverrides(values, overridesBetween(this.opened(last), before)), before.source);
      }
      if (!before) await tx.query('INSERT INTO fleet_current (generation_id, config_generation_id) VALUES ($1, $2)', [generation.id, configured.id]);
      else await tx.query('UPDATE fleet_current SET generation_id = $1, config_generation_id = $2, updated_at = now() WHERE singleton', [generation.id, configured.id]);
      // Instances configured before generations existed run what the configuration said then: the first generation.
      await tx.query(
        `UPDATE instances SET settings_generation = (SELECT min(id) FROM fleet_generations),
                runtime_version = (SELECT runtime_version FROM fleet_generations ORDER BY id LIMIT 1)
         WHERE settings_generation IS NULL AND service_id IS NOT NULL`,
      );
      const { rows: on } = await tx.query<GenerationRow & { instances: number; none: boolean }>(
        `SELECT g.*, b.instances, b.generation IS NULL AS none
         FROM (SELECT settings_generation AS generation, count(*)::int AS instances FROM instances
               WHERE status = 'active' AND settings_generation IS DISTINCT FROM $1 GROUP BY settings_generation) b
         LEFT JOIN fleet_generations g ON g.id = b.generation ORDER BY b.instances DESC`,
        [generation.id],
      );
      const behindOn = on.map((row) => ({ generation: row.none ? null : this.opened(row), instances: row.instances }));
      const behind = behindOn.reduce((sum, b) => sum + b.instances, 0);
      return { current: generation, replaced: before && before.id !== generation.id ? before : undefined, behind, behindOn };
    });
  }

  async recordOnInstance(instanceId: string, generation: Pick<Generation, 'id' | 'runtimeVersion'>): Promise<void> {
    await this.db.query('UPDATE instances SET settings_generation = $2, runtime_version = $3 WHERE id = $1', [
      instanceId,
      generation.id,
      generation.runtimeVersion,
    ]);
  }

  async ofInstance(instanceId: string): Promise<number | null> {
    const { rows } = await this.db.query<{ settings_generation: number | null }>('SELECT settings_generation FROM instances WHERE id = $1', [instanceId]);
    return rows[0]?.settings_generation ?? null;
  }

  behind(id: number): Promise<number> {
    return this.behindWith(this.db, id);
  }

  private async behindWith(db: Queryable, id: number): Promise<number> {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM instances WHERE status = 'active' AND settings_generation IS DISTINCT FROM $1`,
      [id],
    );
    return rows[0]!.n;
  }

  private opened(row: GenerationRow): Generation {
    const secrets = JSON.parse(open(this.key, { ciphertext: row.secrets_ciphertext, iv: row.secrets_iv, tag: row.secrets_tag }, context(row.digest))) as Record<string, string>;
    return {
      id: row.id,
      runtimeVersion: row.runtime_version,
      settings: row.settings,
      secrets,
      digest: row.digest,
      source: row.source,
      createdAt: row.created_at,
    };
  }
}

function context(digest: string): string {
  return `fleet-generation/${digest}`;
}
