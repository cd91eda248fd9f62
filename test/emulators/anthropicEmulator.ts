// An Anthropic Messages API emulator speaking the real wire protocol (x-api-key + anthropic-version headers,
// JSON request bodies, Message objects, SSE streams with the real event sequence, `{ type: 'error', error }`
// bodies with the real status codes and headers), so the official `@anthropic-ai/sdk` client can be pointed at
// it with `new Anthropic({ apiKey, baseURL: emulator.url })` and exercised for real: retries, timeouts, stream
// parsing and error classes all run the SDK's own code.
//
// Replies are deterministic: the text comes from a settable responder (default: `Echo: <last user text>`),
// usage is an estimate of ~4 characters per token. A responder may instead script a reply of blocks (see
// ScriptBlock): text with web-search citations, client tool calls (stop_reason tool_use; the next request must carry
// their tool_result blocks, as the real API checks) and the server tools web search and web fetch (server_tool_use
// followed by its result block, within max_uses; web fetch only with its beta header), streamed with
// content_block_start/stop, input_json_delta and citations_delta like the real API. A set latency holds every answer like a model's thinking time.
// Faults are injected on demand (failNext, slowNext, breakStreamNext, dropStreamNext) and consumed in
// request-arrival order.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const ANTHROPIC_EMULATOR_API_KEY = 'sk-ant-emulator';
/** The versions the real API accepts in the `anthropic-version` header. */
export const ANTHROPIC_VERSIONS = ['2023-01-01', '2023-06-01'] as const;
/** The real API rejects request bodies above 32 MB with 413 request_too_large. */
const MAX_BODY_BYTES = 32 * 1024 * 1024;

export type Role = 'user' | 'assistant';

export interface ContentBlock {
  type: string;
  text?: string;
  [key: string]: unknown;
}

export interface MessageParam {
  role: Role;
  content: string | ContentBlock[];
}

export interface TextBlockParam {
  type: 'text';
  text: string;
  [key: string]: unknown;
}

/** The shape of a valid POST /v1/messages body (the fields the emulator looks at; others are kept as sent). */
export interface MessagesRequestBody {
  model: string;
  max_tokens: number;
  messages: MessageParam[];
  system?: string | TextBlockParam[];
  stream?: boolean;
  stop_sequences?: string[];
  temperature?: number;
  metadata?: { user_id?: string | null };
  [key: string]: unknown;
}

export interface RecordedRequest {
  method: string;
  /** Path without the query string, e.g. `/v1/messages`. */
  path: string;
  /** Lower-cased request headers as received. */
  headers: IncomingHttpHeaders;
  /**
   * The parsed JSON body. Typed as a valid Messages body for convenient assertions; when `status` is 400 the body
   * was rejected and may not conform (it is `undefined` when the body was not JSON).
   */
  body: MessagesRequestBody;
  rawBody: string;
  /** Whether the body asked for `stream: true`. */
  stream: boolean;
  /** The `request-id` header the emulator answered with. */
  requestId: string;
  /** HTTP status answered; `null` while the request is still in flight (or the socket was dropped before headers). */
  status: number | null;
  receivedAt: number;
  /** The connection closed before the answer was complete: the client went away (or a drop fault cut it). */
  cutOff: boolean;
}

/** A block of a scripted reply; ids, encrypted fields and the server tool blocks are filled in as the API would. */
export type ScriptBlock =
  | { type: 'text'; text: string; citations?: { url: string; title: string; cited_text?: string }[] }
  | { type: 'tool_use'; name: string; input: Record<string, unknown> }
  | { type: 'web_search'; query: string; results: { url: string; title: string; page_age?: string }[] }
  | { type: 'web_fetch'; url: string; title: string; text: string };

export interface ScriptedReply {
  content: ScriptBlock[];
}

export type Responder = (body: MessagesRequestBody, request: RecordedRequest) => string | ScriptedReply | Promise<string | ScriptedReply>;

/** The beta header value the web fetch tool needs. */
export const WEB_FETCH_BETA = 'web-fetch-2025-09-10';

/** A responder answering each request with the next step (a reply, or a function of the request); past the last, an error. */
export function scriptedResponder(steps: (string | ScriptedReply | ((body: MessagesRequestBody) => string | ScriptedReply))[]): Responder {
  let next = 0;
  return (body) => {
    const step = steps[next++];
    if (step === undefined) throw new Error(`the script has ${steps.length} steps and request ${next} asked for another`);
    return typeof step === 'function' ? step(body) : step;
  };
}

/** The tool_result blocks of the request's last message (what the runtime sent back for the tools). */
export function toolResults(body: Pick<MessagesRequestBody, 'messages'>): ContentBlock[] {
  const last = body.messages.at(-1);
  return last && Array.isArray(last.content) ? last.content.filter((b) => b.type === 'tool_result') : [];
}

