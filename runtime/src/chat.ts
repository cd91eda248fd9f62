/**
 * Chat turns: the conversation, the monthly limit, the prompt (workspace, the tools this instance has, enabled
 * skills, relevant memories, recent history), the agent loop with the model and the tools (agentLoop.ts), and what
 * is stored afterwards: the turn's text, never its tool blocks. `POST /api/chat` answers as JSON or, with
 * `stream: true`, as server-sent events while the model writes and the tools run.
 */
import { PassThrough } from 'node:stream';
import Router from '@koa/router';
import type pg from 'pg';
import { HttpError } from '../../core/http/httpError.ts';
import { readJsonBody } from '../../core/http/rawBody.ts';
import { runAgentLoop, type TurnEvents } from './agentLoop.ts';
import type { RuntimeContext, TurnInput, TurnResult } from './context.ts';
import { TurnAbortedError, type Model, type ModelMessage } from './model.ts';
import { Notifier } from './notifier.ts';
import { buildSystemPrompt } from './prompt.ts';
import { readPromptContext } from './promptContext.ts';
import { skillViews } from './skills.ts';
import { connectedServices } from './tools/connectionTools.ts';
import { activeFeatures, describeCapabilities, toolsFor, type ToolSet } from './tools/registry.ts';
import { redactSecrets, secretsOf } from './tools/untrusted.ts';
import { claimNotices, dayOf, monthOf, releaseMessage, reserveMessage } from './usage.ts';
import { dailyLogPath } from './workspace.ts';
import { logger } from '../../core/logger.ts';

const log = logger('chat');

const MAX_MESSAGE_CHARS = 20_000;
const RELEVANT_MEMORIES = 8;
/**
 * The prompt's memory search ranks the newest this many matches (and the memories of the message's rare words), not
 * the API's MEMORY_SEARCH_CANDIDATES: ranking is most of a search's cost, and it is paid on every turn before the
 * model is asked. RELEVANT_MEMORIES of them go into the prompt.
 */
const PROMPT_MEMORY_CANDIDATES = 24;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A turn whose conversation is settled and whose message is counted, before the model is asked. */
export interface PendingTurn {
  input: TurnInput;
  conversationId: string;
  used: number;
  at: Date;
  /** The recent history, the system prompt and the tools, read while the message was being counted. */
  context: Promise<TurnContext>;
}

export interface Chat {
  runTurn(input: TurnInput): Promise<TurnResult>;
  /** The checks that answer with a status (unknown conversation, limit reached), before anything is streamed. */
  begin(input: TurnInput): Promise<PendingTurn>;
  /**
   * Runs the turn's agent loop; with events, streamed: each piece of text and each tool run as it happens. `signal`
   * gives the turn up (the client went away): TurnAbortedError, the turn stored with what it used so far.
   */
  finish(pending: PendingTurn, events?: TurnEvents, signal?: AbortSignal): Promise<TurnResult>;
}

type ChatContext = Pick<RuntimeContext, 'db' | 'config' | 'workspace'>;

interface TurnContext {
  history: ModelMessage[];
  system: string;
  tools: ToolSet;
}

