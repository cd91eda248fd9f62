/**
 * The anchor of the webhook intake bench: the least a signed Stripe intake can do. A bare Koa app with one POST route
 * that reads the raw body (1 MB limit), verifies the Stripe signature with the stripe library (300 s tolerance, as
 * the product), adds one BullMQ job whose id is the event id, and answers 200. Nothing else: no database, no logging,
 * no other middleware.
 *
 * Run as a child process: `node --import tsx bench/anchors/bareIntake.ts '{"secret":…,"prefix":…,"redisUrl":…}'`.
 * It prints `bare intake listening on <port>` once it listens, and closes its server and queue on SIGTERM.
 * `startBareIntake` does that and returns its URL and a stop().
 */
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import Router from '@koa/router';
import { Queue } from 'bullmq';
import Koa from 'koa';
import Stripe from 'stripe';
import { startChild } from '../lib/child.ts';

export interface BareIntakeOptions {
  /** The webhook signing secret (whsec_…). */
  secret: string;
  /** The BullMQ prefix its queue lives under; the caller deletes its keys. */
  prefix: string;
  redisUrl: string;
}

const BODY_LIMIT = 1024 * 1024;
const TOLERANCE_SECONDS = 300;

/** Starts the anchor in its own process; stop() ends it. */
export async function startBareIntake(options: BareIntakeOptions, nodeArgs: string[] = []) {
  const child = await startChild(fileURLToPath(import.meta.url), {
    args: [JSON.stringify(options)],
    nodeArgs,
    ready: /bare intake listening on (\d+)/,
  });
  return { url: `http://127.0.0.1:${child.ready[1]}`, stop: () => child.stop(), output: child.output };
}

async function serve(options: BareIntakeOptions): Promise<void> {
  const redis = new URL(options.redisUrl);
  const queue = new Queue('stripe-events', {
    connection: { host: redis.hostname, port: Number(redis.port || 6379), maxRetriesPerRequest: null },
    prefix: options.prefix,
  });

  const router = new Router();
  router.post('/webhooks/stripe', async (ctx) => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of ctx.req) {
      size += (chunk as Buffer).length;
      if (size > BODY_LIMIT) {
        ctx.status = 413;
        ctx.body = { error: 'payload_too_large' };
        return;
      }
      chunks.push(chunk as Buffer);
    }
    let event: Stripe.Event;
    try {
      event = Stripe.webhooks.constructEvent(Buffer.concat(chunks), ctx.get('stripe-signature'), options.secret, TOLERANCE_SECONDS);
    } catch {
      ctx.status = 400;
      ctx.body = { error: 'invalid_signature' };
      return;
    }
    await queue.add(event.type, { eventId: event.id }, { jobId: event.id });
    ctx.body = { received: true };
  });

  const app = new Koa();
  app.use(router.routes());
  const server = app.listen(0, '127.0.0.1', () => {
    process.stdout.write(`bare intake listening on ${(server.address() as AddressInfo).port}\n`);
  });
  process.once('SIGTERM', () => {
    server.close();
    server.closeAllConnections();
    void queue.close().then(() => process.exit(0));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  serve(JSON.parse(process.argv[2] ?? '{}') as BareIntakeOptions).catch((err: Error) => {
    console.error(err.message);
    process.exit(1);
  });
}