/** A scripted tool call of the model (the emulator gives it its id). */
export const toolCall = (name: string, input: Record<string, unknown>) => ({ type: 'tool_use' as const, name, input });

/** The names of the tools a request offered the model. */
export const offeredTools = (body: MessagesRequestBody): string[] => ((body['tools'] ?? []) as { name: string }[]).map((t) => t.name);

/** A tool_result block's text ('' for none). */
export const toolResultText = (block: ContentBlock | undefined): string => contentText([{ type: 'tool_result', content: block?.['content'] }]);

export interface FailOptions {
  /** `retry-after` header in seconds (fractions allowed, the SDK parses floats). Default 1 for 429, absent otherwise. */
  retryAfterSeconds?: number;
  /** Error message in the body; defaults to the real API's wording for the status. */
  message?: string;
  /** Sends `x-should-retry: true|false`, which the SDK obeys over its status-based rule. */
  shouldRetry?: boolean;
}

export interface AnthropicEmulator {
  /** Base URL for the SDK's `baseURL`, e.g. `http://127.0.0.1:54321` (no trailing slash). */
  readonly url: string;
  readonly port: number;
  readonly apiKey: string;
  /** Every request received, in arrival order (including rejected and fault-injected ones). */
  readonly requests: RecordedRequest[];
  /** Number of requests received (equals `requests.length`). */
  readonly calls: number;
  /** The most recent request, if any. */
  lastRequest(): RecordedRequest | undefined;
  /** Sets how reply text is produced; `respond()` with no argument restores the echo responder. */
  respond(responder?: Responder): void;
  /** Delay in ms between streamed text deltas (default 0). */
  chunkDelay(ms: number): void;
  /** Every request waits `ms` after its body is read before it is answered (a model's latency; default 0). */
  latency(ms: number): void;
  /** The next `n` requests answer `status` with the real error type, body and headers. */
  failNext(n: number, status: number, opts?: FailOptions): void;
  /** The next `n` requests wait `ms` before answering (to trigger client timeouts). */
  slowNext(n: number, ms: number): void;
  /** The next `n` streaming responses send `afterChunks` text deltas, then an `event: error` (overloaded_error) and end. */
  breakStreamNext(n: number, afterChunks: number): void;
  /** The next `n` streaming responses send `afterChunks` text deltas, then the socket is destroyed. */
  dropStreamNext(n: number, afterChunks: number): void;
  /** Clears recorded requests, the call count and pending faults; restores the default responder, chunk delay and latency. */
  reset(): void;
  close(): Promise<void>;
}

const ERROR_TYPES: Record<number, { type: string; message: string }> = {
  400: { type: 'invalid_request_error', message: 'Invalid request' },
  401: { type: 'authentication_error', message: 'invalid x-api-key' },
  402: { type: 'billing_error', message: 'Your credit balance is too low to access the Anthropic API.' },
  403: { type: 'permission_error', message: 'Your API key does not have permission to use the specified resource.' },
  404: { type: 'not_found_error', message: 'Not found' },
  413: { type: 'request_too_large', message: 'Request exceeds the maximum allowed number of bytes.' },
  429: { type: 'rate_limit_error', message: 'This request would exceed your organization\'s rate limit. Please reduce the prompt length or the maximum tokens requested, or try again later.' },
  500: { type: 'api_error', message: 'Internal server error' },
  504: { type: 'timeout_error', message: 'Request timed out' },
  529: { type: 'overloaded_error', message: 'Overloaded' },
};

function errorTypeFor(status: number): { type: string; message: string } {
  return ERROR_TYPES[status] ?? (status >= 500 ? { type: 'api_error', message: 'Internal server error' } : { type: 'invalid_request_error', message: 'Invalid request' });
}

/** Thrown by validateMessagesBody; its message is the 400 invalid_request_error message. */
export class InvalidRequestBody extends Error {}

/** Deterministic token estimate: ~4 characters per token. */
export function estimateTokens(chars: number): number {
  return Math.ceil(chars / 4);
}

function blockText(block: ContentBlock): string {
  if (block.type === 'text' && typeof block.text === 'string') return block.text;
  if (block.type === 'tool_result') {
    const c = block['content'];
    if (typeof c === 'string') return c;
    if (Array.isArray(c)) return (c as ContentBlock[]).map(blockText).join('\n');
    return '';
  }
  return '';
}

/** The text of a message's content: a string as is, blocks' text joined by newlines. */
export function contentText(content: string | ContentBlock[]): string {
  return typeof content === 'string' ? content : content.map(blockText).join('\n');
}

/** The system prompt as one string (text blocks joined by newlines), or '' when absent. */
export function systemText(body: Pick<MessagesRequestBody, 'system'>): string {
  const s = body.system;
  if (s === undefined) return '';
  return typeof s === 'string' ? s : s.map((b) => b.text).join('\n');
}