export function createChat(ctx: ChatContext, model: Model): Chat {
  const notifier = new Notifier(ctx.db, ctx.config);
  const secrets = secretsOf(ctx.config);

  async function begin(input: TurnInput): Promise<PendingTurn> {
    const at = new Date();
    // What the prompt needs does not depend on the count, so it is read meanwhile (a new conversation has no history).
    // A refused turn leaves it unread; finish answers for its failure.
    const context = readContext(input, at);
    context.catch(() => undefined);
    const used = await reserveMessage(ctx.db, ctx.config.messageLimit, at, input.conversationId);
    try {
      const conversationId = input.conversationId ?? (await newConversation(ctx.db, input));
      return { input, conversationId, used, at, context };
    } catch (err) {
      await releaseMessage(ctx.db, dayOf(at));
      throw err;
    }
  }

  async function readContext(input: TurnInput, now: Date): Promise<TurnContext> {
    const [{ history, skills, memories }, connected] = await Promise.all([
      readPromptContext(ctx.db, {
        conversationId: input.conversationId,
        historyMessages: ctx.config.historyMessages,
        message: input.message,
        memories: RELEVANT_MEMORIES,
        candidates: PROMPT_MEMORY_CANDIDATES,
      }),
      connectedServices(ctx.db),
    ]);
    const file = (name: string) => ctx.workspace.get(name);
    const views = skillViews(ctx, skills);
    const tools = toolsFor({ features: activeFeatures(ctx.config.features, views), webSearchMaxUses: ctx.config.webSearchMaxUses });
    const system = buildSystemPrompt({
      workspace: {
        soul: file('SOUL.md'),
        user: file('USER.md'),
        agents: file('AGENTS.md'),
        tools: file('TOOLS.md'),
        memory: file('MEMORY.md'),
        today: file(dailyLogPath(now)),
        yesterday: file(dailyLogPath(new Date(now.getTime() - 86_400_000))),
      },
      capabilities: describeCapabilities(tools, ctx.config.features, connected),
      skills: views.filter((s) => s.enabled),
      memories,
      now,
      budgetTokens: ctx.config.promptTokenBudget,
    });
    // A stored memory or a workspace file could hold one of this runtime's secrets: the model never sees them.
    return { history, system: redactSecrets(system, secrets), tools };
  }

  async function finish({ input, conversationId, used, at: now, context }: PendingTurn, events?: TurnEvents, signal?: AbortSignal): Promise<TurnResult> {
    let turn;
    let unsent: boolean;
    try {
      const { history, system, tools } = await context;
      turn = await runAgentLoop({
        model,
        system,
        messages: alternating([...history, { role: 'user', content: input.message }]),
        tools,
        maxToolRounds: ctx.config.toolRounds,
        ctx: { ...ctx, conversationId, message: input.message, now },
        secrets,
        events,
        signal,
      });
      unsent = await storeTurn(ctx.db, conversationId, input.message, turn, now);
    } catch (err) {
      if (err instanceof TurnAbortedError) {
        // The message was sent and the model worked on it: the turn counts, with the tokens it used and the text the
        // customer was sent before leaving.
        await storeTurn(ctx.db, conversationId, input.message, err, now);
        throw err;
      }
      await releaseMessage(ctx.db, dayOf(now)).catch(() => undefined); // the turn did not happen: not counted
      throw err;
    }
    void notifyThresholds(used, now, unsent);
    return {
      reply: turn.text,
      conversationId,
      usage: { inputTokens: turn.inputTokens, outputTokens: turn.outputTokens },
      citations: turn.citations,
      ...(turn.roundLimitReached ? { roundLimitReached: true } : {}),
    };
  }

  /** Claims the thresholds this turn reached; sends what is unsent (this turn's claims, or older ones seen unsent). */
  async function notifyThresholds(used: number, now: Date, unsent: boolean): Promise<void> {
    try {
      const reached = await claimNotices(ctx.db, used, ctx.config.messageLimit, now);
      if (reached > 0 || unsent) await notifier.sendPending(monthOf(now).month);
    } catch (err) {
      log.error('usage notice failed', { error: (err as Error).message });
    }
  }

  return { begin, finish, runTurn: async (input) => finish(await begin(input)) };
}

async function newConversation(db: pg.Pool, input: TurnInput): Promise<string> {
  const { rows } = await db.query<{ id: string }>('INSERT INTO conversations (title, source) VALUES ($1, $2) RETURNING id', [
    input.message.replace(/\s+/g, ' ').trim().slice(0, 80),
    input.source,
  ]);
  return rows[0]!.id;
}

/** The API wants user and assistant to alternate: of two messages in a row from one side, the later one stays. */
export function alternating(messages: ModelMessage[]): ModelMessage[] {
  const out: ModelMessage[] = [];
  for (const message of messages) {
    if (out.at(-1)?.role === message.role) out[out.length - 1] = message;
    else out.push(message);
  }
  return out;
}

/**
 * Stores the turn in one statement, so one round trip and all or nothing: the two messages, the conversation's time,
 * the day's tokens. Says whether the month has usage notices claimed but not sent yet.
 */
