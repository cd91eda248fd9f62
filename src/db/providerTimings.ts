/** How long providers take: recorded samples, and the typical duration a step polls by (see ../jobs/pollTiming.ts). */
import { typicalOf, type TypicalDuration } from '../jobs/pollTiming.ts';
import type { Db } from './pool.ts';

export interface TimingSample {
  /** The last time the work was seen still under way, in ms from its start (0 if never). */
  pendingMs: number;
  /** When it was seen done, in ms from its start. */
  readyMs: number;
}

export interface ProviderTimings {
  record(kind: string, sample: TimingSample): Promise<void>;
  /** From the newest samples of a kind; null before there is one. */
  typical(kind: string): Promise<TypicalDuration | null>;
}

/** Samples the typical duration is computed from, and how many of each kind are kept. */
const RECENT = 20;
const KEPT = 500;
/** The typical duration is read once in this long per process, not once per step. */
const CACHE_MS = 30_000;

export class PgProviderTimings implements ProviderTimings {
  private readonly cache = new Map<string, { at: number; typical: TypicalDuration | null }>();

  constructor(private readonly db: Db) {}

  async record(kind: string, sample: TimingSample): Promise<void> {
    const { rows } = await this.db.query<{ id: string }>(
      'INSERT INTO provider_timings (kind, pending_ms, ready_ms) VALUES ($1, $2, $3) RETURNING id',
      [kind, Math.round(sample.pendingMs), Math.round(sample.readyMs)],
    );
    if (Number(rows[0]!.id) % 100 === 0) {
      await this.db.query(
        `DELETE FROM provider_timings WHERE kind = $1
           AND id < (SELECT id FROM provider_timings WHERE kind = $1 ORDER BY id DESC OFFSET ${KEPT - 1} LIMIT 1)`,
        [kind],
      );
    }
    this.cache.delete(kind);
  }

  async typical(kind: string): Promise<TypicalDuration | null> {
    const cached = this.cache.get(kind);
    if (cached && Date.now() - cached.at < CACHE_MS) return cached.typical;
    const { rows } = await this.db.query<{ seen_working: number | null; seen_done: number | null }>(
      `SELECT percentile_disc(0.9) WITHIN GROUP (ORDER BY pending_ms) AS seen_working,
              percentile_disc(0.1) WITHIN GROUP (ORDER BY ready_ms) AS seen_done
       FROM (SELECT pending_ms, ready_ms FROM provider_timings WHERE kind = $1 ORDER BY id DESC LIMIT ${RECENT}) recent`,
      [kind],
    );
    const row = rows[0]!;
    const typical = row.seen_working === null ? null : typicalOf(row.seen_working, row.seen_done!);
    this.cache.set(kind, { at: Date.now(), typical });
    return typical;
  }
}
