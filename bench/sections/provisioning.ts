/**
 * Provisioning at scale, through the cloud emulators (Railway and Neon stand-ins answering at once, deployments that
 * take a set time, a stand-in runtime that costs no process), signed checkout webhooks in, `active` out. The web
 * side runs in this process; the workers run in a child process of their own, compiled as the image runs them
 * (`npm run build`, then `node dist/src/bin/worker.js`; production defaults but WORKER_CONCURRENCY), whose CPU and
 * memory are read from /proc.
 *
 * Scenarios, each on a fresh control plane:
 * - one provision with a set deployment time (full 20 s, twice: the median), against that time (the critical path);
 * - many at once with the same deployment time (full 1,000, 20 worker slots): the makespan against the critical path,
 *   the worker's peak RSS, and the provider API calls per provision (constant in the number of customers?);
 * - many at once with deployments of 0 s (full 500): provisions per second and worker CPU per provision, against bare
 *   BullMQ flows of the same 7-job tree (bench/anchors/bareFlows.ts) in the same run;
 * - one provision with set provider latencies (Neon operations, a deployment): the overhead over their sum.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { admin } from '../../test/support/controlDb.ts';
import { startHarness, type Harness } from '../../test/support/harness.ts';
import { median, sized, type BenchOptions, type BenchRow, type BenchSection } from '../lib/report.ts';

const WORKER_SLOTS = 20;
/** Neon operations needed one after another before the database is ready: branch, role, database. */
const SEQUENTIAL_NEON_OPERATIONS = 3;

interface Plane {
  h: Harness;
  worker: ChildProcess;
  close(): Promise<void>;
}

/**
 * Neon runs one operation at a time per project and a project holds 20 active computes, so a fleet is spread over
 * a project per 20 customers (NEON_PROJECT_IDS), as docs/cloud-providers.md says to configure it.
 */
const neonProjectsFor = (customers: number) => Math.max(1, Math.ceil(customers / 20));

/**
 * A control plane whose workers run in a child process. With `customers` above one (the scenarios of many sign-ups
 * at once) every Neon branch opens one shared stand-in database instead of a real database each: making a thousand
 * real databases would measure the Postgres server's CREATE DATABASE, not the orchestration.
 */
async function startPlane(deployMs: number, operationMs: number, customers = 1): Promise<Plane> {
  const sharedDatabase = customers > 1 ? `bench_shared_${randomBytes(4).toString('hex')}` : undefined;
  if (sharedDatabase) await admin(`CREATE DATABASE ${sharedDatabase}`);
  const h = await startHarness(
    {
      LOG_LEVEL: 'error',
      WORKER_CONCURRENCY: String(WORKER_SLOTS),
      // The production defaults, not the tests' quick ones.
      JOB_BACKOFF: '1s',
      JOB_ATTEMPTS: '5',
      HEALTH_CHECK_TIMEOUT: '120s',
      HEALTH_CHECK_INTERVAL: '250ms',
      HEALTH_CHECK_MAX_INTERVAL: '5s',
    },
    { webOnly: true, cloud: { railway: { deployMs, stubRuntime: true, builds: {}, runtime: undefined }, neon: { operationMs, sharedDatabase }, neonProjects: neonProjectsFor(customers) } },
  );
  // The worker as the image runs it: compiled, started by node itself. BENCH_PROFILE=<dir>: it writes a CPU profile
  // and its round trips (bench/lib/roundTrips.ts, through tsx) there.
  const profile = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`, '--import', 'tsx', '--import', './bench/lib/roundTrips.ts'] : [];
  const worker = spawn(process.execPath, [...profile, COMPILED_WORKER], {
    env: { ...process.env, ...h.env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await workersReady(h);
  const plane = {
    h,
    worker,
    async close() {
      worker.kill('SIGTERM');
      await new Promise((resolve) => worker.once('exit', resolve));
      await h.close();
      if (sharedDatabase) await admin(`DROP DATABASE IF EXISTS ${sharedDatabase} WITH (FORCE)`);
    },
  };
  // A control plane that has provisioned before (three customers, one after another): it polls by what its
  // deployments took, and its connections and modules are warm.
  for (let i = 0; i < 3; i++) await signUpAll(plane, 1, `history${i}`);
  return plane;
}

/** The worker's entry point in what `npm run build` compiles (run once by the section, before any plane starts). */
const COMPILED_WORKER = 'dist/src/bin/worker.js';

async function build(): Promise<void> {
  const child = spawn('npm', ['run', 'build'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const code = await new Promise((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`npm run build exited ${code}`);
}

/** Until the worker process listens on every queue (its start-up stays out of the figures). */
async function workersReady(h: Harness): Promise<void> {
  const queues = h.plane.ctx.queues.all();
  while ((await Promise.all(queues.map((q) => q.getWorkersCount()))).some((n) => n === 0)) await new Promise((r) => setTimeout(r, 50));
}

/** utime + stime of a process, in ms. */
function cpuMsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // USER_HZ is 100 on Linux
}

function rssMbOf(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

/** Signs up `count` customers at once (signed checkout webhooks, 50 in flight) and waits until all are active. */
async function signUpAll(plane: Plane, count: number, tag: string, onTick?: () => void): Promise<number> {
  const { h } = plane;
  const events = Array.from({ length: count }, (_, i) => h.checkout({ email: `bench-${tag}-${i}@example.com` }).event);
  const activeBefore = await activeCount(h);
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(50, count) }, async () => {
      while (next < count) {
        const response = await h.deliver(events[next++]!);
        if (response.status !== 200) throw new Error(`webhook answered ${response.status}: ${await response.text()}`);
      }
    }),
  );
  for (;;) {
    const { rows } = await h.db.query(`SELECT failed_step, failure_reason FROM instances WHERE status = 'failed' LIMIT 1`);
    if (rows[0]) throw new Error(`a provision failed: ${JSON.stringify(rows[0])}`);
    if (plane.worker.exitCode !== null) throw new Error(`the worker process exited (${plane.worker.exitCode})`);
    onTick?.();
    if ((await activeCount(h)) >= activeBefore + count) return performance.now() - started;
    await new Promise((r) => setTimeout(r, count === 1 ? 10 : 100));
  }
}

async function activeCount(h: Harness): Promise<number> {
  const { rows } = await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM instances WHERE status = 'active'`);
  return rows[0]!.n;
}

