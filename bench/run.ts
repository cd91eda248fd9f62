/**
 * Benchmarks, each printed as a ratio against a baseline measured in the same process on the same machine:
 *
 * 1. Waiting holds no slot: N provisions at once with WORKER_CONCURRENCY=2, against one provision alone. Each
 *    instance is a stub server that becomes healthy 2 s after it starts (like a slow deployment, but costing no CPU,
 *    so the machine's two cores do not blur the result). If waiting held a slot, N provisions would take about N/2
 *    times as long as one; since it does not, they take about as long as one.
 * 2. Webhook intake: signed Stripe deliveries (verify, record, enqueue, answer) against GET /health on the same
 *    server, so the ratio is the cost of intake over a bare round trip.
 *
 * Run with `npm run bench` (Redis and Postgres on localhost, like the tests). BENCH_PROVISIONS sets N (default 12).
 */
import { performance } from 'node:perf_hooks';
import { startHarness, type Harness } from '../test/support/harness.ts';

const N = Number(process.env.BENCH_PROVISIONS ?? 12);
const WEBHOOKS = 300;
/** A server that answers 200 on every path, 2 s after it starts (no spaces: RUNTIME_ARGS is split on them). */
const SLOW_STUB = "setTimeout(()=>require('http').createServer((q,s)=>s.end('ok')).listen(process.env.PORT,'127.0.0.1'),2000)";

async function provisionAll(h: Harness, count: number, tag: string): Promise<number> {
  const started = performance.now();
  const customers = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const response = await h.admin('/api/admin/provision', {
        method: 'POST',
        body: JSON.stringify({ email: `bench-${tag}-${i}@example.com`, plan: 'starter' }),
      });
      return ((await response.json()) as { customerId: string }).customerId;
    }),
  );
  await Promise.all(customers.map((id) => h.waitForStatus(id, ['active'], 120_000)));
  return performance.now() - started;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function timeRequests(count: number, request: (i: number) => Promise<Response>): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    const response = await request(i);
    await response.arrayBuffer();
    if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
    times.push(performance.now() - t);
  }
  return times.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  const h = await startHarness({
    WORKER_CONCURRENCY: '2',
    LOG_LEVEL: 'warn',
    RUNTIME_ARGS: `-e ${SLOW_STUB}`,
  });
  try {
    await provisionAll(h, 1, 'warmup'); // first-use costs (connections, module loading) stay out of the baseline
    const rssBefore = process.memoryUsage().rss;
    const one = await provisionAll(h, 1, 'baseline');
    const many = await provisionAll(h, N, 'load');
    const rssAfter = process.memoryUsage().rss;

    const customer = h.stripe.createCustomer({ email: 'bench-hooks@example.com' });
    const health = await timeRequests(WEBHOOKS, () => fetch(`${h.url}/health`));
    // An event type that is recorded and acknowledged but starts nothing, so only intake is measured.
    const hooks = await timeRequests(WEBHOOKS, () => h.deliver(h.stripe.event('customer.updated', customer)));

    const rows: [string, string, string, string][] = [
      ['provisions to active', `1: ${one.toFixed(0)} ms`, `${N}: ${many.toFixed(0)} ms`, `${(many / one).toFixed(2)}x (slot-holding would be ~${(N / 2).toFixed(1)}x)`],
      ['webhook intake p50', `health ${percentile(health, 50).toFixed(2)} ms`, `webhook ${percentile(hooks, 50).toFixed(2)} ms`, `${(percentile(hooks, 50) / percentile(health, 50)).toFixed(2)}x`],
      ['webhook intake p99', `health ${percentile(health, 99).toFixed(2)} ms`, `webhook ${percentile(hooks, 99).toFixed(2)} ms`, `${(percentile(hooks, 99) / percentile(health, 99)).toFixed(2)}x`],
      ['control-plane RSS', `${(rssBefore / 2 ** 20).toFixed(0)} MB`, `${(rssAfter / 2 ** 20).toFixed(0)} MB`, `${(rssAfter / rssBefore).toFixed(2)}x after ${N + 1} more provisions`],
    ];
    console.log(['benchmark', 'baseline', 'measured', 'ratio'].join(' | '));
    for (const row of rows) console.log(row.join(' | '));
  } finally {
    await h.close();
  }
}

await main();
