/**
 * Neon provisioning: what one provision costs in Neon requests and create-branch runs, alone and with many sign-ups
 * at once, and what a run costs in time. Against the Neon emulator (operations take OPERATION_MS; roles and databases
 * are real on the local Postgres) with placements and turns in a control-plane database of its own, driving
 * ensureDatabase as the create-branch step does (a run, then its retryInMs, then the next run).
 *
 * Anchors, measured in the same run: requests and runs of N sign-ups at once against those of one alone (flat is the
 * goal: constant in the number of customers); a run's time against one bare GET round trip to the emulator; the time
 * to ready against the two operations a provision must wait for back to back.
 */
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { PgNeonPlacements } from '../../src/db/neonPlacements.ts';
import { NeonDatabaseProvider } from '../../src/providers/database/neon.ts';
import { startNeonEmulator } from '../../test/emulators/neonEmulator.ts';
import { controlDb } from '../../test/support/controlDb.ts';
import { median, sized, type BenchOptions, type BenchRow, type BenchSection } from '../lib/report.ts';

const OPERATION_MS = 150;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Measured {
  requests: number;
  runs: number;
  /** Per run: its time, and the part of it spent waiting for Neon's answers. */
  runMs: number[];
  answerMs: number;
  readyMs: number[];
}

const section: BenchSection = async (options: BenchOptions): Promise<BenchRow[]> => {
  const signups = sized('NEON_SIGNUPS', options, { smoke: 4, full: 100 });
  const emulator = await startNeonEmulator({ prefix: `nbench${randomBytes(3).toString('hex')}`, operationMs: OPERATION_MS });
  const control = await controlDb('nbench_cp');
  try {
    const projectIds = [(await emulator.createProject()).projectId, (await emulator.createProject()).projectId];
    const provider = new NeonDatabaseProvider(
      { apiUrl: emulator.url, apiKey: emulator.apiKey, projectIds, branchLimit: 5_000 },
      new PgNeonPlacements(control.db),
    );

    const provisionAll = async (count: number): Promise<Measured> => {
      const before = emulator.calls.length;
      const answeredBefore = provider.apiMs;
      const runMs: number[] = [];
      const readyMs: number[] = [];
      let runs = 0;
      await Promise.all(
        Array.from({ length: count }, async () => {
          const name = `claw_${randomBytes(8).toString('hex')}`;
          const started = performance.now();
          let progress;
          for (;;) {
            const t = performance.now();
            const result = await provider.ensureDatabase(name, progress);
            runMs.push(performance.now() - t);
            runs++;
            if ('ready' in result) break;
            progress = result.pending;
            await sleep(result.retryInMs);
          }
          readyMs.push(performance.now() - started);
        }),
      );
      return { requests: (emulator.calls.length - before) / count, runs: runs / count, runMs, answerMs: provider.apiMs - answeredBefore, readyMs };
    };

    await provisionAll(1); // warm-up: counts the projects, connects, learns how long operations take
    const one = await provisionAll(1);
    const many = await provisionAll(signups);

    // A bare round trip: one operation read, the cheapest request a run makes.
    const op = emulator.operations(projectIds[0]!)[0]!;
    const rtt: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t = performance.now();
      await fetch(`${emulator.url}/projects/${op.project_id}/operations/${op.id}`, { headers: { authorization: `Bearer ${emulator.apiKey}` } });
      rtt.push(performance.now() - t);
    }
    const roundTrip = median(rtt);
    const runMs = many.runMs.reduce((a, b) => a + b, 0) / many.runMs.length;
    // Our own part of a run: its time less the time Neon (here the emulator, creating real roles and databases) took
    // to answer. With many at once, runs overlap, so this is the mean over sequential runs of the single sign-up.
    const ownMs = (one.runMs.reduce((a, b) => a + b, 0) - one.answerMs) / one.runMs.length;
    const readyMs = median(many.readyMs);
    const note = `${signups} sign-ups at once over 2 projects, operations of ${OPERATION_MS} ms`;

    return [
      {
        figure: 'Neon requests per provision',
        anchor: 'one sign-up alone',
        anchorValue: one.requests,
        value: many.requests,
        unit: 'requests',
        better: 'lower',
        goal: '≤ 8 (7 + at most 1)',
        met: many.requests <= 8,
        note,
      },
      {
        figure: 'create-branch runs per provision',
        anchor: 'one sign-up alone',
        anchorValue: one.runs,
        value: many.runs,
        unit: 'runs',
        better: 'lower',
        goal: '≤ 2× anchor (waiting for a turn adds runs, not requests)',
        met: many.runs <= 2 * one.runs,
        note,
      },
      {
        figure: 'own time of a create-branch run in the provider (waiting for Neon excluded)',
        anchor: 'one bare GET to the emulator',
        anchorValue: roundTrip,
        value: ownMs,
        unit: 'ms',
        better: 'lower',
        goal: '≤ 10× anchor',
        met: ownMs <= 10 * roundTrip,
        note: `one sign-up alone; with Neon's answers a run takes ${runMs.toFixed(1)} ms on average (${signups} at once)`,
      },
      {
        figure: 'time to a ready database, one sign-up alone',
        anchor: 'its two operations back to back',
        anchorValue: 2 * OPERATION_MS,
        value: median(one.readyMs),
        unit: 'ms',
        better: 'lower',
        goal: '≤ 2.5× anchor',
        met: median(one.readyMs) <= 5 * OPERATION_MS,
        note: `median of ${signups} at once: ${Math.round(readyMs)} ms`,
      },
    ];
  } finally {
    await emulator.close();
    await control.drop();
  }
};

export default section;