function contentChars(content: string | ContentBlock[]): number {
  if (typeof content === 'string') return content.length;
  let n = 0;
  for (const b of content) n += b.type === 'text' && typeof b.text === 'string' ? b.text.length : JSON.stringify(b).length;
  return n;
}

/** input_tokens = ceil(characters of system + all message content + the tools' definitions / 4), at least 1. */
export function inputTokensFor(body: Pick<MessagesRequestBody, 'system' | 'messages'> & { tools?: unknown }): number {
  let chars = systemText(body).length;
  for (const m of body.messages) chars += contentChars(m.content);
  if (Array.isArray(body.tools)) chars += JSON.stringify(body.tools).length;
  return Math.max(1, estimateTokens(chars));
}

export const echoResponder: Responder = (body) => {
  const lastUser = [...body.messages].reverse().find((m) => m.role === 'user');
  return `Echo: ${lastUser ? contentText(lastUser.content) : ''}`;
};

/** Splits text into word chunks, each keeping its trailing whitespace; concatenating them gives the text back. */
export function splitIntoChunks(text: string): string[] {
  const chunks = text.match(/\s*\S+\s*/g);
  if (!chunks) return text.length > 0 ? [text] : [];
  return chunks;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function validateBlocks(blocks: unknown[], at: string): void {
  blocks.forEach((b, j) => {
    if (!isObject(b)) throw new InvalidRequestBody(`${at}.${j}: Input should be a valid dictionary or object to extract fields from`);
    if (typeof b['type'] !== 'string') throw new InvalidRequestBody(`${at}.${j}.type: Field required`);
    if (b['type'] === 'text') {
      if (typeof b['text'] !== 'string') throw new InvalidRequestBody(`${at}.${j}.text: Field required`);
      if (b['text'].length === 0) throw new InvalidRequestBody('messages: text content blocks must be non-empty');
    }
  });
}

/** Validates a Messages request body as the real API does for the fields the SDK sends; throws InvalidRequestBody. */
export function validateMessagesBody(body: unknown): asserts body is MessagesRequestBody {
  if (!isObject(body)) throw new InvalidRequestBody('Input should be a valid dictionary or object to extract fields from');
  if (!('model' in body)) throw new InvalidRequestBody('model: Field required');
  if (typeof body['model'] !== 'string') throw new InvalidRequestBody('model: Input should be a valid string');
  if (body['model'].length === 0) throw new InvalidRequestBody('model: String should have at least 1 character');

  if (!('max_tokens' in body)) throw new InvalidRequestBody('max_tokens: Field required');
  const maxTokens = body['max_tokens'];
  if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens)) throw new InvalidRequestBody('max_tokens: Input should be a valid integer');
  if (maxTokens < 1) throw new InvalidRequestBody('max_tokens: Input should be greater than or equal to 1');

  if (!('messages' in body)) throw new InvalidRequestBody('messages: Field required');
  const messages = body['messages'];
  if (!Array.isArray(messages)) throw new InvalidRequestBody('messages: Input should be a valid list');
  if (messages.length === 0) throw new InvalidRequestBody('messages: at least one message is required');
  messages.forEach((m: unknown, i) => {
    if (!isObject(m)) throw new InvalidRequestBody(`messages.${i}: Input should be a valid dictionary or object to extract fields from`);
    if (!('role' in m)) throw new InvalidRequestBody(`messages.${i}.role: Field required`);
    if (m['role'] !== 'user' && m['role'] !== 'assistant') throw new InvalidRequestBody(`messages.${i}.role: Input should be 'user' or 'assistant'`);
    if (!('content' in m)) throw new InvalidRequestBody(`messages.${i}.content: Field required`);
    const content = m['content'];
    if (typeof content !== 'string' && !Array.isArray(content)) throw new InvalidRequestBody(`messages.${i}.content: Input should be a valid string or a valid list`);
    if (Array.isArray(content)) validateBlocks(content, `messages.${i}.content`);
    const isFinalAssistant = i === messages.length - 1 && m['role'] === 'assistant';
    if (content.length === 0 && !isFinalAssistant) {
      throw new InvalidRequestBody(`messages.${i}: all messages must have non-empty content except for the optional final assistant message`);
    }
  });
  const roles = messages.map((m) => (m as MessageParam).role);
  if (roles[0] !== 'user') throw new InvalidRequestBody('messages: first message must use the "user" role');
  for (let i = 1; i < roles.length; i++) {
    if (roles[i] === roles[i - 1]) {
      throw new InvalidRequestBody(`messages: roles must alternate between "user" and "assistant", but found multiple "${roles[i]}" roles in a row`);
    }
  }

  if ('system' in body && body['system'] !== undefined) {
    const system = body['system'];
    if (Array.isArray(system)) {
      system.forEach((b: unknown, j) => {
        if (!isObject(b)) throw new InvalidRequestBody(`system.${j}: Input should be a valid dictionary or object to extract fields from`);
        if (b['type'] !== 'text') throw new InvalidRequestBody(`system.${j}.type: Input should be 'text'`);
        if (typeof b['text'] !== 'string') throw new InvalidRequestBody(`system.${j}.text: Field required`);
        if (b['text'].length === 0) throw new InvalidRequestBody('system: text content blocks must be non-empty');
      });
    } else if (typeof system !== 'string') {
      throw new InvalidRequestBody('system: Input should be a valid string or a valid list');
    }
  }
  if ('stream' in body && body['stream'] !== undefined && typeof body['stream'] !== 'boolean') {
    throw new InvalidRequestBody('stream: Input should be a valid boolean');
  }
  if ('temperature' in body && body['temperature'] !== undefined) {
    const t = body['temperature'];
    if (typeof t !== 'number') throw new InvalidRequestBody('temperature: Input should be a valid number');
    if (t < 0 || t > 1) throw new InvalidRequestBody(`temperature: Input should be ${t < 0 ? 'greater than or equal to 0' : 'less than or equal to 1'}`);
  }
  if ('stop_sequences' in body && body['stop_sequences'] !== undefined) {
    const s = body['stop_sequences'];
    if (!Array.isArray(s) || s.some((x) => typeof x !== 'string')) throw new InvalidRequestBody('stop_sequences: Input should be a valid list of strings');
  }
  if ('tools' in body && body['tools'] !== undefined) validateTools(body['tools']);
  validateToolPairs(messages as MessageParam[]);
}

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
/** The server tools the emulator runs, by type, with the name each must have. */
const SERVER_TOOLS: Record<string, string> = { web_search_20250305: 'web_search', web_fetch_20250910: 'web_fetch' };

