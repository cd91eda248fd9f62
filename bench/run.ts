/**
 * `npm run bench`: every section of bench/sections, each figure beside an anchor measured in the same run, printed
 * as one markdown table and written to bench/results.json (docs/performance.md keeps a full run's table).
 *
 *   BENCH_SIZE=full (default) | smoke   the sizes the goals are stated at, or seconds-long sizes that only prove the
 *                                       suite runs (the test suite runs the smoke size; it asserts no timing)
 *   BENCH_ONLY=provisioning,memory      run only these sections
 *   BENCH_RESULTS=path                  where the JSON goes (default bench/results.json)
 *   BENCH_<NAME>=n                      a section's size (see each section)
 *
 * Redis and Postgres on localhost, as for the tests; the cloud providers and the model are the emulators.
 */
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { markdownTable, ratio, type BenchOptions, type BenchRow, type BenchSection } from './lib/report.ts';
import provisioning from './sections/provisioning.ts';
import webhookIntake from './sections/webhookIntake.ts';
import memorySearch from './sections/memorySearch.ts';
import neonProvision from './sections/neonProvision.ts';
import chatOverhead from './sections/chatOverhead.ts';
import monitorCost from './sections/monitor.ts';

const SECTIONS: Record<string, BenchSection> = {
  provisioning,
  intake: webhookIntake,
  memory: memorySearch,
  neon: neonProvision,
  chat: chatOverhead,
  monitor: monitorCost,
};

export interface BenchResults {
  size: BenchOptions['size'];
  startedAt: string;
  machine: { cpus: string; cores: number; memoryGb: number; node: string; platform: string };
  sections: Record<string, { seconds: number; rows: (BenchRow & { ratio: number | null })[] }>;
}

export async function runBench(options: BenchOptions, only?: string[]): Promise<BenchResults> {
  const names = only?.length ? only : Object.keys(SECTIONS);
  const unknown = names.filter((n) => !SECTIONS[n]);
  if (unknown.length) throw new Error(`unknown bench section(s): ${unknown.join(', ')} (have: ${Object.keys(SECTIONS).join(', ')})`);
  const results: BenchResults = {
    size: options.size,
    startedAt: new Date().toISOString(),
    machine: {
      cpus: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      memoryGb: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
    },
    sections: {},
  };
  for (const name of names) {
    const started = Date.now();
    const rows = await SECTIONS[name]!(options);
    results.sections[name] = { seconds: Math.round((Date.now() - started) / 1000), rows: rows.map((r) => ({ ...r, ratio: ratio(r) })) };
  }
  return results;
}

async function main(): Promise<void> {
  const size = process.env.BENCH_SIZE ?? 'full';
  if (size !== 'full' && size !== 'smoke') throw new Error(`BENCH_SIZE must be full or smoke (got ${size})`);
  const only = process.env.BENCH_ONLY?.split(',').map((s) => s.trim()).filter(Boolean);
  const results = await runBench({ size }, only);
  const rows = Object.values(results.sections).flatMap((s) => s.rows);
  const { machine } = results;
  console.log(`\n${size} run, ${results.startedAt}: ${machine.cores} × ${machine.cpus}, ${machine.memoryGb} GB, Node ${machine.node}\n`);
  console.log(markdownTable(rows));
  const out = process.env.BENCH_RESULTS ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'results.json');
  await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\nwritten to ${out}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().then(
    () => process.exit(0),
    (err: Error) => {
      console.error(err);
      process.exit(1);
    },
  );
}
