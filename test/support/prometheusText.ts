/**
 * A strict reader of the Prometheus text format (version 0.0.4), for tests of GET /metrics: every line is a HELP, a
 * TYPE or a sample of a family declared before it, or the whole text is refused. Histograms must have cumulative
 * buckets ending in +Inf, equal to their count.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help: string;
  type: string;
  samples: Sample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: -?\\d+)?$`);
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(text: string, line: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  const n = Number(text);
  if (text === '' || Number.isNaN(n)) throw new Error(`not a number in: ${line}`);
  return n;
}

/** `a="x",b="y\"z"` → { a: 'x', b: 'y"z' }. */
function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = text;
  while (rest.length) {
    const match = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/.exec(rest);
    if (!match) throw new Error(`bad labels in: ${line}`);
    if (match[1]! in labels) throw new Error(`label ${match[1]} twice in: ${line}`);
    labels[match[1]!] = match[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    rest = rest.slice(match[0].length);
  }
  return labels;
}

/** The family a sample belongs to: its own name, or a histogram's or summary's with its suffix removed. */
function familyOf(families: Map<string, Family>, name: string): Family | undefined {
  const own = families.get(name);
  if (own) return own;
  const base = /^(.*)_(bucket|sum|count)$/.exec(name);
  const family = base ? families.get(base[1]!) : undefined;
  return family && (family.type === 'histogram' || (family.type === 'summary' && base![2] !== 'bucket')) ? family : undefined;
}

export function parsePrometheusText(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('the text does not end with a newline');
  const families = new Map<string, Family>();
  const pending = new Map<string, string>(); // HELP seen, TYPE not yet
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    const meta = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`).exec(line);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string];
      if (families.has(name) || (kind === 'HELP' && pending.has(name))) throw new Error(`${kind} of ${name} again: ${line}`);
      if (kind === 'HELP') {
        pending.set(name, rest);
        continue;
      }
      if (!TYPES.has(rest)) throw new Error(`unknown type: ${line}`);
      if (!pending.has(name)) throw new Error(`TYPE of ${name} without its HELP`);
      families.set(name, { name, help: pending.get(name)!, type: rest, samples: [] });
      pending.delete(name);
      continue;
    }
    if (line.startsWith('#')) continue; // a comment
    const sample = SAMPLE.exec(line);
    if (!sample) throw new Error(`not a sample: ${line}`);
    const family = familyOf(families, sample[1]!);
    if (!family) throw new Error(`sample of no declared family: ${line}`);
    family.samples.push({ name: sample[1]!, labels: parseLabels(sample[2] ?? '', line), value: parseValue(sample[3]!, line) });
  }
  if (pending.size) throw new Error(`HELP without TYPE: ${[...pending.keys()].join(', ')}`);
  for (const family of families.values()) if (family.type === 'histogram') checkHistogram(family);
  return families;
}

function checkHistogram(family: Family): void {
  const series = new Map<string, Sample[]>();
  const key = (labels: Record<string, string>) => JSON.stringify(Object.entries(labels).filter(([k]) => k !== 'le').sort());
  for (const s of family.samples) series.set(key(s.labels), [...(series.get(key(s.labels)) ?? []), s]);
  for (const [labels, samples] of series) {
    const buckets = samples.filter((s) => s.name === `${family.name}_bucket`);
    const count = samples.find((s) => s.name === `${family.name}_count`);
    if (!samples.some((s) => s.name === `${family.name}_sum`) || !count) throw new Error(`${family.name}${labels}: no sum or count`);
    const bounds = buckets.map((b) => parseValue(b.labels.le ?? '', family.name));
    if (bounds.at(-1) !== Infinity) throw new Error(`${family.name}${labels}: the last bucket is not +Inf`);
    buckets.forEach((b, i) => {
      if (i > 0 && (bounds[i]! <= bounds[i - 1]! || b.value < buckets[i - 1]!.value)) throw new Error(`${family.name}${labels}: buckets not cumulative`);
    });
    if (buckets.at(-1)!.value !== count.value) throw new Error(`${family.name}${labels}: +Inf bucket is not the count`);
  }
}

/** The value of the one sample named `name` whose labels include `labels`; undefined when there is none. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const family = familyOf(families, name);
  const matches = (family?.samples ?? []).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (matches.length > 1) throw new Error(`${matches.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return matches[0]?.value;
}
