/**
 * The health monitor's cost: one run over a fleet of active instances (full 10,000) whose /health endpoints are stub
 * servers in a child process (so their CPU is not counted), the instances on a provider whose state costs an API
 * request (asked only at failures: none here), as on Railway. Measured in this process: the run's wall time and CPU,
 * and its Postgres statements (pg_stat_database's transactions). The anchor, in the same run: the same GET /health
 * requests with the same concurrency and nothing else, the part of a probe no monitor can avoid.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { mapLimited, monitor } from '../../src/jobs/fleet/monitor.ts';
import type { JobHandle } from '../../src/jobs/context.ts';
import { httpRequest } from '../../src/providers/http.ts';
import type { FleetData } from '../../src/queues/catalogue.ts';
import { startHarness } from '../../test/support/harness.ts';
import { median, sized, type BenchRow, type BenchSection } from '../lib/report.ts';

/** Stub runtimes: /health answers 200 on each of these ports. */
const STUB_PORTS = 8;
const STUB = `
const http = require('node:http');
const ports = [];
let listening = 0;
for (let i = 0; i < ${STUB_PORTS}; i++) {
  const server = http.createServer((req, res) => { res.setHeader('content-type', 'application/json'); res.end('{"status":"ok"}'); });
  server.listen(0, '127.0.0.1', () => { ports.push(server.address().port); if (++listening === ${STUB_PORTS}) console.log(ports.join(',')); });
}`;

const monitorCost: BenchSection = async (options) => {
  const instances = sized('MONITOR_INSTANCES', options, { smoke: 200, full: 10_000 });
  const runs = options.size === 'full' ? 3 : 1;
  const stub = spawn(process.execPath, ['-e', STUB], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(stub.stdout!, 'data')) as [Buffer];
  const ports = line.toString().trim().split(',').map(Number);
  const h = await startHarness({ LOG_LEVEL: 'error', MONITOR_CONCURRENCY: '50' }, { webOnly: true });
  try {
    await h.db.query(
      `WITH c AS (
         INSERT INTO customers (stripe_customer_id, email, name)
         SELECT 'cus_bench' || i, 'bench' || i || '@example.com', 'Bench ' || i FROM generate_series(1, $1::int) i RETURNING id, stripe_customer_id),
       s AS (
         INSERT INTO subscriptions (customer_id, stripe_subscription_id, price_id, plan, status, comped)
         SELECT id, 'sub_' || stripe_customer_id, 'price_bench', 'starter', 'active', false FROM c RETURNING id, customer_id)
       INSERT INTO instances (subscription_id, customer_id, workspace_id, plan, status, compute_provider, database_provider, service_id, access_url)
       SELECT s.id, s.customer_id, 'ws-bench-' || row_number() OVER (), 'starter', 'active', 'railway', 'neon', gen_random_uuid()::text,
              'http://127.0.0.1:' || ($2::int[])[1 + (row_number() OVER ())::int % ${STUB_PORTS}]
       FROM s`,
      [instances, ports],
    );
    const job = { id: 'bench-monitor', name: 'monitor', data: {}, queueName: 'fleet' } as unknown as JobHandle<FleetData>;
    const transactions = async () => {
      await new Promise((r) => setTimeout(r, 1_200)); // backends report their statistics within a second of idling
      const { rows } = await h.db.query<{ n: string }>('SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()');
      return Number(rows[0]!.n);
    };
    const measure = async (fn: () => Promise<unknown>) => {
      const cpu = process.cpuUsage();
      const started = performance.now();
      await fn();
      const ms = performance.now() - started;
      const used = process.cpuUsage(cpu);
      return { ms, cpuMs: (used.user + used.system) / 1000 };
    };
    const bare = () =>
      mapLimited(Array.from({ length: instances }, (_, i) => i), 50, async (i) => {
        const answer = await httpRequest(new URL(`http://127.0.0.1:${ports[i % STUB_PORTS]}/health`), { noKeepAlive: true, signal: AbortSignal.timeout(5_000) });
        if (answer.status !== 200) throw new Error(`stub answered ${answer.status}`);
      });

    await monitor(h.plane.ctx, job); // warm: modules, connections, the first records written
    await bare();
    const product: { ms: number; cpuMs: number }[] = [];
    const anchor: { ms: number; cpuMs: number }[] = [];
    let statements = 0;
    for (let run = 0; run < runs; run++) {
      anchor.push(await measure(bare));
      const before = await transactions();
      let report: Awaited<ReturnType<typeof monitor>> | undefined;
      product.push(await measure(async () => (report = await monitor(h.plane.ctx, job))));
      // Less this query itself and the one before it (two transactions of the measuring connection).
      statements = (await transactions()) - before - 1;
      if (report!.healthy !== instances) throw new Error(`the monitor saw ${report!.healthy} of ${instances} healthy`);
    }
    const per1000 = (n: number) => (n / instances) * 1000;
    const ms = median(product.map((p) => p.ms));
    const rows: BenchRow[] = [
      {
        figure: `monitor run, ${instances} healthy instances: worker CPU per 1,000 instances`,
        anchor: 'the same GET /health requests alone',
        anchorValue: per1000(median(anchor.map((a) => a.cpuMs))),
        value: per1000(median(product.map((p) => p.cpuMs))),
        unit: 'ms',
        better: 'lower',
        goal: 'reported (no goal set)',
        met: true,
        note: `median of ${runs}; concurrency 50`,
      },
      {
        figure: `monitor run, ${instances} healthy instances: Postgres statements per 1,000 instances`,
        anchor: null,
        anchorValue: null,
        value: per1000(statements),
        unit: 'queries',
        better: 'lower',
        goal: 'reported (no goal set)',
        met: true,
        note: `a page of 500 is read in one query and written in one`,
      },
      {
        figure: `instances one worker can watch per minute (${instances} in one run)`,
        anchor: 'the same GET /health requests alone',
        anchorValue: (instances / median(anchor.map((a) => a.ms))) * 60_000,
        value: (instances / ms) * 60_000,
        unit: 'instances/min',
        better: 'higher',
        goal: '≥ 10,000 in one interval (1 min)',
        met: (instances / ms) * 60_000 >= 10_000,
        note: `run took ${(ms / 1000).toFixed(1)} s`,
      },
    ];
    return rows;
  } finally {
    await h.close();
    stub.kill();
  }
};

export default monitorCost;
