/**
 * What every bench section reports: rows of one table, each figure beside the anchor it is measured against in the
 * same run, with the goal it is held to. `npm run bench` prints them as one markdown table and writes
 * bench/results.json.
 */

/** Which way a figure is better: a time or a size is better lower, a rate higher. */
export type Better = 'lower' | 'higher';

export interface BenchRow {
  /** What is measured, with its size: 'memory search p95, 100,000 memories'. */
  figure: string;
  /** What it is measured against in the same run ('bare BullMQ flows, same tree'), or null when it has none. */
  anchor: string | null;
  anchorValue: number | null;
  value: number;
  /** ms, req/s, MB, calls, provisions/s … (anchorValue is in the same unit). */
  unit: string;
  better: Better;
  /** The goal as people read it: '≤ 10 ms', '≥ 0.25× anchor'. */
  goal: string;
  /** Whether this run met the goal (at smoke size the goal is still computed, but only a full run counts). */
  met: boolean;
  /** Anything a reader needs to read the figure (the size it ran at, a breakdown). */
  note?: string;
}

export interface BenchOptions {
  /** smoke: seconds-long sizes that prove the bench runs (CI); full: the sizes the goals are stated at. */
  size: 'smoke' | 'full';
}

/** A section of the suite: measures its anchor and its figures in this process and returns their rows. */
export type BenchSection = (options: BenchOptions) => Promise<BenchRow[]>;

/** value / anchor, the figure as a multiple of its anchor. */
export function ratio(row: Pick<BenchRow, 'value' | 'anchorValue'>): number | null {
  return row.anchorValue ? row.value / row.anchorValue : null;
}

/** A number chosen by env (BENCH_<NAME>), else by size. */
export function sized(name: string, options: BenchOptions, sizes: { smoke: number; full: number }): number {
  const raw = process.env[`BENCH_${name}`];
  if (raw !== undefined) {
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`BENCH_${name} must be a positive number (got ${raw})`);
    return n;
  }
  return sizes[options.size];
}

export function percentile(values: number[], p: number): number {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function median(values: number[]): number {
  return percentile(values, 50);
}

function format(n: number | null, unit = ''): string {
  if (n === null || !Number.isFinite(n)) return '–';
  const digits = Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : 2;
  return `${n.toFixed(digits)}${unit ? ` ${unit}` : ''}`;
}

/** The rows as one markdown table. */
export function markdownTable(rows: BenchRow[]): string {
  const lines = [
    '| figure | anchor | anchor value | value | ratio | goal | met |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => {
      const x = ratio(r);
      return `| ${r.figure}${r.note ? ` (${r.note})` : ''} | ${r.anchor ?? '–'} | ${format(r.anchorValue, r.unit)} | ${format(r.value, r.unit)} | ${x === null ? '–' : `${x.toFixed(2)}×`} | ${r.goal} | ${r.met ? 'yes' : 'no'} |`;
    }),
  ];
  return lines.join('\n');
}