function validateTools(tools: unknown): void {
  if (!Array.isArray(tools)) throw new InvalidRequestBody('tools: Input should be a valid list');
  const names = new Set<string>();
  tools.forEach((t: unknown, i) => {
    if (!isObject(t)) throw new InvalidRequestBody(`tools.${i}: Input should be a valid dictionary or object to extract fields from`);
    const type = t['type'];
    if (type !== undefined && type !== 'custom') {
      const name = SERVER_TOOLS[String(type)];
      if (name === undefined) throw new InvalidRequestBody(`tools.${i}: Input tag '${String(type)}' found using 'type' does not match any of the expected tags`);
      if (t['name'] !== name) throw new InvalidRequestBody(`tools.${i}.${String(type)}.name: Input should be '${name}'`);
      const uses = t['max_uses'];
      if (uses !== undefined && uses !== null && !(Number.isInteger(uses) && (uses as number) >= 1)) {
        throw new InvalidRequestBody(`tools.${i}.${String(type)}.max_uses: Input should be greater than 0`);
      }
    } else {
      if (typeof t['name'] !== 'string' || !TOOL_NAME.test(t['name'])) {
        throw new InvalidRequestBody(`tools.${i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'`);
      }
      const schema = t['input_schema'];
      if (!isObject(schema)) throw new InvalidRequestBody(`tools.${i}.custom.input_schema: Field required`);
      if (schema['type'] !== 'object') throw new InvalidRequestBody(`tools.${i}.custom.input_schema.type: Input should be 'object'`);
    }
    const name = String(t['name']);
    if (names.has(name)) throw new InvalidRequestBody('tools: Tool names must be unique.');
    names.add(name);
  });
}

/** Each tool_use must be answered by a tool_result at the start of the next message, and each tool_result answer one. */
function validateToolPairs(messages: MessageParam[]): void {
  messages.forEach((m, i) => {
    if (m.role !== 'user') return;
    const before = messages[i - 1];
    const asked = new Set(
      before && Array.isArray(before.content) ? before.content.filter((b) => b.type === 'tool_use').map((b) => String(b['id'])) : [],
    );
    let seenOther = false;
    const blocks: ContentBlock[] = Array.isArray(m.content) ? m.content : [{ type: 'text', text: m.content }];
    blocks.forEach((b, j) => {
      if (b.type !== 'tool_result') {
        seenOther = true;
        return;
      }
      if (seenOther) throw new InvalidRequestBody(`messages.${i}.content.${j}: tool_result blocks must come first in the content array`);
      if (!asked.has(String(b['tool_use_id']))) {
        throw new InvalidRequestBody(
          `messages.${i}.content.${j}: unexpected \`tool_use_id\` found in \`tool_result\` blocks: ${String(b['tool_use_id'])}. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.`,
        );
      }
      asked.delete(String(b['tool_use_id']));
    });
    if (asked.size > 0) {
      throw new InvalidRequestBody(
        `messages.${i - 1}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${[...asked].join(', ')}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`,
      );
    }
  });
  const last = messages.at(-1);
  if (last?.role === 'assistant' && Array.isArray(last.content) && last.content.some((b) => b.type === 'tool_use')) {
    throw new InvalidRequestBody(`messages.${messages.length - 1}: a final assistant message must not end with a tool_use block`);
  }
}

