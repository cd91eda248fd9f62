// Proves the Anthropic Messages emulator against the real `@anthropic-ai/sdk` client: responses, SSE streaming,
// recorded requests, the SDK's retries on 429 + retry-after, its error classes, mid-stream failures and timeouts.
import { expect } from 'chai';
import Anthropic, {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  RateLimitError,
} from '@anthropic-ai/sdk';
import {
  startAnthropicEmulator,
  scriptedResponder,
  toolResults,
  ANTHROPIC_EMULATOR_API_KEY,
  WEB_FETCH_BETA,
  type AnthropicEmulator,
} from './anthropicEmulator.ts';

const MODEL = 'claude-sonnet-4-5';

describe('Anthropic emulator with @anthropic-ai/sdk', () => {
  let emulator: AnthropicEmulator;
  const client = (opts: { apiKey?: string; maxRetries?: number; timeout?: number } = {}) =>
    new Anthropic({
      apiKey: opts.apiKey ?? ANTHROPIC_EMULATOR_API_KEY,
      baseURL: emulator.url,
      maxRetries: opts.maxRetries ?? 0,
      ...(opts.timeout === undefined ? {} : { timeout: opts.timeout }),
    });

  /** Runs `fn` and returns what it threw (fails the test if it did not throw). */
  async function thrown(fn: () => Promise<unknown>): Promise<unknown> {
    try {
      await fn();
    } catch (e) {
      return e;
    }
    expect.fail('expected the call to throw');
  }

  /** POSTs raw JSON (with the right headers unless overridden) to check wire-level behaviour the SDK hides. */
  async function rawPost(body: unknown, headers: Record<string, string> = {}) {
    const res = await fetch(`${emulator.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': ANTHROPIC_EMULATOR_API_KEY, 'anthropic-version': '2023-06-01', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, headers: res.headers, json: (await res.json()) as { type: string; error: { type: string; message: string }; request_id: string } };
  }

  before(async () => {
    emulator = await startAnthropicEmulator();
  });
  beforeEach(() => emulator.reset());
  after(() => emulator.close());

  it('answers a non-streaming create with a Message, usage and a request id', async () => {
    const message = await client().messages.create({
      model: MODEL,
      max_tokens: 256,
      system: 'You are Clawdbot.',
      messages: [{ role: 'user', content: 'hello there' }],
    });

    expect(message.type).to.equal('message');
    expect(message.role).to.equal('assistant');
    expect(message.model).to.equal(MODEL);
    expect(message.id).to.match(/^msg_/);
    expect(message.content).to.deep.equal([{ type: 'text', text: 'Echo: hello there' }]);
    expect(message.stop_reason).to.equal('end_turn');
    expect(message.stop_sequence).to.equal(null);
    // input: ceil((17 + 11) / 4) = 7; output: ceil(17 / 4) = 5
    expect(message.usage.input_tokens).to.equal(7);
    expect(message.usage.output_tokens).to.equal(5);
    expect(message._request_id).to.equal(emulator.lastRequest()?.requestId);
    expect(emulator.calls).to.equal(1);
  });

  it('records the system prompt, history and headers the client sent', async () => {
    emulator.respond((body) => `I saw ${body.messages.length} messages`);
    const message = await client().messages.create({
      model: MODEL,
      max_tokens: 100,
      system: [{ type: 'text', text: 'Be brief.' }],
      messages: [
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'ok' },
        { role: 'user', content: [{ type: 'text', text: 'second' }] },
      ],
    });

    expect(message.content[0]).to.deep.equal({ type: 'text', text: 'I saw 3 messages' });
    const recorded = emulator.requests[0]!;
    expect(recorded.method).to.equal('POST');
    expect(recorded.path).to.equal('/v1/messages');
    expect(recorded.status).to.equal(200);
    expect(recorded.headers['x-api-key']).to.equal(ANTHROPIC_EMULATOR_API_KEY);
    expect(recorded.headers['anthropic-version']).to.equal('2023-06-01');
    expect(recorded.body.system).to.deep.equal([{ type: 'text', text: 'Be brief.' }]);
    expect(recorded.body.messages).to.deep.equal([
      { role: 'user', content: 'first' },
      { role: 'assistant', content: 'ok' },
      { role: 'user', content: [{ type: 'text', text: 'second' }] },
    ]);
    expect(recorded.body.max_tokens).to.equal(100);
    expect(recorded.stream).to.equal(false);
  });

  it('streams text deltas in order and a final message with usage (messages.stream)', async () => {
    emulator.respond(() => 'one two three four');
    const stream = client().messages.stream({
      model: MODEL,
      max_tokens: 64,
      messages: [{ role: 'user', content: 'count' }],
    });
    const deltas: string[] = [];
    stream.on('text', (delta) => deltas.push(delta));
    const final = await stream.finalMessage();

    expect(deltas).to.deep.equal(['one ', 'two ', 'three ', 'four']);
    expect(final.content).to.deep.equal([{ type: 'text', text: 'one two three four' }]);
    expect(final.stop_reason).to.equal('end_turn');
    expect(final.usage.input_tokens).to.equal(2); // ceil(5 / 4)
    expect(final.usage.output_tokens).to.equal(5); // ceil(18 / 4)
    expect(emulator.lastRequest()?.stream).to.equal(true);
    expect(emulator.lastRequest()?.body.stream).to.equal(true);
  });

  it('sends the real SSE event sequence (create with stream: true)', async () => {
    emulator.respond(() => 'alpha beta');
    const stream = await client().messages.create({
      model: MODEL,
      max_tokens: 64,
      stream: true,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const types: string[] = [];
    let text = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'message_start') {
        expect(event.message.content).to.deep.equal([]);
        expect(event.message.stop_reason).to.equal(null);
      }
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
      if (event.type === 'message_delta') {
        expect(event.delta.stop_reason).to.equal('end_turn');
        expect(event.usage.output_tokens).to.equal(3);
      }
    }
    // `ping` is on the wire but the SDK drops it.
    expect(types).to.deep.equal([
      'message_start', 'content_block_start', 'content_block_delta', 'content_block_delta',
      'content_block_stop', 'message_delta', 'message_stop',
    ]);
    expect(text).to.equal('alpha beta');

    const raw = await fetch(`${emulator.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': ANTHROPIC_EMULATOR_API_KEY, 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: MODEL, max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(raw.headers.get('content-type')).to.match(/^text\/event-stream/);
    const wire = await raw.text();
    expect(wire.match(/^event: .*$/gm)).to.deep.equal([
      'event: message_start', 'event: content_block_start', 'event: ping', 'event: content_block_delta',
      'event: content_block_delta', 'event: content_block_stop', 'event: message_delta', 'event: message_stop',
    ]);
  });

  it('delivers chunks before the reply completes when chunkDelay is set', async () => {
    emulator.respond(() => 'a b c d e');
    emulator.chunkDelay(60);
    const started = Date.now();
    const stream = client().messages.stream({ model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'go' }] });
    let firstAt = 0;
    stream.on('text', () => { firstAt ||= Date.now(); });
    await stream.finalMessage();
    const endedAt = Date.now();

    expect(firstAt).to.be.greaterThan(0);
    // 5 chunks: 4 gaps between them plus one before the block closes.
    expect(endedAt - firstAt).to.be.at.least(200);
    expect(firstAt - started).to.be.below(endedAt - started - 200);
  });

  it('has the SDK retry a 429 after its retry-after and then succeed', async () => {
    emulator.failNext(1, 429, { retryAfterSeconds: 1 });
    const started = Date.now();
    const message = await client({ maxRetries: 2 }).messages.create({
      model: MODEL, max_tokens: 32, messages: [{ role: 'user', content: 'again' }],
    });

    expect(message.content[0]).to.deep.equal({ type: 'text', text: 'Echo: again' });
    expect(Date.now() - started).to.be.at.least(950); // honoured retry-after rather than its ~0.5 s default backoff
    expect(emulator.requests.map((r) => r.status)).to.deep.equal([429, 200]);
    expect(emulator.requests[1]?.headers['x-stainless-retry-count']).to.equal('1');
  });

  it('surfaces a 429 as RateLimitError with retry-after and rate-limit headers when retries are off', async () => {
    emulator.failNext(1, 429, { retryAfterSeconds: 7 });
    const error = await thrown(() => client().messages.create({ model: MODEL, max_tokens: 32, messages: [{ role: 'user', content: 'x' }] }));

    expect(error).to.be.instanceOf(RateLimitError);
    const e = error as RateLimitError;
    expect(e.status).to.equal(429);
    expect(e.headers?.get('retry-after')).to.equal('7');
    expect(e.headers?.get('anthropic-ratelimit-requests-remaining')).to.equal('0');
    expect(e.headers?.get('anthropic-ratelimit-requests-reset')).to.match(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(e.error).to.deep.include({ type: 'error' });
    expect((e.error as { error: { type: string } }).error.type).to.equal('rate_limit_error');
    expect(e.requestID).to.equal(emulator.lastRequest()?.requestId);
    expect(emulator.calls).to.equal(1);
  });

  it('surfaces 529 overloaded_error and 500 api_error as InternalServerError with maxRetries 0', async () => {
    emulator.failNext(1, 529);
    emulator.failNext(1, 500);
    const params = { model: MODEL, max_tokens: 32, messages: [{ role: 'user' as const, content: 'x' }] };

    const overloaded = await thrown(() => client().messages.create(params));
    expect(overloaded).to.be.instanceOf(InternalServerError);
    expect((overloaded as APIError).status).to.equal(529);
    expect((overloaded as APIError).error).to.deep.include({ error: { type: 'overloaded_error', message: 'Overloaded' } });

    const internal = await thrown(() => client().messages.create(params));
    expect(internal).to.be.instanceOf(InternalServerError);
    expect((internal as APIError).status).to.equal(500);
    expect((internal as APIError).error).to.deep.include({ error: { type: 'api_error', message: 'Internal server error' } });

    // Faults are used up: the next request succeeds.
    expect((await client().messages.create(params)).content[0]).to.deep.equal({ type: 'text', text: 'Echo: x' });
    expect(emulator.requests.map((r) => r.status)).to.deep.equal([529, 500, 200]);
  });

  it('rejects a bad api key with AuthenticationError', async () => {
    const error = await thrown(() =>
      client({ apiKey: 'sk-ant-wrong' }).messages.create({ model: MODEL, max_tokens: 32, messages: [{ role: 'user', content: 'x' }] }));

    expect(error).to.be.instanceOf(AuthenticationError);
    expect((error as APIError).status).to.equal(401);
    expect((error as APIError).error).to.deep.include({ type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } });
  });

  it('rejects an invalid body with BadRequestError naming the problem', async () => {
    const error = await thrown(() => client().messages.create({ model: MODEL, max_tokens: 32, messages: [] }));

    expect(error).to.be.instanceOf(BadRequestError);
    expect((error as APIError).status).to.equal(400);
    expect((error as APIError).error).to.deep.include({ error: { type: 'invalid_request_error', message: 'messages: at least one message is required' } });
  });

  it('validates headers and bodies on the wire like the real API', async () => {
    const ok = { model: MODEL, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] };
    const cases: Array<[unknown, Record<string, string>, number, string, RegExp]> = [
      [ok, { 'x-api-key': '' }, 401, 'authentication_error', /x-api-key header is required/],
      [ok, { 'anthropic-version': '2024-10-22' }, 400, 'invalid_request_error', /anthropic-version: "2024-10-22" is not a valid version/],
      ['{not json', {}, 400, 'invalid_request_error', /error parsing the body/],
      [{ ...ok, model: undefined }, {}, 400, 'invalid_request_error', /^model: Field required$/],
      [{ ...ok, max_tokens: 0 }, {}, 400, 'invalid_request_error', /^max_tokens: Input should be greater than or equal to 1$/],
      [{ ...ok, max_tokens: 1.5 }, {}, 400, 'invalid_request_error', /^max_tokens: Input should be a valid integer$/],
      [{ ...ok, messages: [{ role: 'assistant', content: 'hi' }] }, {}, 400, 'invalid_request_error', /first message must use the "user" role/],
      [{ ...ok, messages: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }] }, {}, 400, 'invalid_request_error', /roles must alternate/],
      [{ ...ok, messages: [{ role: 'system', content: 'a' }] }, {}, 400, 'invalid_request_error', /^messages\.0\.role: Input should be 'user' or 'assistant'$/],
      [{ ...ok, messages: [{ role: 'user', content: 42 }] }, {}, 400, 'invalid_request_error', /^messages\.0\.content:/],
      [{ ...ok, system: 7 }, {}, 400, 'invalid_request_error', /^system:/],
      [{ ...ok, system: [{ type: 'image' }] }, {}, 400, 'invalid_request_error', /^system\.0\.type:/],
    ];
    for (const [body, headers, status, type, message] of cases) {
      const res = await rawPost(body, headers);
      expect(res.status, JSON.stringify(body)).to.equal(status);
      expect(res.json.type).to.equal('error');
      expect(res.json.error.type).to.equal(type);
      expect(res.json.error.message).to.match(message);
      expect(res.json.request_id).to.equal(res.headers.get('request-id'));
    }
    const noVersion = await fetch(`${emulator.url}/v1/messages`, {
      method: 'POST', headers: { 'x-api-key': ANTHROPIC_EMULATOR_API_KEY }, body: JSON.stringify(ok),
    });
    expect(noVersion.status).to.equal(400);
    expect(await noVersion.json()).to.deep.include({ error: { type: 'invalid_request_error', message: 'anthropic-version: header is required' } });
    expect(emulator.calls).to.equal(cases.length + 1);
  });

  it('makes the SDK stream throw on a mid-stream error event', async () => {
    emulator.respond(() => 'one two three four five');
    emulator.breakStreamNext(1, 2);
    const stream = client().messages.stream({ model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'x' }] });
    const deltas: string[] = [];
    stream.on('text', (d) => deltas.push(d));
    stream.on('error', () => {}); // the rejection is asserted through finalMessage()
    const error = await thrown(() => stream.finalMessage());

    expect(deltas).to.deep.equal(['one ', 'two ']);
    expect(error).to.be.instanceOf(APIError);
    expect((error as APIError).error).to.deep.include({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });

    // Only one stream was broken.
    const next = await client().messages.stream({ model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'x' }] }).finalText();
    expect(next).to.equal('one two three four five');
  });

  it('makes the SDK stream throw when the connection drops mid-stream', async () => {
    emulator.respond(() => 'one two three four five');
    emulator.dropStreamNext(1, 3);
    const stream = await client().messages.create({ model: MODEL, max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'x' }] });
    let text = '';
    const error = await thrown(async () => {
      for await (const event of stream) {
        if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
      }
    });

    expect(text).to.equal('one two three ');
    expect(error).to.be.instanceOf(Error);
    expect(emulator.lastRequest()?.status).to.equal(200);
  });

  it('retries a failed stream request (529 before the stream starts) and then streams', async () => {
    emulator.failNext(1, 529, { retryAfterSeconds: 0.05 });
    const text = await client({ maxRetries: 1 }).messages
      .stream({ model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'retry me' }] })
      .finalText();

    expect(text).to.equal('Echo: retry me');
    expect(emulator.requests.map((r) => r.status)).to.deep.equal([529, 200]);
  });

  it('holds every answer for the set latency until it is set back to 0', async () => {
    emulator.latency(600_000); // far beyond the client's timeout, however slow the machine
    for (const content of ['x', 'y']) {
      const error = await thrown(() => client({ timeout: 150, maxRetries: 0 }).messages.create({ model: MODEL, max_tokens: 32, messages: [{ role: 'user', content }] }));
      expect(error).to.be.instanceOf(APIConnectionTimeoutError);
    }
    expect(emulator.requests.map((r) => r.status)).to.deep.equal([null, null]); // neither was answered
    expect(() => emulator.latency(-1)).to.throw(RangeError);

    emulator.latency(0);
    const message = await client({ timeout: 2000 }).messages.create({ model: MODEL, max_tokens: 32, messages: [{ role: 'user', content: 'z' }] });
    expect(message.content[0]).to.deep.equal({ type: 'text', text: 'Echo: z' });
  });

  it('times out the SDK with APIConnectionTimeoutError when slowNext delays the answer', async () => {
    emulator.slowNext(1, 600_000); // far beyond the client's timeout, however slow the machine
    const error = await thrown(() =>
      client({ timeout: 150 }).messages.create({ model: MODEL, max_tokens: 32, messages: [{ role: 'user', content: 'x' }] }));

    expect(error).to.be.instanceOf(APIConnectionTimeoutError);
    expect(error).to.be.instanceOf(APIConnectionError);
    expect(emulator.calls).to.equal(1);
    expect(emulator.requests[0]?.status).to.equal(null); // never answered: the client gave up first

    // The slow fault is spent; the emulator still answers.
    const message = await client({ timeout: 2000 }).messages.create({ model: MODEL, max_tokens: 32, messages: [{ role: 'user', content: 'y' }] });
    expect(message.content[0]).to.deep.equal({ type: 'text', text: 'Echo: y' });
  });

  it('ends generation at max_tokens and stop_sequences like the real API', async () => {
    emulator.respond(() => 'abcdefghijklmnopqrstuvwxyz');
    const truncated = await client().messages.create({ model: MODEL, max_tokens: 2, messages: [{ role: 'user', content: 'x' }] });
    expect(truncated.content[0]).to.deep.equal({ type: 'text', text: 'abcdefgh' });
    expect(truncated.stop_reason).to.equal('max_tokens');
    expect(truncated.usage.output_tokens).to.equal(2);

    const stopped = await client().messages.create({ model: MODEL, max_tokens: 100, stop_sequences: ['k'], messages: [{ role: 'user', content: 'x' }] });
    expect(stopped.content[0]).to.deep.equal({ type: 'text', text: 'abcdefghij' });
    expect(stopped.stop_reason).to.equal('stop_sequence');
    expect(stopped.stop_sequence).to.equal('k');
  });

  it('counts tokens with the same estimate (messages.countTokens)', async () => {
    const counted = await client().messages.countTokens({ model: MODEL, system: 'abcd', messages: [{ role: 'user', content: 'efgh' }] });
    expect(counted.input_tokens).to.equal(2);
  });

  it('reset() clears recorded requests, faults, the responder, the chunk delay and the latency', async () => {
    await rawPost({});
    emulator.respond(() => 'custom');
    // Delays no test would outwait: left in place, they would hold the request past the test's timeout.
    emulator.chunkDelay(600_000);
    emulator.latency(600_000);
    emulator.failNext(3, 500);
    emulator.slowNext(3, 600_000);
    emulator.breakStreamNext(3, 0);
    expect(emulator.calls).to.equal(1);
    emulator.reset();

    expect(emulator.calls).to.equal(0);
    expect(emulator.requests).to.have.length(0);
    const text = await client({ maxRetries: 0 }).messages.stream({ model: MODEL, max_tokens: 32, messages: [{ role: 'user', content: 'a b c' }] }).finalText();
    expect(text).to.equal('Echo: a b c');
    expect(emulator.requests.map((r) => r.status)).to.deep.equal([200]);
  });

  describe('tool use', () => {
    const weather = {
      name: 'get_weather',
      description: 'The weather in a city.',
      input_schema: { type: 'object' as const, properties: { city: { type: 'string' } }, required: ['city'] },
    };
    const ask = [{ role: 'user' as const, content: 'Weather in Lyon?' }];

    it('answers a scripted tool call with stop_reason tool_use, then reads the tool_result of the next request', async () => {
      emulator.respond(
        scriptedResponder([
          { content: [{ type: 'text', text: 'Let me check.' }, { type: 'tool_use', name: 'get_weather', input: { city: 'Lyon' } }] },
          (body) => `It is ${String(toolResults(body)[0]?.['content'])}.`,
        ]),
      );
      const first = await client().messages.create({ model: MODEL, max_tokens: 256, tools: [weather], messages: ask });
      expect(first.stop_reason).to.equal('tool_use');
      const call = first.content[1]!;
      expect(call).to.include({ type: 'tool_use', name: 'get_weather' });
      if (call.type !== 'tool_use') throw new Error('not a tool call');
      expect(call.input).to.deep.equal({ city: 'Lyon' });
      expect(call.id).to.match(/^toolu_/);
      expect(emulator.lastRequest()!.body['tools']).to.deep.equal([weather]);

      const second = await client().messages.create({
        model: MODEL,
        max_tokens: 256,
        tools: [weather],
        messages: [...ask, { role: 'assistant', content: first.content }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: 'sunny' }] }],
      });
      expect(second.content).to.deep.equal([{ type: 'text', text: 'It is sunny.' }]);
      expect(second.stop_reason).to.equal('end_turn');
    });

    it('refuses a tool call left without its tool_result, a stray tool_result and a malformed tool like the real API', async () => {
      emulator.respond(() => ({ content: [{ type: 'tool_use', name: 'get_weather', input: { city: 'Lyon' } }] }));
      const first = await client().messages.create({ model: MODEL, max_tokens: 256, tools: [weather], messages: ask });
      const unanswered = await thrown(() =>
        client().messages.create({
          model: MODEL,
          max_tokens: 256,
          tools: [weather],
          messages: [...ask, { role: 'assistant', content: first.content }, { role: 'user', content: 'well?' }],
        }),
      );
      expect(unanswered).to.be.instanceOf(BadRequestError);
      expect((unanswered as BadRequestError).message).to.include('`tool_use` ids were found without `tool_result` blocks');
      const stray = await rawPost({
        model: MODEL,
        max_tokens: 10,
        messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_nothing', content: 'x' }] }],
      });
      expect(stray.status).to.equal(400);
      expect(stray.json.error.message).to.include('unexpected `tool_use_id`');
      const badName = await rawPost({ model: MODEL, max_tokens: 10, tools: [{ ...weather, name: 'get weather' }], messages: ask });
      expect(badName.status).to.equal(400);
      const twice = await rawPost({ model: MODEL, max_tokens: 10, tools: [weather, weather], messages: ask });
      expect(twice.json.error.message).to.equal('tools: Tool names must be unique.');
    });

    it('streams a tool call as content_block_start, input_json_delta pieces and content_block_stop', async () => {
      emulator.respond(() => ({ content: [{ type: 'text', text: 'Checking.' }, { type: 'tool_use', name: 'get_weather', input: { city: 'Lyon', days: 3 } }] }));
      const stream = client().messages.stream({ model: MODEL, max_tokens: 256, tools: [weather], messages: ask });
      const pieces: string[] = [];
      const blocks: string[] = [];
      stream.on('inputJson', (partial) => pieces.push(partial));
      stream.on('contentBlock', (block) => blocks.push(block.type));
      const final = await stream.finalMessage();
      expect(pieces.join('')).to.equal('{"city":"Lyon","days":3}');
      expect(pieces.length).to.be.greaterThan(1);
      expect(blocks).to.deep.equal(['text', 'tool_use']);
      expect(final.stop_reason).to.equal('tool_use');
      expect(final.content[1]).to.deep.include({ type: 'tool_use', name: 'get_weather', input: { city: 'Lyon', days: 3 } });
    });

    it('runs web search as a server tool within max_uses, with results and cited text, streamed or not', async () => {
      const results = [
        { url: 'https://news.example/a', title: 'Story A' },
        { url: 'https://news.example/b', title: 'Story B' },
      ];
      emulator.respond(() => ({
        content: [
          { type: 'web_search', query: 'news today', results },
          { type: 'text', text: 'A happened.', citations: [{ url: 'https://news.example/a', title: 'Story A' }] },
          { type: 'web_search', query: 'more news', results },
        ],
      }));
      const tools = [{ type: 'web_search_20250305' as const, name: 'web_search' as const, max_uses: 1 }];
      const params = { model: MODEL, max_tokens: 512, tools, messages: [{ role: 'user' as const, content: 'news?' }] };
      for (const message of [await client().messages.create(params), await client().messages.stream(params).finalMessage()]) {
        expect(message.content.map((b) => b.type)).to.deep.equal([
          'server_tool_use', 'web_search_tool_result', 'text', 'server_tool_use', 'web_search_tool_result',
        ]);
        expect(message.content[0]).to.deep.include({ name: 'web_search', input: { query: 'news today' } });
        const found = message.content[1]!;
        if (found.type !== 'web_search_tool_result' || !Array.isArray(found.content)) throw new Error('no results');
        expect(found.content.map((r) => r.url)).to.deep.equal(results.map((r) => r.url));
        const text = message.content[2]!;
        if (text.type !== 'text') throw new Error('no text');
        expect(text.citations?.[0]).to.include({ type: 'web_search_result_location', url: 'https://news.example/a', title: 'Story A' });
        expect(message.content[4]).to.deep.include({ content: { type: 'web_search_tool_result_error', error_code: 'max_uses_exceeded' } });
        expect(message.stop_reason).to.equal('end_turn');
        expect(message.usage.server_tool_use?.web_search_requests).to.equal(2);
      }
    });

    it('fetches a page as a server tool only with the web fetch beta header', async () => {
      emulator.respond(() => ({ content: [{ type: 'web_fetch', url: 'https://docs.example/page', title: 'The page', text: 'Page text.' }, { type: 'text', text: 'Read it.' }] }));
      const tools = [{ type: 'web_fetch_20250910' as const, name: 'web_fetch' as const, max_uses: 2 }];
      const message = await client().beta.messages.create({ model: MODEL, max_tokens: 256, tools, betas: [WEB_FETCH_BETA], messages: ask });
      expect(emulator.lastRequest()!.headers['anthropic-beta']).to.equal(WEB_FETCH_BETA);
      const fetched = message.content[1]!;
      if (fetched.type !== 'web_fetch_tool_result' || fetched.content.type !== 'web_fetch_result') throw new Error('no page');
      expect(fetched.content.url).to.equal('https://docs.example/page');
      expect(fetched.content.content.title).to.equal('The page');

      const without = await rawPost({ model: MODEL, max_tokens: 10, tools, messages: ask });
      expect(without.status).to.equal(400);
      expect(without.json.error.message).to.include(WEB_FETCH_BETA);
    });

    it('fails the request when the script calls a server tool the request does not offer', async () => {
      emulator.respond(() => ({ content: [{ type: 'web_search', query: 'x', results: [] }] }));
      const answer = await rawPost({ model: MODEL, max_tokens: 10, messages: ask });
      expect(answer.status).to.equal(500);
      expect(answer.json.error.message).to.include('does not offer');
    });
  });
});
