// Stands in for a Slack incoming webhook: POST a JSON message to the webhook URL, get 200 "ok" back,
// or Slack's plain-text error codes.
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Arrivals } from '../support/arrivals.ts';

export interface SlackPost {
  text?: string;
  blocks?: unknown[];
  [field: string]: unknown;
}

export interface SlackReceiver {
  readonly url: string;
  readonly posts: SlackPost[];
  /** Every POST to the webhook URL, accepted or not (for retry assertions). */
  readonly attempts: number;
  waitFor(predicate: (post: SlackPost) => boolean, timeoutMs?: number): Promise<SlackPost>;
  /** The next `n` posts answer `status` with Slack's error code for it (and the given headers, e.g. Retry-After). */
  failNext(n: number, status: number, headers?: OutgoingHttpHeaders): void;
  close(): Promise<void>;
}

const WEBHOOK_PATH = '/services/T000/B000/XXXX';
const ERROR_CODES: Record<number, string> = {
  400: 'invalid_payload', 403: 'action_prohibited', 404: 'no_service', 410: 'channel_is_archived', 429: 'rate_limited',
};

function parsePost(body: string): SlackPost | string {
  let post: unknown;
  try {
    post = JSON.parse(body);
  } catch {
    return 'invalid_payload';
  }
  if (typeof post !== 'object' || post === null || Array.isArray(post)) return 'invalid_payload';
  const { text, blocks } = post as SlackPost;
  const hasText = typeof text === 'string' && text.length > 0;
  if (!hasText && !(Array.isArray(blocks) && blocks.length > 0)) return 'no_text';
  return post as SlackPost;
}

export async function startSlackReceiver(): Promise<SlackReceiver> {
  const arrivals = new Arrivals<SlackPost>((posts) => JSON.stringify(posts.map((p) => p.text)));
  const posts = arrivals.items;
  let attempts = 0;
  let faults = { remaining: 0, status: 500, headers: {} as OutgoingHttpHeaders };

  const server = createServer((req, res) => void handle(req, res).catch(() => res.destroy()));
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const reply = (status: number, body: string, headers: OutgoingHttpHeaders = {}) =>
      res.writeHead(status, { 'Content-Type': 'text/html', ...headers }).end(body);

    if (req.method !== 'POST' || req.url !== WEBHOOK_PATH) return void reply(404, 'no_service');
    attempts++;
    if (faults.remaining > 0) {
      faults.remaining--;
      return void reply(faults.status, ERROR_CODES[faults.status] ?? 'internal_error', faults.headers);
    }
    const post = parsePost(Buffer.concat(chunks).toString());
    if (typeof post === 'string') return void reply(400, post);
    arrivals.add(post);
    reply(200, 'ok');
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}${WEBHOOK_PATH}`,
    posts,
    get attempts() {
      return attempts;
    },
    waitFor: (predicate, timeoutMs = 10_000) => arrivals.waitFor(predicate, timeoutMs),
    failNext(n, status, headers = {}) {
      faults = { remaining: n, status, headers };
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}
