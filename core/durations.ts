/** Durations (500ms, 30s, 5m, 2h, 7d) and rates (10/s, 600/m, 1000/h) as written in configuration. */

export interface RateLimit {
  max: number;
  durationMs: number;
}

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds, from a number of ms or a number with a unit; undefined for anything else. */
export function parseDuration(value: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(value.trim());
  if (!match) return undefined;
  const ms = Number(match[1]) * UNITS[match[2] ?? 'ms']!;
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/** A rate such as 10/s, 600/m or 1000/h. */
export function parseRate(value: string): RateLimit | undefined {
  const match = /^(\d+)\s*\/\s*(s|m|h)$/.exec(value.trim());
  if (!match || Number(match[1]) < 1) return undefined;
  return { max: Number(match[1]), durationMs: UNITS[match[2]!]! };
}
