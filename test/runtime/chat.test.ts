/**
 * The runtime's chat against the Anthropic emulator, driven through the real SDK: what is sent to the model, the
 * monthly limit and its notices, retries and failures, streaming, keys and rate limits, the heartbeat.
 */
import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { startAnthropicEmulator, systemText, contentText, type AnthropicEmulator } from '../emulators/anthropicEmulator.ts';
import { readEvents, startRuntimeFixture, type RuntimeFixture } from '../support/runtimeFixture.ts';
import { waitUntil } from '../support/harness.ts';

interface Notice {
  workspaceId: string;
  month: string;
  threshold: number;
  used: number;
  limit: number;
}

/** Stands in for the control plane's usage endpoint, checking each notice's signature. */
async function startNoticeReceiver(secret: string): Promise<{ url: string; notices: Notice[]; rejected: number; close(): Promise<void> }> {
  const state = { notices: [] as Notice[], rejected: 0 };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const header = String(req.headers['x-clawdbot-signature'] ?? '');
      const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header) ?? [];
      const expected = t ? createHmac('sha256', secret).update(`${t}.${body}`).digest('hex') : '';
      if (req.url !== '/api/runtime/usage' || !v1 || v1 !== expected) {
        state.rejected++;
        res.writeHead(401).end();
        return;
      }
      state.notices.push(JSON.parse(body) as Notice);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"received":true}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get notices() {
      return state.notices;
    },
    get rejected() {
      return state.rejected;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const post = (f: RuntimeFixture, path: string, body: unknown, key = f.key) =>
  fetch(`${f.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

const status = async (f: RuntimeFixture) =>
  (await (await fetch(`${f.url}/status`, { headers: { authorization: `Bearer ${f.key}` } })).json()) as {
    usage: { messages: number; inputTokens: number; outputTokens: number; messageLimit: number };
  };

describe('runtime chat', function () {
  this.timeout(30_000);
  let model: AnthropicEmulator;
  let receiver: Awaited<ReturnType<typeof startNoticeReceiver>>;
  let ann: RuntimeFixture; // starter, limit 3, reports usage
  let bob: RuntimeFixture; // team
  const modelEnv = () => ({
    // These tests send wrong keys on purpose, more than the throttle lets one address send (see authThrottle.test.ts).
    AUTH_FAILURE_LIMIT: '10000',
    ANTHROPIC_API_KEY: model.apiKey,
    ANTHROPIC_BASE_URL: model.url,
    MODEL_MAX_RETRIES: '2',
    MODEL_TIMEOUT: '3s',
  });

  before(async () => {
    model = await startAnthropicEmulator();
    receiver = await startNoticeReceiver('notice-secret-for-tests');
    [ann, bob] = await Promise.all([
      startRuntimeFixture({
        plan: 'starter',
        name: 'Ann Lee',
        env: { ...modelEnv(), MESSAGE_LIMIT: '3', CONTROL_PLANE_URL: receiver.url, CONTROL_PLANE_SECRET: 'notice-secret-for-tests' },
      }),
      startRuntimeFixture({ plan: 'team', name: 'Bob Stone', env: modelEnv() }),
    ]);
  });
  after(async () => {
    await Promise.all([ann?.close(), bob?.close()]);
    await Promise.all([model?.close(), receiver?.close()]);
  });
  beforeEach(() => model.reset());

  it('sends the workspace identity, a stored memory and the history to the model', async () => {
    const remembered = await post(ann, '/api/memory', { content: "Ann's dog is called Biscuit", tags: ['pets'] });
    expect(remembered.status).to.equal(201);

    const first = await post(ann, '/api/chat', { message: 'What is my dog called?' });
    expect(first.status).to.equal(200);
    const turn = (await first.json()) as { reply: string; conversationId: string; usage: { inputTokens: number; outputTokens: number } };
    expect(turn.reply).to.equal('Echo: What is my dog called?');
    expect(turn.usage.inputTokens).to.be.greaterThan(0);
    const sent = model.lastRequest()!.body;
    const system = systemText(sent);
    expect(system).to.include('a personal assistant running on a server that belongs to one customer alone'); // SOUL.md
    expect(system).to.include('Ann Lee').and.include('Biscuit'); // USER.md and the stored memory
    expect(sent.model).to.equal('claude-sonnet-4-5');

    const second = await post(ann, '/api/chat', { message: 'And what breed is he?', conversationId: turn.conversationId });
    expect(second.status).to.equal(200);
    const history = model.lastRequest()!.body.messages.map((m) => [m.role, contentText(m.content)]);
    expect(history).to.deep.equal([
      ['user', 'What is my dog called?'],
      ['assistant', 'Echo: What is my dog called?'],
      ['user', 'And what breed is he?'],
    ]);
    const usage = (await status(ann)).usage;
    expect(usage.messages).to.equal(2);
    expect(usage.inputTokens).to.be.greaterThan(0);
    expect(usage.outputTokens).to.be.greaterThan(0);
  });

  it('enforces the monthly limit: the third message succeeds, the fourth gets 429; each notice fires once', async () => {
    expect((await post(ann, '/api/chat', { message: 'third' })).status).to.equal(200);
    const fourth = await post(ann, '/api/chat', { message: 'fourth' });
    expect(fourth.status).to.equal(429);
    const refusal = (await fourth.json()) as { error: string; reason: string; resetsAt: string };
    expect(refusal.error).to.equal('message_limit_reached');
    expect(Date.parse(refusal.resetsAt)).to.be.greaterThan(Date.now());
    expect(fourth.headers.get('retry-after')).to.match(/^\d+$/);
    expect(model.calls).to.equal(1); // the refused turn never reached the model
    expect((await post(ann, '/api/chat', { message: 'fifth' })).status).to.equal(429);

    // Both notices marked sent: the only turn that claimed them has finished sending, and nothing is left to resend.
    const sent = async () =>
      (await ann.db.query('SELECT threshold FROM usage_notices WHERE sent_at IS NOT NULL ORDER BY threshold')).rows.map((r) => r.threshold);
    await waitUntil(async () => (await sent()).length === 2);
    expect(await sent()).to.deep.equal([80, 100]);
    expect(receiver.notices.map((n) => n.threshold).sort()).to.deep.equal([100, 80]);
    expect(receiver.notices[0]).to.include({ workspaceId: ann.workspaceId, limit: 3 });
    expect(receiver.rejected).to.equal(0);
  });

  it('sends a notice claimed earlier but never delivered with the next turn, even one far below the thresholds', async () => {
    // Bob's runtime, redeployed with a control plane to report to; his month has a notice claimed by a runtime that
    // could not deliver it (the control plane was down, or the runtime was replaced meanwhile).
    await bob.restart({ CONTROL_PLANE_URL: receiver.url, CONTROL_PLANE_SECRET: 'notice-secret-for-tests' });
    try {
      const month = new Date().toISOString().slice(0, 7);
      await bob.db.query('INSERT INTO usage_notices (month, threshold, used) VALUES ($1, 80, 80000)', [month]);
      expect((await post(bob, '/api/chat', { message: 'hello' })).status).to.equal(200);
      expect((await status(bob)).usage.messages).to.be.below(10);
      await waitUntil(async () => (await bob.db.query('SELECT 1 FROM usage_notices WHERE sent_at IS NOT NULL')).rowCount === 1);
      expect(receiver.notices.filter((n) => n.workspaceId === bob.workspaceId)).to.deep.equal([
        { workspaceId: bob.workspaceId, month, threshold: 80, used: 80000, limit: 100000 },
      ]);
    } finally {
      await bob.db.query('DELETE FROM usage_notices');
      await bob.restart();
    }
  });

  it('retries a 429 from the model and counts the turn once', async () => {
    const before = (await status(bob)).usage.messages;
    model.failNext(1, 429, { retryAfterSeconds: 0 });
    const response = await post(bob, '/api/chat', { message: 'hello after a rate limit' });
    expect(response.status).to.equal(200);
    expect(model.calls).to.equal(2);
    expect((await status(bob)).usage.messages).to.equal(before + 1);
  });

  it('answers 503 with Retry-After when the model stays overloaded, and counts nothing', async () => {
    const before = (await status(bob)).usage;
    model.failNext(3, 529);
    const response = await post(bob, '/api/chat', { message: 'are you there?' });
    expect(response.status).to.equal(503);
    expect(response.headers.get('retry-after')).to.match(/^\d+$/);
    expect(((await response.json()) as { error: string }).error).to.equal('model_unavailable');
    expect(model.calls).to.equal(3); // one try and two retries
    expect((await status(bob)).usage).to.deep.equal(before);
    const stored = await bob.db.query("SELECT count(*)::int AS n FROM conversation_messages WHERE content = 'are you there?'");
    expect(stored.rows[0].n).to.equal(0);
  });

  it('streams: deltas arrive before the reply completes, then done with the whole turn', async () => {
    model.respond(() => 'one two three four five six seven eight');
    model.chunkDelay(60);
    const response = await post(bob, '/api/chat', { message: 'count for me', stream: true });
    expect(response.status).to.equal(200);
    expect(response.headers.get('content-type')).to.match(/^text\/event-stream/);
    const events = await readEvents(response);
    const kinds = events.map((e) => e.event);
    expect(kinds[0]).to.equal('start');
    expect(kinds.at(-1)).to.equal('done');
    const deltas = events.filter((e) => e.event === 'delta');
    expect(deltas.length).to.be.greaterThan(2);
    expect(deltas.map((d) => d.data.text).join('')).to.equal('one two three four five six seven eight');
    expect(events.at(-1)!.at - deltas[0]!.at).to.be.greaterThan(150); // the first words came well before the end
    expect(events.at(-1)!.data.reply).to.equal('one two three four five six seven eight');
  });

  it('answers a stream whose model fails before its first words with 503 and Retry-After', async () => {
    const before = (await status(bob)).usage.messages;
    model.failNext(3, 529);
    const response = await post(bob, '/api/chat', { message: 'stream please', stream: true });
    expect(response.status).to.equal(503);
    expect(response.headers.get('retry-after')).to.match(/^\d+$/);
    expect(((await response.json()) as { error: string }).error).to.equal('model_unavailable');
    expect((await status(bob)).usage.messages).to.equal(before);
  });

  it('keeps a conversation usable after the model answered with nothing', async () => {
    model.respond(() => '');
    const first = (await (await post(bob, '/api/chat', { message: 'say nothing' })).json()) as { conversationId: string; reply: string };
    expect(first.reply).to.equal('');
    model.respond();
    const second = await post(bob, '/api/chat', { message: 'now say something', conversationId: first.conversationId });
    expect(second.status).to.equal(200);
    const sent = model.lastRequest()!.body.messages.map((m) => [m.role, contentText(m.content)]);
    expect(sent).to.deep.equal([['user', 'now say something']]);
  });

  it('ends a stream that breaks midway with an error event, and counts nothing', async () => {
    const before = (await status(bob)).usage.messages;
    model.breakStreamNext(1, 2);
    const response = await post(bob, '/api/chat', { message: 'tell me a long story', stream: true });
    const events = await readEvents(response);
    expect(events.map((e) => e.event)).to.deep.equal(['start', 'delta', 'delta', 'error']);
    expect(events.at(-1)!.data.error).to.equal('model_unavailable');
    expect((await status(bob)).usage.messages).to.equal(before);
  });

  it('aborts the model request when the client leaves mid-stream, and counts the turn with the tokens it used', async () => {
    const before = (await status(bob)).usage;
    model.respond(() => Array.from({ length: 200 }, (_, i) => `word${i}`).join(' '));
    model.chunkDelay(50);
    const client = new AbortController();
    const response = await fetch(`${bob.url}/api/chat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bob.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'a very long story please', stream: true }),
      signal: client.signal,
    });
    const reader = response.body!.getReader();
    let seen = '';
    while (!seen.includes('event: delta')) seen += new TextDecoder().decode((await reader.read()).value);
    client.abort(); // the customer closes the tab
    const request = model.lastRequest()!;
    await waitUntil(async () => request.cutOff, 5_000);
    // The runtime let go of the model well before its 200 words (at 50 ms each) were written.
    expect(request.cutOff).to.equal(true);
    await waitUntil(async () => (await status(bob)).usage.messages === before.messages + 1, 5_000);
    const after = (await status(bob)).usage;
    expect(after.inputTokens).to.be.greaterThan(before.inputTokens);
    const { rows } = await bob.db.query(`SELECT role, content FROM conversation_messages ORDER BY id DESC LIMIT 2`);
    expect(rows.map((r) => r.role)).to.deep.equal(['assistant', 'user']);
    expect(rows[1].content).to.equal('a very long story please');
    expect(rows[0].content).to.match(/^word0/).and.not.include('word199');
  });

  it('refuses bad input with a 4xx and a reason', async () => {
    const cases: [unknown, number][] = [
      [{}, 400],
      [{ message: '   ' }, 400],
      [{ message: 'x'.repeat(20_001) }, 400],
      [{ message: 'hi', conversationId: 'not-a-uuid' }, 400],
      [{ message: 'hi', conversationId: '00000000-0000-4000-8000-000000000000' }, 404],
      [{ message: 'hi', stream: 'yes' }, 400],
    ];
    for (const [body, expected] of cases) {
      const response = await post(bob, '/api/chat', body);
      expect(response.status, JSON.stringify(body).slice(0, 60)).to.equal(expected);
      expect(((await response.json()) as { reason: string }).reason).to.be.a('string');
    }
    const notJson = await fetch(`${bob.url}/api/chat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bob.key}`, 'content-type': 'application/json' },
      body: '{"message": ',
    });
    expect(notJson.status).to.equal(400);
    expect(model.calls).to.equal(0);
  });

  it('guards every customer endpoint: no key, a wrong key and another customer’s key all get 401', async () => {
    const endpoints: [string, string, unknown?][] = [
      ['GET', '/status'],
      ['POST', '/api/chat', { message: 'hi' }],
      ['POST', '/api/memory', { content: 'a fact' }],
      ['GET', '/api/memory?q=fact'],
      ['DELETE', '/api/memory/1'],
      ['GET', '/api/skills'],
      ['PUT', '/api/skills/web_search', { enabled: false }],
      ['POST', '/api/skills', { content: '---\nname: mine\ndescription: Mine.\n---\n' }],
      ['GET', '/api/webhooks'],
      ['POST', '/api/webhooks', { source: 'github', scheme: 'hmac' }],
      ['DELETE', '/api/webhooks/github'],
    ];
    const keys: [string, Record<string, string>][] = [
      ['no key', {}],
      ['wrong key', { authorization: `Bearer claw_${'A'.repeat(43)}` }],
      ['another customer’s key', { authorization: `Bearer ${ann.key}` }],
    ];
    for (const [method, path, body] of endpoints) {
      for (const [what, auth] of keys) {
        const response = await fetch(`${bob.url}${path}`, {
          method,
          headers: { 'content-type': 'application/json', ...auth },
          ...(body !== undefined && { body: JSON.stringify(body) }),
        });
        expect(response.status, `${method} ${path} with ${what}`).to.equal(401);
      }
    }
    const { rows } = await bob.db.query(
      `SELECT (SELECT count(*) FROM memories)::int AS memories, (SELECT count(*) FROM skills)::int AS skills,
              (SELECT count(*) FROM webhook_sources)::int AS sources`,
    );
    expect(rows[0]).to.deep.equal({ memories: 0, skills: 0, sources: 0 });
    expect(model.calls).to.equal(0);
  });

  it('takes only the customer’s own key', async () => {
    expect((await fetch(`${bob.url}/api/chat`, { method: 'POST' })).status).to.equal(401);
    expect((await post(bob, '/api/chat', { message: 'hi' }, `claw_${'x'.repeat(43)}`)).status).to.equal(401);
    expect((await post(bob, '/api/chat', { message: 'hi' }, ann.key)).status).to.equal(401);
    expect((await post(ann, '/api/memory', { content: 'mine' }, bob.key)).status).to.equal(401);
    expect(model.calls).to.equal(0);
  });
});

