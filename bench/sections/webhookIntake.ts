/**
 * Signed Stripe webhook intake under load: the product's web process (the real control plane, web role only, with
 * its own control-plane database and queue prefix) against the anchor, a bare Koa route that verifies the signature
 * and adds one BullMQ job (bench/anchors/bareIntake.ts). Each server runs in its own process and is driven by the
 * same load generator in a third one (bench/lib/webhookLoad.ts): 50 keep-alive connections sending signed deliveries
 * of distinct `customer.updated` events (recorded and acknowledged, starting nothing) for a fixed time after a
 * warm-up. Anchor and product alternate, twice; each figure is the median of its runs.
 *
 * Sizes: BENCH_INTAKE_SECONDS (window per run: smoke 1, full 10), BENCH_INTAKE_WARMUP_SECONDS (smoke 0.3, full 2),
 * BENCH_INTAKE_ROUNDS (2), BENCH_INTAKE_CONNECTIONS (50). BENCH_INTAKE_CPU_PROF=<dir> writes a CPU profile of each
 * server (node --cpu-prof) under <dir>/anchor and <dir>/product.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { quoteIdent } from '../../core/postgres.ts';
import { deleteKeys } from '../../test/support/harness.ts';
import { startBareIntake } from '../anchors/bareIntake.ts';
import { startChild, type BenchChild } from '../lib/child.ts';
import type { BenchOptions, BenchRow, BenchSection } from '../lib/report.ts';
import { sized } from '../lib/report.ts';
import { runWebhookLoad, type LoadResult } from '../lib/webhookLoad.ts';

const PG = 'postgres://postgres@127.0.0.1:5432';
const REDIS_URL = 'redis://127.0.0.1:6379';
const WEB = fileURLToPath(new URL('../../src/bin/web.ts', import.meta.url));
const ANCHOR = 'bare Koa route: verify signature + one BullMQ add';

/** The middle of the values (the mean of the middle two for an even count). */
function middle(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const half = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[half]! : (sorted[half - 1]! + sorted[half]!) / 2;
}

const webhookIntake: BenchSection = async (options: BenchOptions): Promise<BenchRow[]> => {
  const seconds = sized('INTAKE_SECONDS', options, { smoke: 1, full: 10 });
  const warmupSeconds = sized('INTAKE_WARMUP_SECONDS', options, { smoke: 0.3, full: 2 });
  const rounds = Math.round(sized('INTAKE_ROUNDS', options, { smoke: 2, full: 2 }));
  const connections = Math.round(sized('INTAKE_CONNECTIONS', options, { smoke: 50, full: 50 }));

  const profileDir = process.env.BENCH_INTAKE_CPU_PROF;
  const id = randomBytes(4).toString('hex');
  const secret = `whsec_bench${randomBytes(16).toString('hex')}`;
  const anchorPrefix = `{bench-anchor-${id}}`;
  const productPrefix = `{bench-intake-${id}}`;
  const database = `bench_intake_${id}`;
  const varDir = await mkdtemp(path.join(tmpdir(), 'clawdbot-bench-intake-'));
  let anchor: Awaited<ReturnType<typeof startBareIntake>> | undefined;
  let product: BenchChild | undefined;
  try {
    const profile = (which: string) => (profileDir ? ['--cpu-prof', `--cpu-prof-dir=${path.join(profileDir, which)}`] : []);
    anchor = await startBareIntake({ secret, prefix: anchorPrefix, redisUrl: REDIS_URL }, profile('anchor'));
    product = await startChild(WEB, {
      env: {
        PORT: '0',
        DATABASE_URL: `${PG}/${database}`,
        REDIS_URL,
        QUEUE_PREFIX: productPrefix,
        VAR_DIR: varDir,
        STRIPE_WEBHOOK_SECRET: secret,
        SECRETS_KEY: randomBytes(32).toString('base64'),
        ADMIN_PASSWORD: randomBytes(18).toString('base64url'),
        ADMIN_TOKEN: randomBytes(32).toString('base64url'),
        LOG_FORMAT: 'json',
      },
      nodeArgs: profile('product'),
      ready: /"url":"([^"]+)".*"message":"web listening"/,
    });
    const targets = { anchor: `${anchor.url}/webhooks/stripe`, product: `${product.ready[1]}/webhooks/stripe` };

    const runs: Record<keyof typeof targets, LoadResult[]> = { anchor: [], product: [] };
    for (let round = 0; round < rounds; round++) {
      for (const which of ['anchor', 'product'] as const) {
        runs[which].push(
          await runWebhookLoad({
            url: targets[which],
            secret,
            type: 'customer.updated',
            connections,
            warmupMs: warmupSeconds * 1000,
            durationMs: seconds * 1000,
          }),
        );
      }
    }

    const of = (which: keyof typeof targets, figure: keyof LoadResult) => middle(runs[which].map((r) => r[figure]));
    const note = `${connections} connections, ${seconds} s per run after ${warmupSeconds} s warm-up, ${rounds} alternating runs each, medians; ` +
      `runs: anchor ${runs.anchor.map((r) => r.rps.toFixed(0)).join('/')} req/s, product ${runs.product.map((r) => r.rps.toFixed(0)).join('/')} req/s`;
    const rps = { anchor: of('anchor', 'rps'), product: of('product', 'rps') };
    const p99 = { anchor: of('anchor', 'p99'), product: of('product', 'p99') };
    const p50 = { anchor: of('anchor', 'p50'), product: of('product', 'p50') };
    return [
      {
        figure: `signed webhook intake throughput, ${connections} connections`,
        anchor: ANCHOR, anchorValue: rps.anchor, value: rps.product, unit: 'req/s', better: 'higher',
        goal: '≥ 0.8× anchor', met: rps.product >= 0.8 * rps.anchor, note,
      },
      {
        figure: `signed webhook intake p99 latency, ${connections} connections`,
        anchor: ANCHOR, anchorValue: p99.anchor, value: p99.product, unit: 'ms', better: 'lower',
        goal: '≤ 1.25× anchor', met: p99.product <= 1.25 * p99.anchor,
      },
      {
        figure: `signed webhook intake p50 latency, ${connections} connections`,
        anchor: ANCHOR, anchorValue: p50.anchor, value: p50.product, unit: 'ms', better: 'lower',
        goal: 'none (reported beside p99)', met: true,
      },
    ];
  } finally {
    await Promise.all([anchor?.stop(), product?.stop()]);
    const admin = new pg.Client({ connectionString: `${PG}/postgres` });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
    await admin.end();
    const redis = new Redis(REDIS_URL);
    await deleteKeys(redis, `${anchorPrefix}:*`);
    await deleteKeys(redis, `${productPrefix}:*`);
    redis.disconnect();
    await rm(varDir, { recursive: true, force: true });
  }
};

export default webhookIntake;
