import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { createRuntimeDatabase, PG_SERVER } from '../support/runtimeDatabase.ts';
import Koa from 'koa';
import pg from 'pg';
import { HttpError } from '../../core/http/httpError.ts';
import { signTimed } from '../../core/timedSignature.ts';
import { loadRuntimeConfig } from '../../runtime/src/config.ts';
import type { RuntimeContext, TurnInput, TurnResult } from '../../runtime/src/context.ts';
import { ModelRefusedError, ModelUnavailableError } from '../../runtime/src/model.ts';
import { inboundWebhookRoutes } from '../../runtime/src/webhooks/inbound.ts';
import { WebhookProcessor, type WebhookProcessorOptions } from '../../runtime/src/webhooks/processor.ts';
import { webhookSourceRoutes } from '../../runtime/src/webhooks/sources.ts';
import { webhookStats } from '../../runtime/src/webhooks/stats.ts';
import { dailyLogPath, WorkspaceStore } from '../../runtime/src/workspace.ts';

const FAST: WebhookProcessorOptions = { pollMs: 200, backoffMs: 40, maxBackoffMs: 160 };

/** A stand-in for the model turn: records every call; per delivery, a queue of behaviours (default: a reply). */
class FakeTurns {
  readonly calls: TurnInput[] = [];
  private readonly plans = new Map<string, Array<(input: TurnInput) => Promise<TurnResult>>>();
  delayMs = 0;

  plan(deliveryId: string, ...behaviours: Array<(input: TurnInput) => Promise<TurnResult>>): void {
    this.plans.set(deliveryId, behaviours);
  }

  callsFor(deliveryId: string): TurnInput[] {
    return this.calls.filter((call) => deliveryIdIn(call.message) === deliveryId);
  }

  readonly run = async (input: TurnInput): Promise<TurnResult> => {
    this.calls.push(input);
    if (this.delayMs) await sleep(this.delayMs);
    const next = this.plans.get(deliveryIdIn(input.message) ?? '')?.shift();
    if (next) return next(input);
    return { reply: `handled ${deliveryIdIn(input.message)}`, conversationId: randomUUID(), usage: { inputTokens: 10, outputTokens: 5 }, citations: [] };
  };
}

function deliveryIdIn(message: string): string | undefined {
  return /\(delivery (\S+),/.exec(message)?.[1];
}

const fails = (error: Error) => async (): Promise<TurnResult> => {
  throw error;
};
const unavailable = () => fails(new ModelUnavailableError('model unavailable'));
const limitReached = (reason: string) => fails(new HttpError(429, 'message_limit_reached', reason));

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 4_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting for a condition');
    await sleep(20);
  }
}

/** Our own scheme: the time, the delivery id of the X-Delivery-Id header (none when the body carries it) and the body. */
function sign(secret: string, body: string, deliveryIdHeader = '', timestamp?: number): string {
  return signTimed(secret, `${deliveryIdHeader}.${body}`, timestamp);
}