async function storeTurn(
  db: pg.Pool,
  conversationId: string,
  message: string,
  reply: { text: string; inputTokens: number; outputTokens: number },
  now: Date,
): Promise<boolean> {
  const { rows } = await db.query<{ unsent: boolean }>({
    name: 'chat-store-turn',
    text: `WITH stored AS (
       INSERT INTO conversation_messages (conversation_id, role, content, input_tokens, output_tokens)
       VALUES ($1, 'user', $2, $3, NULL), ($1, 'assistant', $4, NULL, $5)
     ), touched AS (
       UPDATE conversations SET updated_at = now() WHERE id = $1
     )
     INSERT INTO usage_tracking (day, input_tokens, output_tokens) VALUES ($6, $7, $8)
     ON CONFLICT (day) DO UPDATE SET input_tokens = usage_tracking.input_tokens + EXCLUDED.input_tokens,
       output_tokens = usage_tracking.output_tokens + EXCLUDED.output_tokens
     RETURNING EXISTS (SELECT 1 FROM usage_notices WHERE month = $9 AND sent_at IS NULL) AS unsent`,
    values: [conversationId, message, reply.inputTokens, reply.text, reply.outputTokens, dayOf(now), reply.inputTokens, reply.outputTokens, monthOf(now).month],
  });
  return rows[0]!.unsent;
}

function parseChatBody(body: unknown): TurnInput & { stream: boolean } {
  const b = (body ?? {}) as { message?: unknown; conversationId?: unknown; stream?: unknown };
  const problems: string[] = [];
  if (typeof b.message !== 'string' || !b.message.trim()) problems.push('message must be a non-empty string');
  else if (b.message.length > MAX_MESSAGE_CHARS) problems.push(`message must be at most ${MAX_MESSAGE_CHARS} characters`);
  if (b.conversationId !== undefined && (typeof b.conversationId !== 'string' || !UUID.test(b.conversationId))) {
    problems.push('conversationId, when given, must be a conversation id (a UUID)');
  }
  if (b.stream !== undefined && typeof b.stream !== 'boolean') problems.push('stream, when given, must be true or false');
  if (problems.length) throw new HttpError(400, 'invalid_request', problems.join('; '));
  return {
    message: b.message as string,
    conversationId: b.conversationId as string | undefined,
    source: 'api',
    stream: b.stream === true,
  };
}

export function chatRoutes(deps: RuntimeContext & { chat: Chat }): Router {
  const router = new Router();
  router.post('/api/chat', async (ctx) => {
    const input = parseChatBody(await readJsonBody(ctx.req, 64 * 1024));
    const pending = await deps.chat.begin(input);
    if (!input.stream) {
      ctx.body = await deps.chat.finish(pending);
      return;
    }
    // Server-sent events: `delta` events as the model writes and `tool_start`/`tool_end` as tools run, then `done`
    // with the whole turn, or `error`. Until the model has produced its first words or called a tool, a failure
    // still answers with a status (503 with Retry-After).
    const early: [string, unknown][] = [];
    let send: ((event: string, data: unknown) => void) | undefined;
    let firstWords!: () => void;
    const spoke = new Promise<void>((resolve) => (firstWords = resolve));
    const emit = (event: string, data: unknown) => {
      if (send) send(event, data);
      else early.push([event, data]);
      firstWords();
    };
    // A client that goes away mid-stream gives the turn up: the model request is aborted, no further tool runs.
    const abandon = new AbortController();
    ctx.res.once('close', () => {
      if (!ctx.res.writableFinished) abandon.abort();
    });
    const turn = deps.chat.finish(pending, { onText: (text) => emit('delta', { text }), onTool: emit }, abandon.signal);
    await Promise.race([spoke, turn]);

    const events = new PassThrough();
    send = (event, data) => events.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    ctx.status = 200;
    ctx.set({ 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
    ctx.body = events;
    ctx.req.socket.setNoDelay(true);
    send('start', { conversationId: pending.conversationId });
    for (const [event, data] of early) send(event, data);
    turn
      .then((result) => send!('done', result))
      .catch((err: unknown) => {
        if (err instanceof TurnAbortedError) {
          log.info('chat stream abandoned by the client', { conversationId: pending.conversationId, inputTokens: err.inputTokens, outputTokens: err.outputTokens });
          return;
        }
        const http = err instanceof HttpError ? err : undefined;
        if (!http) log.error('chat stream failed', { error: (err as Error).message });
        send!('error', { error: http?.code ?? 'internal_error', reason: http?.reason ?? 'internal error', ...(http?.extra ?? {}) });
      })
      .finally(() => events.end());
  });
  return router;
}