/** A content block as the API answers it. */
type ApiBlock = Record<string, unknown> & { type: string };

interface Reply {
  /** A plain reply's text ('' for a scripted one). */
  text: string;
  /** A scripted reply's blocks, as the API answers them; undefined for a plain reply (one text block). */
  blocks?: ApiBlock[];
  stopReason: 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use';
  stopSequence: string | null;
  inputTokens: number;
  outputTokens: number;
  webSearchRequests: number;
}

/** Applies stop_sequences and max_tokens to the responder's text as the real API would end generation. */
function shapeReply(body: MessagesRequestBody, raw: string): Reply {
  let text = raw;
  let stopReason: Reply['stopReason'] = 'end_turn';
  let stopSequence: string | null = null;
  let cut = -1;
  for (const seq of body.stop_sequences ?? []) {
    if (seq.length === 0) continue;
    const at = text.indexOf(seq);
    if (at >= 0 && (cut < 0 || at < cut)) { cut = at; stopSequence = seq; }
  }
  if (cut >= 0) { text = text.slice(0, cut); stopReason = 'stop_sequence'; }
  if (estimateTokens(text.length) > body.max_tokens) {
    text = text.slice(0, body.max_tokens * 4);
    stopReason = 'max_tokens';
    stopSequence = null;
  }
  return { text, stopReason, stopSequence, inputTokens: inputTokensFor(body), outputTokens: estimateTokens(text.length), webSearchRequests: 0 };
}

/** The offered tool of a type (server tools) or name (client tools), if the request has it. */
function offered(body: MessagesRequestBody, match: (tool: Record<string, unknown>) => boolean): Record<string, unknown> | undefined {
  const tools = Array.isArray(body['tools']) ? (body['tools'] as Record<string, unknown>[]) : [];
  return tools.find(match);
}

/**
 * A scripted reply's blocks as the API answers them: ids assigned, each server tool call followed by its result
 * (an error past the tool's max_uses, as the real API answers), stop_reason tool_use when a client tool is called.
 */
function scriptReply(body: MessagesRequestBody, rec: RecordedRequest, script: ScriptedReply): Reply {
  const blocks: ApiBlock[] = [];
  const uses: Record<string, number> = {};
  let n = 0;
  const id = (prefix: string) => `${prefix}_01Emu${rec.requestId.slice(-8)}${String(++n).padStart(4, '0')}`;
  const encoded = (text: string) => Buffer.from(text).toString('base64');
  for (const block of script.content) {
    if (block.type === 'text') {
      const citations = block.citations?.map((c) => ({
        type: 'web_search_result_location', url: c.url, title: c.title, cited_text: c.cited_text ?? c.title, encrypted_index: encoded(c.url),
      }));
      blocks.push({ type: 'text', text: block.text, ...(citations ? { citations } : {}) });
    } else if (block.type === 'tool_use') {
      blocks.push({ type: 'tool_use', id: id('toolu'), name: block.name, input: block.input });
    } else {
      const [toolType, name] = block.type === 'web_search' ? ['web_search_20250305', 'web_search'] : ['web_fetch_20250910', 'web_fetch'];
      const tool = offered(body, (t) => t['type'] === toolType);
      if (!tool) throw new Error(`the script calls ${name}, which the request does not offer`);
      const used = (uses[name] = (uses[name] ?? 0) + 1);
      const over = typeof tool['max_uses'] === 'number' && used > tool['max_uses'];
      const useId = id('srvtoolu');
      const [input, found] =
        block.type === 'web_search'
          ? [
              { query: block.query },
              block.results.map((r) => ({ type: 'web_search_result', url: r.url, title: r.title, page_age: r.page_age ?? null, encrypted_content: encoded(r.title) })),
            ]
          : [
              { url: block.url },
              {
                type: 'web_fetch_result',
                url: block.url,
                retrieved_at: new Date(rec.receivedAt).toISOString(),
                content: { type: 'document', title: block.title, citations: null, source: { type: 'text', media_type: 'text/plain', data: block.text } },
              },
            ];
      blocks.push(
        { type: 'server_tool_use', id: useId, name, input },
        {
          type: `${name}_tool_result`,
          tool_use_id: useId,
          content: over ? { type: `${name}_tool_result_error`, error_code: 'max_uses_exceeded' } : found,
        },
      );
    }
  }
  const webSearchRequests = uses['web_search'] ?? 0;
  return {
    text: '',
    blocks,
    stopReason: blocks.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn',
    stopSequence: null,
    inputTokens: inputTokensFor(body),
    outputTokens: Math.max(1, estimateTokens(JSON.stringify(script.content).length)),
    webSearchRequests,
  };
}