/** GitHub's scheme (X-Hub-Signature-256): the body alone. */
function githubSign(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

describe('runtime webhooks', function () {
  const admin = new pg.Pool({ connectionString: `${PG_SERVER}/postgres`, max: 2 });
  admin.on('error', () => undefined);
  const dbName = `rt_hook_${randomBytes(6).toString('hex')}`;
  const dbUrl = `${PG_SERVER}/${dbName}`;
  let db: pg.Pool;
  let dir: string;
  let workspace: WorkspaceStore;
  let turns: FakeTurns;
  let ctx: RuntimeContext;
  let processor: WebhookProcessor;
  let server: Server;
  let base: string;
  let github: { secret: string };
  let alerts: { secret: string };
  const extraProcessors: WebhookProcessor[] = [];

  async function api(method: string, url: string, body?: unknown): Promise<{ status: number; json: any; text: string }> {
    const res = await fetch(base + url, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined, text };
  }

  async function deliver(
    source: string,
    body: string,
    headers: Record<string, string> = {},
    query = '',
  ): Promise<{ status: number; json: any; text: string }> {
    const res = await fetch(`${base}/webhook/${source}${query}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body,
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined, text };
  }

  /** A delivery to `github` signed with its secret. */
  function deliverGithub(deliveryId: string, payload: unknown = { action: 'opened', number: 7, delivery: deliveryId }) {
    const body = JSON.stringify(payload);
    return deliver('github', body, { 'x-clawdbot-signature': sign(github.secret, body, deliveryId), 'x-delivery-id': deliveryId });
  }

  async function delivery(deliveryId: string) {
    const { rows } = await db.query('SELECT * FROM webhook_deliveries WHERE delivery_id = $1', [deliveryId]);
    return rows[0];
  }

  async function deliveryCount(): Promise<number> {
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM webhook_deliveries');
    return rows[0]!.n;
  }

  const settled = (deliveryId: string) => async () => ['processed', 'failed'].includes((await delivery(deliveryId))?.status);

  before(async () => {
    ({ pool: db } = await createRuntimeDatabase(dbName, 10));
    dir = await mkdtemp(path.join(tmpdir(), 'rt-hook-'));
    workspace = await WorkspaceStore.load(db, dir);
    const config = loadRuntimeConfig({ DATABASE_URL: dbUrl, WORKSPACE_ID: 'ws_hook', PLAN: 'pro', MESSAGE_LIMIT: '1000' });
    turns = new FakeTurns();
    ctx = { db, config, workspace, runTurn: turns.run };
    processor = new WebhookProcessor(ctx, FAST);

    const app = new Koa();
    app.use(async (koa, next) => {
      try {
        await next();
      } catch (err) {
        if (err instanceof HttpError) return err.respond(koa);
        koa.status = 500;
        koa.body = { error: 'internal_error', reason: (err as Error).message };
      }
    });
    const sources = webhookSourceRoutes(ctx);
    const inbound = inboundWebhookRoutes(ctx, processor);
    app.use(inbound.routes()).use(inbound.allowedMethods()).use(sources.routes()).use(sources.allowedMethods());
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    processor.start();
  });

  after(async () => {
    await Promise.all([processor, ...extraProcessors].map((p) => p?.stop()));
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await db?.end();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('sources', () => {
    it('creates an hmac source, shows its secret once and stores it for signing', async () => {
      const created = await api('POST', '/api/webhooks', { source: 'github', scheme: 'hmac' });
      expect(created.status).to.equal(201);
      expect(created.json).to.include({ source: 'github', scheme: 'hmac', url: '/webhook/github', header: 'X-Clawdbot-Signature' });
      expect(created.json.secret).to.match(/^[0-9A-Za-z]{43}$/);
      github = { secret: created.json.secret };
      const { rows } = await db.query('SELECT scheme, secret FROM webhook_sources WHERE source = $1', ['github']);
      expect(rows[0]).to.deep.equal({ scheme: 'hmac', secret: github.secret });
    });

    it('creates a bearer source and stores only the SHA-256 of its token', async () => {
      const created = await api('POST', '/api/webhooks', { source: 'alerts', scheme: 'bearer' });
      expect(created.status).to.equal(201);
      expect(created.json).to.include({ source: 'alerts', scheme: 'bearer', url: '/webhook/alerts', header: 'Authorization' });
      alerts = { secret: created.json.secret };
      const { rows } = await db.query('SELECT secret FROM webhook_sources WHERE source = $1', ['alerts']);
      expect(rows[0].secret).to.equal(createHash('sha256').update(alerts.secret).digest('hex'));
      expect(rows[0].secret).not.to.include(alerts.secret);
    });

    it('lists sources without any secret', async () => {
      const listed = await api('GET', '/api/webhooks');
      expect(listed.status).to.equal(200);
      expect(listed.json.webhooks.map((w: { source: string }) => w.source)).to.deep.equal(['alerts', 'github']);
      for (const w of listed.json.webhooks) expect(w).not.to.have.property('secret');
      expect(listed.text).not.to.include(github.secret).and.not.to.include(alerts.secret);
    });

    it('refuses a duplicate, a bad name, a bad scheme and a non-JSON body', async () => {
      expect((await api('POST', '/api/webhooks', { source: 'github', scheme: 'bearer' })).status).to.equal(409);
      for (const body of [{ source: 'Bad Name', scheme: 'hmac' }, { source: '-x', scheme: 'hmac' }, { source: 'a'.repeat(41), scheme: 'hmac' }]) {
        const res = await api('POST', '/api/webhooks', body);
        expect(res.status).to.equal(400);
        expect(res.json.reason).to.include('source');
      }
      const scheme = await api('POST', '/api/webhooks', { source: 'ok', scheme: 'basic' });
      expect(scheme.status).to.equal(400);
      expect(scheme.json.reason).to.include('scheme');
      const res = await fetch(`${base}/api/webhooks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' });
      expect(res.status).to.equal(400);
    });

    it('rotates a secret (the old one stops working) and deletes a source', async () => {
      const made = await api('POST', '/api/webhooks', { source: 'custom_1', scheme: 'bearer' });
      const rotated = await api('POST', '/api/webhooks/custom_1/rotate');
      expect(rotated.status).to.equal(200);
      expect(rotated.json).to.include({ source: 'custom_1', scheme: 'bearer' });
      expect(rotated.json.secret).to.match(/^[0-9A-Za-z]{43}$/).and.not.equal(made.json.secret);
      const body = JSON.stringify({ id: 'rot-1' });
      expect((await deliver('custom_1', body, { authorization: `Bearer ${made.json.secret}` })).status).to.equal(401);
      expect((await deliver('custom_1', body, { authorization: `Bearer ${rotated.json.secret}` })).status).to.equal(202);
      await waitFor(settled('rot-1'));

      expect((await api('DELETE', '/api/webhooks/custom_1')).status).to.equal(204);
      expect((await api('DELETE', '/api/webhooks/custom_1')).status).to.equal(404);
      expect((await api('POST', '/api/webhooks/custom_1/rotate')).status).to.equal(404);
      expect((await deliver('custom_1', JSON.stringify({ id: 'rot-2' }), { authorization: `Bearer ${rotated.json.secret}` })).status).to.equal(401);
    });
  });

  describe('inbound deliveries', () => {
    it('accepts a signed delivery and hands it to the agent, recording the outcome in memory and the daily log', async () => {
      const id = `gh-${randomUUID()}`;
      const res = await deliverGithub(id, { action: 'opened', pull_request: { title: 'Fix the flux capacitor' } });
      expect(res.status).to.equal(202);
      expect(res.json).to.deep.equal({ accepted: true, duplicate: false, deliveryId: id });
      await waitFor(settled(id));

      const calls = turns.callsFor(id);
      expect(calls).to.have.length(1);
      expect(calls[0]!.source).to.equal('webhook:github');
      expect(calls[0]!.conversationId).to.equal(undefined);
      expect(calls[0]!.message).to.include('github').and.include('Fix the flux capacitor');

      const row = await delivery(id);
      expect(row).to.include({ source: 'github', status: 'processed', result: `handled ${id}`, error: null });
      expect(row.conversation_id).to.be.a('string');
      expect(row.processed_at).to.be.instanceOf(Date);
      expect(row.payload).to.deep.equal({ action: 'opened', pull_request: { title: 'Fix the flux capacitor' } });

      // The memory is written right after the outcome commits.
      const remembered = () => db.query('SELECT content, tags, source FROM memories WHERE content LIKE $1', [`%${id}%`]);
      const log = dailyLogPath(new Date());
      const onDisk = () => readFile(path.join(dir, log), 'utf8').catch(() => '');
      await waitFor(async () => (await remembered()).rows.length > 0 && (await onDisk()).includes(id));
      const memories = await remembered();
      expect(memories.rows).to.have.length(1);
      expect(memories.rows[0]).to.deep.include({ tags: ['webhook', 'github'], source: 'webhook:github' });
      expect(memories.rows[0].content).to.equal(`webhook github ${id}: handled ${id}`);

      expect(workspace.get(log)).to.include(`webhook github ${id}`);
      expect(await onDisk()).to.include(`webhook github ${id}`);
    });

    it('accepts GitHub\'s own headers and processes the same delivery id only once', async () => {
      const id = randomUUID();
      const body = JSON.stringify({ zen: 'Keep it logically awesome.' });
      const headers = { 'x-hub-signature-256': githubSign(github.secret, body), 'x-github-delivery': id };
      const first = await deliver('github', body, headers);
      const second = await deliver('github', body, headers);
      expect(first.json).to.deep.equal({ accepted: true, duplicate: false, deliveryId: id });
      expect(second.status).to.equal(202);
      expect(second.json).to.include({ accepted: true, duplicate: true });
      await waitFor(settled(id));
      const third = await deliver('github', body, headers); // after processing, still a duplicate
      expect(third.json.duplicate).to.equal(true);
      await sleep(100);
      expect(turns.callsFor(id)).to.have.length(1);
      const { rows } = await db.query('SELECT count(*)::int AS n FROM webhook_deliveries WHERE delivery_id = $1', [id]);
      expect(rows[0].n).to.equal(1);
    });

    it('takes the delivery id from a top-level "id" and authenticates a bearer source', async () => {
      const id = `alert-${randomUUID()}`;
      const res = await deliver('alerts', JSON.stringify({ id, level: 'warn' }), { authorization: `Bearer ${alerts.secret}` });
      expect(res.status).to.equal(202);
      expect(res.json.deliveryId).to.equal(id);
      await waitFor(settled(id));
      expect(turns.callsFor(id)[0]!.source).to.equal('webhook:alerts');
    });

    it('answers 401 with one identical body for a bad, missing or wrong credential and an unknown source, storing nothing', async () => {
      const before = await deliveryCount();
      const body = JSON.stringify({ id: 'evil-1', action: 'x' });
      const attempts = [
        deliver('github', body, { 'x-clawdbot-signature': sign('not-the-secret', body) }),
        deliver('github', body, { 'x-clawdbot-signature': sign(github.secret, body + ' ') }),
        deliver('github', body, { 'x-clawdbot-signature': 'sha256=zz' }),
        deliver('github', body),
        deliver('github', body, { authorization: `Bearer ${github.secret}` }),
        deliver('nosuchsource', body, { 'x-clawdbot-signature': sign(github.secret, body) }),
        deliver('NOT..valid', body),
        deliver('alerts', body, { authorization: 'Bearer wrong-token' }),
        deliver('alerts', body, { authorization: `Bearer ${alerts.secret}x` }),
        deliver('alerts', body),
        deliver('alerts', body, { 'x-clawdbot-signature': sign(alerts.secret, body) }),
        // The body-only signature of before (still GitHub's own scheme, in GitHub's header only).
        deliver('github', body, { 'x-clawdbot-signature': githubSign(github.secret, body) }),
        // Signed six minutes ago, or for five minutes from now.
        deliver('github', body, { 'x-clawdbot-signature': sign(github.secret, body, '', Math.floor(Date.now() / 1000) - 360) }),
        deliver('github', body, { 'x-clawdbot-signature': sign(github.secret, body, '', Math.floor(Date.now() / 1000) + 360) }),
      ];
      const answers = await Promise.all(attempts);
      for (const answer of answers) {
        expect(answer.status).to.equal(401);
        expect(answer.text).to.equal(answers[0]!.text);
      }
      expect(answers[0]!.json.error).to.equal('unauthorized');
      expect(answers[0]!.text).not.to.include('github').and.not.to.include('alerts');
      expect(await deliveryCount()).to.equal(before);
      expect(turns.callsFor('evil-1')).to.have.length(0);
    });

    it('refuses a captured delivery sent again under a new id, whatever the scheme, and stores it once', async () => {
      const body = JSON.stringify({ action: 'closed', number: 99, at: randomUUID() });
      const signed = { 'x-clawdbot-signature': sign(github.secret, body, 'orig-1'), 'x-delivery-id': 'orig-1' };
      expect((await deliver('github', body, signed)).status).to.equal(202);
      // Our own scheme signs the id: another id breaks the signature.
      const renamed = await deliver('github', body, { ...signed, 'x-delivery-id': 'orig-2' });
      expect(renamed.status).to.equal(401);

      // GitHub's signs the body alone, and a bearer token signs nothing: the same body under another id is refused.
      const githubBody = JSON.stringify({ zen: randomUUID() });
      const github1 = await deliver('github', githubBody, { 'x-hub-signature-256': githubSign(github.secret, githubBody), 'x-github-delivery': 'gh-1' });
      const github2 = await deliver('github', githubBody, { 'x-hub-signature-256': githubSign(github.secret, githubBody), 'x-github-delivery': 'gh-2' });
      expect([github1.status, github2.status, github2.json.error]).to.deep.equal([202, 409, 'replayed_delivery']);
      const alertBody = JSON.stringify({ level: 'warn', at: randomUUID() });
      const alert1 = await deliver('alerts', alertBody, { authorization: `Bearer ${alerts.secret}`, 'x-delivery-id': 'al-1' });
      const alert2 = await deliver('alerts', alertBody, { authorization: `Bearer ${alerts.secret}`, 'x-delivery-id': 'al-2' });
      expect([alert1.status, alert2.status]).to.deep.equal([202, 409]);
      // The same id again is still the duplicate it always was.
      expect((await deliver('alerts', alertBody, { authorization: `Bearer ${alerts.secret}`, 'x-delivery-id': 'al-1' })).json.duplicate).to.equal(true);

      const { rows } = await db.query(`SELECT delivery_id FROM webhook_deliveries WHERE delivery_id = ANY ($1) ORDER BY delivery_id`, [
        ['orig-1', 'orig-2', 'gh-1', 'gh-2', 'al-1', 'al-2'],
      ]);
      expect(rows.map((r) => r.delivery_id)).to.deep.equal(['al-1', 'gh-1', 'orig-1']);
    });

    it('refuses a token in the query string, even a correct one', async () => {
      const before = await deliveryCount();
      const body = JSON.stringify({ id: 'query-1' });
      const res = await deliver('alerts', body, {}, `?token=${alerts.secret}`);
      expect(res.status).to.equal(400);
      expect(res.json.reason).to.match(/query string/);
      const withHeader = await deliver('alerts', body, { authorization: `Bearer ${alerts.secret}` }, `?token=${alerts.secret}`);
      expect(withHeader.status).to.equal(400);
      expect(await deliveryCount()).to.equal(before);
    });

    it('answers 400 without a delivery id and for a body that is not JSON, 413 past 1 MB', async () => {
      const before = await deliveryCount();
      const noId = JSON.stringify({ action: 'opened', id: 42 });
      const missing = await deliver('github', noId, { 'x-clawdbot-signature': sign(github.secret, noId) });
      expect(missing.status).to.equal(400);
      expect(missing.json.reason).to.include('delivery id');

      const notJson = 'action=opened&number=7';
      const bad = await deliver('github', notJson, { 'x-clawdbot-signature': sign(github.secret, notJson, 'nj-1'), 'x-delivery-id': 'nj-1' });
      expect(bad.status).to.equal(400);
      expect(bad.json.error).to.equal('invalid_json');

      const nul = '{"id":"nul-1","text":"a\\u0000b"}';
      const withNul = await deliver('github', nul, { 'x-clawdbot-signature': sign(github.secret, nul) });
      expect(withNul.status).to.equal(400);

      const big = JSON.stringify({ id: 'big-1', blob: 'x'.repeat(1024 * 1024) });
      const tooBig = await deliver('github', big, { 'x-clawdbot-signature': sign(github.secret, big) });
      expect(tooBig.status).to.equal(413);
      expect(await deliveryCount()).to.equal(before);
    });

    it('truncates a large payload in the message the agent gets', async () => {
      const id = `large-${randomUUID()}`;
      const res = await deliverGithub(id, { blob: 'y'.repeat(200_000) });
      expect(res.status).to.equal(202);
      await waitFor(settled(id));
      const message = turns.callsFor(id)[0]!.message;
      expect(message.length).to.be.below(9_000);
      expect(message).to.include('truncated');
      expect((await delivery(id)).payload.blob).to.have.length(200_000);
    });
  });

  describe('processing', () => {
    it('retries a turn the model could not answer, with backoff, then processes the delivery', async () => {
      const id = `retry-${randomUUID()}`;
      turns.plan(id, unavailable(), unavailable());
      await deliverGithub(id);
      await waitFor(settled(id));
      const row = await delivery(id);
      expect(row.status).to.equal('processed');
      expect(row.result).to.equal(`handled ${id}`);
      expect(turns.callsFor(id)).to.have.length(3);
    });

    it('gives up after 5 tries when the model stays unavailable', async () => {
      const id = `down-${randomUUID()}`;
      turns.plan(id, ...Array.from({ length: 6 }, unavailable));
      await deliverGithub(id);
      await waitFor(settled(id));
      const row = await delivery(id);
      expect(row.status).to.equal('failed');
      expect(row.error).to.include('model unavailable');
      expect(turns.callsFor(id)).to.have.length(5);
    });

    it('retries a turn the model refused, as any model failure', async () => {
      const id = `refused-${randomUUID()}`;
      turns.plan(id, fails(new ModelRefusedError(400)));
      await deliverGithub(id);
      await waitFor(settled(id));
      expect(await delivery(id)).to.include({ status: 'processed', result: `handled ${id}` });
      expect(turns.callsFor(id)).to.have.length(2);
    });

    it('fails a delivery at its first try when the turn fails for another reason than the model', async () => {
      const id = `broken-${randomUUID()}`;
      turns.plan(id, fails(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })));
      await deliverGithub(id);
      await waitFor(settled(id));
      const row = await delivery(id);
      expect(row).to.include({ status: 'failed', result: null, error: 'terminating connection due to administrator command' });
      expect(turns.callsFor(id)).to.have.length(1);
    });

    it('marks a delivery failed with the reason when the monthly limit is reached (no retry)', async () => {
      const id = `limit-${randomUUID()}`;
      turns.plan(id, limitReached('monthly message limit of 1000 reached; resets 2030-01-01'));
      await deliverGithub(id);
      await waitFor(settled(id));
      const row = await delivery(id);
      expect(row).to.include({ status: 'failed', result: null });
      expect(row.error).to.include('monthly message limit');
      await sleep(150);
      expect(turns.callsFor(id)).to.have.length(1);
      const memories = await db.query('SELECT 1 FROM memories WHERE content LIKE $1', [`%${id}%`]);
      expect(memories.rows).to.have.length(0);
    });

    it('two processors on one database process each delivery exactly once', async () => {
      await processor.stop();
      const a = new FakeTurns();
      const b = new FakeTurns();
      a.delayMs = b.delayMs = 25;
      const pa = new WebhookProcessor({ ...ctx, runTurn: a.run }, FAST);
      const pb = new WebhookProcessor({ ...ctx, runTurn: b.run }, FAST);
      extraProcessors.push(pa, pb);
      const ids = Array.from({ length: 12 }, (_, i) => `pair-${i}-${randomUUID()}`);
      for (const id of ids) {
        await db.query(`INSERT INTO webhook_deliveries (source, delivery_id, payload) VALUES ('github', $1, '{}')`, [id]);
      }
      pa.start();
      pb.start();
      pa.notify();
      pb.notify();
      await waitFor(async () => {
        const { rows } = await db.query(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE delivery_id LIKE 'pair-%' AND status = 'processed'`);
        return rows[0].n === ids.length;
      });
      await Promise.all([pa.stop(), pb.stop()]);
      const handled = [...a.calls, ...b.calls].map((call) => deliveryIdIn(call.message));
      expect(handled).to.have.length(ids.length);
      expect(new Set(handled)).to.have.property('size', ids.length);
      expect(a.calls.length).to.be.above(0);
      expect(b.calls.length).to.be.above(0);
      processor.start();
    });

    it('never hands a delivery in progress to another runtime; a crash mid-turn puts it back for the next', async () => {
      await processor.stop();
      const id = `crash-${randomUUID()}`;
      let release!: () => void;
      const held = new FakeTurns();
      held.plan(id, () => new Promise<TurnResult>((resolve) => {
        release = () => resolve({ reply: 'too late', conversationId: randomUUID(), usage: { inputTokens: 0, outputTokens: 0 }, citations: [] });
      }));
      const other = new FakeTurns();
      const crashing = new WebhookProcessor({ ...ctx, runTurn: held.run }, FAST);
      const survivor = new WebhookProcessor({ ...ctx, runTurn: other.run }, FAST);
      extraProcessors.push(crashing, survivor);

      await db.query(`INSERT INTO webhook_deliveries (source, delivery_id, payload) VALUES ('github', $1, '{}')`, [id]);
      crashing.start();
      await waitFor(async () => held.callsFor(id).length === 1);
      survivor.start(); // its start-up recovery must not take the delivery being processed
      survivor.notify();
      await sleep(300);
      expect(other.callsFor(id)).to.have.length(0);

      // The first runtime's connection dies mid-turn (a crash, as the database sees it).
      const killed = await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND state = 'idle in transaction' AND now() - state_change > interval '250 milliseconds'`,
        [dbName],
      );
      expect(killed.rowCount).to.equal(1);
      survivor.notify();
      await waitFor(settled(id));
      expect(other.callsFor(id)).to.have.length(1);
      expect((await delivery(id)).result).to.equal(`handled ${id}`);

      release(); // the crashed turn finishing late cannot overwrite the outcome: its claim is gone
      await Promise.all([crashing.stop(), survivor.stop()]);
      expect((await delivery(id)).result).to.equal(`handled ${id}`);
      processor.start();
    });

    it('resumes deliveries a previous run left received', async () => {
      await processor.stop();
      const ids = [`left-r-${randomUUID()}`, `left-s-${randomUUID()}`];
      await db.query(
        `INSERT INTO webhook_deliveries (source, delivery_id, payload, status) VALUES ('github', $1, '{}', 'received'), ('github', $2, '{}', 'received')`,
        ids,
      );
      processor.start();
      for (const id of ids) await waitFor(settled(id));
      for (const id of ids) expect((await delivery(id)).status).to.equal('processed');
    });
  });

  describe('webhookStats', () => {
    it('counts deliveries by outcome and shows the latest', async () => {
      const before = await webhookStats(db);
      expect(before.pending).to.equal(0);
      const ok = [`stat-a-${randomUUID()}`, `stat-b-${randomUUID()}`];
      const bad = `stat-c-${randomUUID()}`;
      turns.plan(bad, limitReached('monthly message limit reached'));
      for (const id of [...ok, bad]) await deliverGithub(id);
      for (const id of [...ok, bad]) await waitFor(settled(id));
      const after = await webhookStats(db);
      expect(after.received - before.received).to.equal(3);
      expect(after.processed - before.processed).to.equal(2);
      expect(after.failed - before.failed).to.equal(1);
      expect(after.pending).to.equal(0);
      expect(after.last).to.include({ source: 'github', deliveryId: bad, status: 'failed', result: null });
      expect(after.last!.error).to.include('monthly message limit');
      expect(Date.parse(after.last!.at)).to.be.closeTo(Date.now(), 10_000);
    });
  });
});