describe('runtime rate limit and heartbeat', function () {
  this.timeout(30_000);
  let model: AnthropicEmulator;
  const fixtures: RuntimeFixture[] = [];
  before(async () => {
    model = await startAnthropicEmulator();
  });
  after(async () => {
    await Promise.all(fixtures.map((f) => f.close()));
    await model.close();
  });
  const env = () => ({ ANTHROPIC_API_KEY: model.apiKey, ANTHROPIC_BASE_URL: model.url });

  it('limits requests per key, with Retry-After, and says the limit in RateLimit-* headers', async () => {
    const f = await startRuntimeFixture({ env: { ...env(), RATE_LIMIT: '3/m' } });
    fixtures.push(f);
    const answers: { status: number; limit: string | null; remaining: string | null; policy: string | null; reset: number }[] = [];
    for (let i = 0; i < 4; i++) {
      const response = await fetch(`${f.url}/status`, { headers: { authorization: `Bearer ${f.key}` } });
      const header = (name: string) => response.headers.get(name);
      answers.push({ status: response.status, limit: header('ratelimit-limit'), remaining: header('ratelimit-remaining'), policy: header('ratelimit-policy'), reset: Number(header('ratelimit-reset')) });
    }
    // One token comes back every 20 s at 3/m: the four requests see the bucket drain.
    expect(answers.map(({ status, limit, remaining, policy }) => ({ status, limit, remaining, policy }))).to.deep.equal(
      [200, 200, 200, 429].map((status, i) => ({ status, limit: '3', remaining: String(Math.max(0, 2 - i)), policy: '3;w=60' })),
    );
    for (const { reset } of answers) expect(reset).to.be.within(1, 60);
    // Another spelling of the same key is the same key.
    for (const header of [`bearer ${f.key}`, `BEARER  ${f.key}`]) {
      expect((await fetch(`${f.url}/status`, { headers: { authorization: header } })).status, header).to.equal(429);
    }
    const limited = await fetch(`${f.url}/status`, { headers: { authorization: `Bearer ${f.key}` } });
    expect(Number(limited.headers.get('retry-after'))).to.be.greaterThan(0);
    expect((await fetch(`${f.url}/health`)).status).to.equal(200); // health is never limited
  });

  it('refuses a valid key with 402 and a reason while the account is suspended, and accepts it again after', async () => {
    const f = await startRuntimeFixture({ env: env() });
    fixtures.push(f);
    const status = () => fetch(`${f.url}/status`, { headers: { authorization: `Bearer ${f.key}` } });
    expect((await status()).status).to.equal(200);
    await f.db.query(`INSERT INTO account_status (id, suspended_reason) VALUES (true, 'payment overdue')`);
    await waitUntil(async () => (await status()).status === 402, 5_000);
    expect(await (await status()).json()).to.deep.equal({ error: 'payment_required', reason: 'payment overdue' });
    await f.db.query('UPDATE account_status SET suspended_reason = NULL');
    await waitUntil(async () => (await status()).status === 200, 5_000);
  });

  it('runs HEARTBEAT.md tasks as a background turn and logs the outcome; no tasks cost no model call', async () => {
    const idle = await startRuntimeFixture({ env: { ...env(), HEARTBEAT_INTERVAL: '100ms' } });
    fixtures.push(idle);
    const busy = await startRuntimeFixture({
      env: { ...env(), HEARTBEAT_INTERVAL: '200ms' },
      files: { 'HEARTBEAT.md': '# HEARTBEAT.md\n\n## Tasks\n\n- [ ] Check the calendar for tomorrow\n' },
    });
    fixtures.push(busy);
    await waitUntil(async () => model.requests.some((r) => JSON.stringify(r.body).includes('Check the calendar')));
    const day = new Date().toISOString().slice(0, 10);
    await waitUntil(async () => {
      const { rows } = await busy.db.query('SELECT content FROM workspace_files WHERE path = $1', [`memory/${day}.md`]);
      return String(rows[0]?.content ?? '').includes('Heartbeat (1 task)');
    });
    // The idle runtime started first and beats every 100 ms, the busy one every 200 ms: timers fire in deadline
    // order, so the idle one had beaten at least twice before the busy one's first beat was even due.
    expect(model.requests.filter((r) => JSON.stringify(r.body).includes(idle.workspaceId))).to.deep.equal([]);
    const idleStatus = (await (await fetch(`${idle.url}/status`, { headers: { authorization: `Bearer ${idle.key}` } })).json()) as {
      usage: { messages: number };
    };
    expect(idleStatus.usage.messages).to.equal(0);
  });
});
