/**
 * The webhook load generator, run as its own process so its CPU is not the server's: `connections` keep-alive
 * connections (one http.Agent, maxSockets = connections), each sending one signed Stripe delivery after another —
 * every one a distinct event — for a warm-up, then for the measured window. Each event is signed just before it is
 * sent (stripe's generateTestHeaderString), so its timestamp is fresh.
 *
 * `runWebhookLoad` starts it and returns what it measured: the requests that completed in the window, req/s, and
 * their latency percentiles. Any answer but 200 fails the run (a bench of refusals would measure nothing).
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import Stripe from 'stripe';
import { percentile } from './report.ts';
import { startChild } from './child.ts';

export interface LoadOptions {
  /** The webhook URL. */
  url: string;
  secret: string;
  /** The event type of every delivery. */
  type: string;
  connections: number;
  warmupMs: number;
  durationMs: number;
}

export interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
}

export async function runWebhookLoad(options: LoadOptions): Promise<LoadResult> {
  const child = await startChild(fileURLToPath(import.meta.url), {
    args: [JSON.stringify(options)],
    ready: /^load (\{.*\})$|^load failed: (.*)$/m,
    timeoutMs: options.warmupMs + options.durationMs + 60_000,
  });
  await child.stop();
  if (child.ready[2]) throw new Error(`webhook load on ${options.url}: ${child.ready[2]}`);
  return JSON.parse(child.ready[1]!) as LoadResult;
}

/** A customer.updated-like object, about the size of a real one. */
function customer(n: number) {
  return {
    id: `cus_bench${n % 1000}`, object: 'customer', address: null, balance: 0, created: 1_700_000_000, currency: null,
    default_source: null, delinquent: false, description: null, email: `bench-${n % 1000}@example.com`,
    invoice_prefix: 'BENCH001', invoice_settings: { custom_fields: null, default_payment_method: null, footer: null, rendering_options: null },
    livemode: false, metadata: {}, name: 'Bench Customer', next_invoice_sequence: 1, phone: null, preferred_locales: [],
    shipping: null, tax_exempt: 'none', test_clock: null,
  };
}

async function generate(options: LoadOptions): Promise<LoadResult> {
  const target = new URL(options.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.connections });
  const run = randomBytes(4).toString('hex');
  let sequence = 0;
  const start = performance.now();
  const measureFrom = start + options.warmupMs;
  const measureTo = measureFrom + options.durationMs;
  const latencies: number[] = [];
  let failure: string | undefined;

  const send = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const n = sequence++;
      const payload = JSON.stringify({
        id: `evt_bench${run}${n}`, object: 'event', api_version: '2025-01-27.acacia', created: Math.floor(Date.now() / 1000),
        data: { object: customer(n) }, livemode: false, pending_webhooks: 1, request: { id: null, idempotency_key: null }, type: options.type,
      });
      const body = Buffer.from(payload);
      const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret: options.secret });
      const sent = performance.now();
      const req = http.request(
        {
          agent, host: target.hostname, port: target.port, path: target.pathname, method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': body.length, 'stripe-signature': signature },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const done = performance.now();
            if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString('utf8').slice(0, 300)}`));
            if (done >= measureFrom && done <= measureTo) latencies.push(done - sent);
            resolve();
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  const connection = async () => {
    while (!failure && performance.now() < measureTo) {
      await send().catch((err: Error) => {
        failure ??= err.message;
      });
    }
  };
  await Promise.all(Array.from({ length: options.connections }, connection));
  agent.destroy();
  if (failure) throw new Error(failure);
  const seconds = options.durationMs / 1000;
  return {
    requests: latencies.length,
    seconds,
    rps: latencies.length / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  generate(JSON.parse(process.argv[2] ?? '{}') as LoadOptions).then(
    (result) => process.stdout.write(`load ${JSON.stringify(result)}\n`),
    (err: Error) => process.stdout.write(`load failed: ${err.message.replace(/\n/g, ' ')}\n`),
  );
}