/** Resolves after `ms`, or early (false) when `signal` aborts. */
function wait(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onAbort = () => { clearTimeout(timer); resolve(false); };
    const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(true); }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

interface Fault<T> { remaining: number; value: T }

function take<T>(queue: Fault<T>[]): T | undefined {
  const head = queue[0];
  if (!head) return undefined;
  head.remaining -= 1;
  if (head.remaining <= 0) queue.shift();
  return head.value;
}

const pad = (n: number) => n.toString().padStart(8, '0');

/** `listen`: the address to listen on (loopback unless given; 0.0.0.0 for runtimes in containers, via the host gateway). */
export async function startAnthropicEmulator(opts: { apiKey?: string; listen?: string } = {}): Promise<AnthropicEmulator> {
  const apiKey = opts.apiKey ?? ANTHROPIC_EMULATOR_API_KEY;
  const requests: RecordedRequest[] = [];
  let responder: Responder = echoResponder;
  let chunkDelayMs = 0;
  let latencyMs = 0;
  let failures: Fault<{ status: number; opts: FailOptions }>[] = [];
  let slows: Fault<number>[] = [];
  let streamFaults: Fault<{ kind: 'error' | 'drop'; afterChunks: number }>[] = [];
  let seq = 0;
  const shutdown = new AbortController();

  const baseHeaders = (requestId: string): OutgoingHttpHeaders => ({ 'request-id': requestId, 'x-emulator': 'anthropic' });

  function sendJson(res: ServerResponse, rec: RecordedRequest, status: number, payload: unknown, extra: OutgoingHttpHeaders = {}): void {
    if (res.destroyed || res.headersSent) return;
    const text = JSON.stringify(payload);
    rec.status = status;
    res.writeHead(status, {
      ...baseHeaders(rec.requestId),
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...extra,
    });
    res.end(text);
  }

  function sendError(res: ServerResponse, rec: RecordedRequest, status: number, message?: string, extra: OutgoingHttpHeaders = {}, type?: string): void {
    const def = errorTypeFor(status);
    sendJson(res, rec, status, { type: 'error', error: { type: type ?? def.type, message: message ?? def.message }, request_id: rec.requestId }, extra);
  }

  function sendInjectedFailure(res: ServerResponse, rec: RecordedRequest, status: number, fo: FailOptions): void {
    const headers: OutgoingHttpHeaders = {};
    const retryAfter = fo.retryAfterSeconds ?? (status === 429 ? 1 : undefined);
    if (retryAfter !== undefined) headers['retry-after'] = String(retryAfter);
    if (fo.shouldRetry !== undefined) headers['x-should-retry'] = String(fo.shouldRetry);
    if (status === 429) {
      const reset = new Date(Date.now() + (retryAfter ?? 1) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      Object.assign(headers, {
        'anthropic-ratelimit-requests-limit': '50',
        'anthropic-ratelimit-requests-remaining': '0',
        'anthropic-ratelimit-requests-reset': reset,
        'anthropic-ratelimit-tokens-limit': '40000',
        'anthropic-ratelimit-tokens-remaining': '0',
        'anthropic-ratelimit-tokens-reset': reset,
        'anthropic-ratelimit-input-tokens-limit': '30000',
        'anthropic-ratelimit-input-tokens-remaining': '0',
        'anthropic-ratelimit-input-tokens-reset': reset,
        'anthropic-ratelimit-output-tokens-limit': '10000',
        'anthropic-ratelimit-output-tokens-remaining': '0',
        'anthropic-ratelimit-output-tokens-reset': reset,
      });
    }
    sendError(res, rec, status, fo.message, headers);
  }

  function messageObject(rec: RecordedRequest, body: MessagesRequestBody, reply: Reply) {
    return {
      id: rec.requestId.replace(/^req_/, 'msg_'),
      type: 'message' as const,
      role: 'assistant' as const,
      model: body.model,
      content: reply.blocks ?? [{ type: 'text' as const, text: reply.text }],
      stop_reason: reply.stopReason,
      stop_sequence: reply.stopSequence,
      usage: {
        input_tokens: reply.inputTokens,
        output_tokens: reply.outputTokens,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
        ...(reply.webSearchRequests ? { server_tool_use: { web_search_requests: reply.webSearchRequests } } : {}),
        service_tier: 'standard',
      },
    };
  }

  async function sendStream(
    res: ServerResponse, rec: RecordedRequest, body: MessagesRequestBody, reply: Reply, signal: AbortSignal,
  ): Promise<void> {
    const fault = take(streamFaults);
    rec.status = 200;
    res.writeHead(200, {
      ...baseHeaders(rec.requestId),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    res.flushHeaders();
    res.socket?.setNoDelay(true);
    const write = (event: string, data: unknown): boolean => {
      if (res.destroyed || signal.aborted) return false;
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      return true;
    };

    const start = messageObject(rec, body, reply);
    write('message_start', {
      type: 'message_start',
      message: { ...start, content: [], stop_reason: null, stop_sequence: null, usage: { ...start.usage, output_tokens: 1 } },
    });

    // A fault comes after `afterChunks` text deltas (or after all of them, when there are fewer).
    let sent = 0;
    const failNow = async (): Promise<void> => {
      if (fault!.kind === 'drop') {
        // Let the written deltas reach the client before the connection dies mid-stream.
        // (http uncorks the socket on the next tick; 'drain' only fires after a write reported back-pressure.)
        const socket = res.socket;
        await new Promise<void>((resolve) => setTimeout(resolve, 10));
        if (socket && socket.writableNeedDrain && !socket.destroyed) {
          await new Promise<void>((resolve) => { socket.once('drain', resolve); socket.once('close', resolve); });
        }
        socket?.destroy();
        res.destroy();
        return;
      }
      write('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
      res.end();
    };

    const blocks = reply.blocks ?? [{ type: 'text', text: reply.text }];
    for (const [index, block] of blocks.entries()) {
      const last = index === blocks.length - 1;
      if (block.type === 'text') {
        write('content_block_start', { type: 'content_block_start', index, content_block: { type: 'text', text: '' } });
        if (index === 0) write('ping', { type: 'ping' });
        for (const citation of (block['citations'] as unknown[] | undefined) ?? []) {
          write('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'citations_delta', citation } });
        }
        const chunks = splitIntoChunks(String(block['text']));
        for (const chunk of chunks) {
          if (fault && sent >= fault.afterChunks) return failNow();
          if (sent > 0 && !(await wait(chunkDelayMs, signal))) return;
          if (!write('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'text_delta', text: chunk } })) return;
          sent++;
        }
        if (fault && last) return failNow();
        if (chunks.length > 0 && !(await wait(chunkDelayMs, signal))) return;
      } else if (block.type === 'tool_use' || block.type === 'server_tool_use') {
        // The call starts with an empty input, which then arrives as pieces of JSON.
        write('content_block_start', { type: 'content_block_start', index, content_block: { ...block, input: {} } });
        const json = JSON.stringify(block['input']);
        for (const partial of ['', ...(json.match(/[\s\S]{1,12}/g) ?? [])]) {
          write('content_block_delta', { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: partial } });
        }
      } else {
        // A server tool's result arrives whole.
        write('content_block_start', { type: 'content_block_start', index, content_block: block });
      }
      write('content_block_stop', { type: 'content_block_stop', index });
    }
    if (fault) return failNow();
    write('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: reply.stopReason, stop_sequence: reply.stopSequence },
      usage: {
        output_tokens: reply.outputTokens,
        ...(reply.webSearchRequests ? { server_tool_use: { web_search_requests: reply.webSearchRequests } } : {}),
      },
    });
    write('message_stop', { type: 'message_stop' });
    res.end();
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    seq += 1;
    const requestId = `req_01Emu${pad(seq)}`;
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const rec: RecordedRequest = {
      method: req.method ?? 'GET', path, headers: req.headers, body: undefined as unknown as MessagesRequestBody,
      rawBody: '', stream: false, requestId, status: null, receivedAt: Date.now(), cutOff: false,
    };
    requests.push(rec);

    // Aborted when the client goes away before the response is complete, or when the emulator closes.
    const gone = new AbortController();
    res.on('close', () => {
      if (res.writableFinished) return;
      rec.cutOff = true;
      gone.abort();
    });
    const signal = AbortSignal.any([gone.signal, shutdown.signal]);

    // Consume faults at arrival, in request order, so concurrent requests see them deterministically.
    const slowMs = take(slows);
    const failure = take(failures);

    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) { tooLarge = true; continue; }
      chunks.push(chunk);
    }
    rec.rawBody = Buffer.concat(chunks).toString('utf8');
    let parsed: unknown;
    let parseFailed = false;
    try { parsed = rec.rawBody.length > 0 ? JSON.parse(rec.rawBody) : undefined; } catch { parseFailed = true; }
    rec.body = parsed as MessagesRequestBody;
    rec.stream = isObject(parsed) && parsed['stream'] === true;

    if (slowMs !== undefined && !(await wait(slowMs, signal))) return;
    if (!(await wait(latencyMs, signal))) return;
    if (failure) return sendInjectedFailure(res, rec, failure.status, failure.opts);

    const isMessages = path === '/v1/messages';
    const isCountTokens = path === '/v1/messages/count_tokens';
    if (!isMessages && !isCountTokens) return sendError(res, rec, 404, `Not found: ${req.method} ${path}`);
    if (req.method !== 'POST') return sendError(res, rec, 405, `Method ${req.method} not allowed`, { allow: 'POST' }, 'invalid_request_error');

    const key = req.headers['x-api-key'];
    if (key === undefined || key === '') return sendError(res, rec, 401, 'x-api-key header is required');
    if (key !== apiKey) return sendError(res, rec, 401, 'invalid x-api-key');
    const version = req.headers['anthropic-version'];
    if (version === undefined) return sendError(res, rec, 400, 'anthropic-version: header is required');
    if (!(ANTHROPIC_VERSIONS as readonly string[]).includes(String(version))) {
      return sendError(res, rec, 400, `anthropic-version: "${String(version)}" is not a valid version`);
    }
    if (tooLarge) return sendError(res, rec, 413, 'Request exceeds the maximum allowed number of bytes.');
    if (parseFailed || parsed === undefined) {
      return sendError(res, rec, 400, 'There was an error parsing the body of your HTTP request: expected a JSON object');
    }

    if (isCountTokens) {
      // count_tokens takes the same body minus max_tokens.
      const countBody: unknown = isObject(parsed) ? { max_tokens: 1, ...parsed } : parsed;
      try {
        validateMessagesBody(countBody);
      } catch (e) {
        if (e instanceof InvalidRequestBody) return sendError(res, rec, 400, e.message);
        throw e;
      }
      return sendJson(res, rec, 200, { input_tokens: inputTokensFor(countBody) });
    }

    try {
      validateMessagesBody(parsed);
    } catch (e) {
      if (e instanceof InvalidRequestBody) return sendError(res, rec, 400, e.message);
      throw e;
    }
    const body = parsed;

    // Web fetch is a beta: without its header the real API does not know the tool.
    const fetchTool = offered(body, (t) => t['type'] === 'web_fetch_20250910');
    if (fetchTool && !String(req.headers['anthropic-beta'] ?? '').split(',').map((b) => b.trim()).includes(WEB_FETCH_BETA)) {
      return sendError(res, rec, 400, `tools: web_fetch_20250910 requires the anthropic-beta header ${WEB_FETCH_BETA}`);
    }

    let reply: Reply;
    try {
      const raw = await responder(body, rec);
      if (typeof raw === 'string') reply = shapeReply(body, raw);
      else if (isObject(raw) && Array.isArray(raw.content)) reply = scriptReply(body, rec, raw);
      else throw new TypeError('responder must return a string or { content: [...] }');
    } catch (e) {
      return sendError(res, rec, 500, `Internal server error (emulator responder threw: ${e instanceof Error ? e.message : String(e)})`);
    }
    if (signal.aborted) return;

    if (body.stream === true) return sendStream(res, rec, body, reply, signal);
    return sendJson(res, rec, 200, messageObject(rec, body, reply));
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      const rec = requests.at(-1);
      if (!res.headersSent && !res.destroyed && rec) sendError(res, rec, 500, `Internal server error: ${e instanceof Error ? e.message : String(e)}`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, opts.listen ?? '127.0.0.1', () => { server.off('error', reject); resolve(); });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  let closed: Promise<void> | undefined;

  const positive = (name: string, n: number) => {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`${name} must be a non-negative integer, got ${n}`);
  };

  return {
    url,
    port,
    apiKey,
    requests,
    get calls() { return requests.length; },
    lastRequest: () => requests.at(-1),
    respond(next?: Responder) { responder = next ?? echoResponder; },
    chunkDelay(ms: number) { positive('chunkDelay', ms); chunkDelayMs = ms; },
    latency(ms: number) { positive('latency', ms); latencyMs = ms; },
    failNext(n: number, status: number, fo: FailOptions = {}) {
      positive('failNext count', n);
      if (!Number.isInteger(status) || status < 400 || status > 599) throw new RangeError(`failNext status must be 4xx/5xx, got ${status}`);
      if (n > 0) failures.push({ remaining: n, value: { status, opts: fo } });
    },
    slowNext(n: number, ms: number) {
      positive('slowNext count', n);
      positive('slowNext ms', ms);
      if (n > 0) slows.push({ remaining: n, value: ms });
    },
    breakStreamNext(n: number, afterChunks: number) {
      positive('breakStreamNext count', n);
      positive('afterChunks', afterChunks);
      if (n > 0) streamFaults.push({ remaining: n, value: { kind: 'error', afterChunks } });
    },
    dropStreamNext(n: number, afterChunks: number) {
      positive('dropStreamNext count', n);
      positive('afterChunks', afterChunks);
      if (n > 0) streamFaults.push({ remaining: n, value: { kind: 'drop', afterChunks } });
    },
    reset() {
      requests.length = 0;
      failures = [];
      slows = [];
      streamFaults = [];
      responder = echoResponder;
      chunkDelayMs = 0;
      latencyMs = 0;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        shutdown.abort();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