async function runBareFlows(flows: number): Promise<{ ms: number; cpuMs: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/anchors/bareFlows.ts'], {
    env: { ...process.env, BARE_FLOWS: String(flows), BARE_CONCURRENCY: String(WORKER_SLOTS) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout!.on('data', (chunk) => (out += chunk));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`bare flows anchor exited ${code}`);
  return JSON.parse(out.trim().split('\n').pop()!);
}

function callsOf(plane: Plane): { railway: number; neon: number } {
  return { railway: plane.h.railway!.calls.length, neon: plane.h.neon!.calls.length };
}

const provisioning: BenchSection = async (options: BenchOptions) => {
  const deployMs = sized('DEPLOY_MS', options, { smoke: 1_000, full: 20_000 });
  const many = sized('PROVISIONS', options, { smoke: 20, full: 1_000 });
  const burst = sized('THROUGHPUT_PROVISIONS', options, { smoke: 20, full: 500 });
  const runs = options.size === 'full' ? 2 : 1;
  const instantOpMs = 0;
  const rows: BenchRow[] = [];

  await build();
  // One provision alone, on a control plane that has provisioned before (it polls by what deployments took).
  const single: number[] = [];
  let perProvisionOne = { railway: 0, neon: 0 };
  const warm = await startPlane(deployMs, instantOpMs);
  try {
    for (let run = 0; run < runs; run++) {
      const before = callsOf(warm);
      single.push(await signUpAll(warm, 1, `one${run}`));
      const after = callsOf(warm);
      perProvisionOne = { railway: after.railway - before.railway, neon: after.neon - before.neon };
    }
  } finally {
    await warm.close();
  }
  const one = median(single);
  rows.push({
    figure: `one provision to active, ${deployMs / 1000} s deployment`,
    anchor: 'the deployment time (critical path)',
    anchorValue: deployMs,
    value: one,
    unit: 'ms',
    better: 'lower',
    goal: `≤ critical path + 300 ms`,
    met: one <= deployMs + 300,
    note: `median of ${runs}`,
  });

  const plane = await startPlane(deployMs, instantOpMs, many);
  let peakRss = 0;
  let makespan: number;
  let perProvisionMany: { railway: number; neon: number };
  try {
    const before = callsOf(plane);
    makespan = await signUpAll(plane, many, 'many', () => (peakRss = Math.max(peakRss, rssMbOf(plane.worker.pid!))));
    const after = callsOf(plane);
    perProvisionMany = { railway: (after.railway - before.railway) / many, neon: (after.neon - before.neon) / many };
  } finally {
    await plane.close();
  }
  rows.push(
    {
      figure: `${many} provisions at once, ${deployMs / 1000} s deployment, ${WORKER_SLOTS} worker slots: makespan`,
      anchor: 'the critical path of one',
      anchorValue: deployMs,
      value: makespan,
      unit: 'ms',
      better: 'lower',
      goal: '≤ 1.5× anchor',
      met: makespan <= 1.5 * deployMs,
      note: `${(makespan / one).toFixed(2)}× one provision alone`,
    },
    {
      figure: `worker RSS, ${many} provisions in flight (peak)`,
      anchor: null,
      anchorValue: null,
      value: peakRss,
      unit: 'MB',
      better: 'lower',
      goal: '≤ 200 MB',
      met: peakRss <= 200,
    },
    {
      figure: `Railway calls per provision, ${many} at once`,
      anchor: 'one provision alone',
      anchorValue: perProvisionOne.railway,
      value: perProvisionMany.railway,
      unit: 'calls',
      better: 'lower',
      goal: '≤ 10, constant',
      met: perProvisionMany.railway <= 10 && perProvisionMany.railway <= perProvisionOne.railway + 0.5,
    },
    {
      figure: `Neon calls per provision, ${many} at once`,
      anchor: 'one provision alone',
      anchorValue: perProvisionOne.neon,
      value: perProvisionMany.neon,
      unit: 'calls',
      better: 'lower',
      goal: 'constant',
      met: perProvisionMany.neon <= perProvisionOne.neon + 0.5,
    },
  );

  // Throughput and CPU with deployments of 0 s, against bare flows of the same tree.
  const bare: { ms: number; cpuMs: number }[] = [];
  const product: { ms: number; cpuMs: number }[] = [];
  for (let run = 0; run < runs; run++) {
    bare.push(await runBareFlows(burst));
    const fast = await startPlane(0, instantOpMs, burst);
    try {
      const cpuBefore = cpuMsOf(fast.worker.pid!);
      const ms = await signUpAll(fast, burst, 'burst');
      product.push({ ms, cpuMs: cpuMsOf(fast.worker.pid!) - cpuBefore });
    } finally {
      await fast.close();
    }
  }
  const bareRate = median(bare.map((b) => burst / (b.ms / 1000)));
  const rate = median(product.map((p) => burst / (p.ms / 1000)));
  const bareCpu = median(bare.map((b) => b.cpuMs / burst));
  const cpu = median(product.map((p) => p.cpuMs / burst));
  rows.push(
    {
      figure: `orchestration throughput, ${burst} at once, 0 s deployments`,
      anchor: 'bare BullMQ flows, same 7-job tree',
      anchorValue: bareRate,
      value: rate,
      unit: 'provisions/s',
      better: 'higher',
      goal: '≥ 0.25× anchor',
      met: rate >= 0.25 * bareRate,
    },
    {
      figure: 'worker CPU per provision',
      anchor: 'bare BullMQ flow',
      anchorValue: bareCpu,
      value: cpu,
      unit: 'ms',
      better: 'lower',
      goal: '≤ 7 ms',
      met: cpu <= 7,
    },
  );

  // Time to ready with set provider latencies: the overhead over what the providers take one after another.
  const latencyDeployMs = sized('LATENCY_DEPLOY_MS', options, { smoke: 1_000, full: 5_000 });
  const operationMs = sized('NEON_OPERATION_MS', options, { smoke: 200, full: 500 });
  const critical = latencyDeployMs + SEQUENTIAL_NEON_OPERATIONS * operationMs;
  const timed: number[] = [];
  for (let run = 0; run < runs; run++) {
    const slow = await startPlane(latencyDeployMs, operationMs);
    try {
      timed.push(await signUpAll(slow, 1, `latency${run}`));
    } finally {
      await slow.close();
    }
  }
  const ready = median(timed);
  rows.push({
    figure: `time-to-ready overhead, ${latencyDeployMs / 1000} s deployment, Neon operations of ${operationMs} ms`,
    anchor: `the providers' own time (${SEQUENTIAL_NEON_OPERATIONS} operations + deployment)`,
    anchorValue: critical,
    value: ready,
    unit: 'ms',
    better: 'lower',
    goal: '≤ anchor + 300 ms',
    met: ready <= critical + 300,
    note: `overhead ${(ready - critical).toFixed(0)} ms`,
  });
  return rows;
};

export default provisioning;
