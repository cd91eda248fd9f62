/**
 * A chat turn's agent loop: ask the model; when it calls client tools, run them and send their results back; again
 * until it answers, or until the plan's tool rounds are used up, when the turn stops and says so. Server tools (web
 * search and fetch) run at Anthropic within a round; their sources become the reply's citations. Every round's
 * tokens are summed; the turn is one message whatever the rounds.
 */
import type { BetaContentBlock, BetaMessageParam } from '@anthropic-ai/sdk/resources/beta/messages/messages';
import { TurnAbortedError, type Model, type ModelRound } from './model.ts';
import { runToolCall, type ToolSet } from './tools/registry.ts';
import type { ToolContext } from './tools/types.ts';

export interface Citation {
  url: string;
  title: string;
}

export type ToolEvent = 'tool_start' | 'tool_end';

/** What a streamed turn shows as it happens. */
export interface TurnEvents {
  onText(text: string): void;
  onTool(event: ToolEvent, data: { name: string; summary: string }): void;
}

export interface LoopInput {
  model: Model;
  system: string;
  messages: BetaMessageParam[];
  tools: ToolSet;
  /** How many times tool results may be sent back before the model must have answered. */
  maxToolRounds: number;
  ctx: ToolContext;
  secrets: readonly string[];
  events?: TurnEvents;
  /** Aborts the turn (a streamed turn whose client went away): no more model requests or tool runs. */
  signal?: AbortSignal;
}

export interface LoopResult {
  text: string;
  citations: Citation[];
  inputTokens: number;
  outputTokens: number;
  /** Model calls made. */
  rounds: number;
  /** The model still wanted tools when the rounds ran out. */
  roundLimitReached: boolean;
}

/** Between the text of two rounds (say, "Let me look that up." and the answer). */
const ROUND_SEPARATOR = '\n\n';
const SUMMARY_CHARS = 80;

function roundLimitNote(maxToolRounds: number): string {
  return `[I stopped here: this turn used all ${maxToolRounds} of its tool rounds before I could finish. Ask me to continue.]`;
}

export async function runAgentLoop(input: LoopInput): Promise<LoopResult> {
  const { model, tools, events } = input;
  const messages = [...input.messages];
  const request = () => ({ system: input.system, messages, tools: tools.definitions, betas: tools.betas });
  const texts = new TextJoiner(events?.onText);
  const usage = { inputTokens: 0, outputTokens: 0, rounds: 0 };
  const citations = new CitationList();

  /** The turn given up: what it used so far, counted by whoever stores it. */
  const abandoned = (partial?: TurnAbortedError) =>
    new TurnAbortedError(usage.inputTokens + (partial?.inputTokens ?? 0), usage.outputTokens + (partial?.outputTokens ?? 0), texts.value);

  let toolRounds = 0;
  for (;;) {
    if (input.signal?.aborted) throw abandoned();
    texts.nextRound();
    let round: ModelRound;
    try {
      round = events
        ? await model.stream(request(), { onText: (text) => texts.add(text), onBlock: (block) => serverToolEvent(block, events) }, input.signal)
        : await model.complete(request());
    } catch (err) {
      throw err instanceof TurnAbortedError ? abandoned(err) : err;
    }
    usage.rounds += 1;
    usage.inputTokens += round.inputTokens;
    usage.outputTokens += round.outputTokens;
    if (!events) for (const text of textOf(round.content)) texts.add(text);
    citations.addFrom(round.content);

    const calls = round.content.filter((block) => block.type === 'tool_use');
    // pause_turn: a long server tool turn the API paused; sent back as it is, it carries on (a round like any other).
    const paused = round.stopReason === 'pause_turn';
    const done = (roundLimitReached: boolean): LoopResult => ({ text: texts.value, citations: citations.list, ...usage, roundLimitReached });
    if (!paused && (round.stopReason !== 'tool_use' || calls.length === 0)) return done(false);
    if (toolRounds >= input.maxToolRounds) {
      texts.nextRound();
      texts.add(roundLimitNote(input.maxToolRounds));
      return done(true);
    }
    toolRounds += 1;
    // The API refuses an empty text block in what it is sent, though a model may answer one before a tool call.
    const answered = round.content.filter((block) => block.type !== 'text' || block.text !== '');
    if (paused) {
      messages.push({ role: 'assistant', content: answered });
      continue;
    }
    const results = [];
    for (const call of calls) {
      if (input.signal?.aborted) throw abandoned();
      events?.onTool('tool_start', { name: call.name, summary: describeCall(tools, call.name, call.input) });
      const run = await runToolCall(tools, call, input.ctx, input.secrets);
      events?.onTool('tool_end', { name: call.name, summary: run.summary });
      results.push(run.result);
    }
    messages.push({ role: 'assistant', content: answered }, { role: 'user', content: results });
  }
}

function textOf(content: BetaContentBlock[]): string[] {
  return content.flatMap((block) => (block.type === 'text' ? [block.text] : []));
}

/** The reply as the customer sees it streamed: each round's text, rounds apart by a blank line. */
class TextJoiner {
  value = '';
  private separate = false;

  constructor(private readonly onText?: (text: string) => void) {}

  nextRound(): void {
    this.separate = this.value.length > 0;
  }

  add(text: string): void {
    if (!text) return;
    const piece = this.separate ? ROUND_SEPARATOR + text : text;
    this.separate = false;
    this.value += piece;
    this.onText?.(piece);
  }
}

/** The sources of a turn: what its text cites from search results, and the pages it fetched; each URL once. */
export class CitationList {
  private readonly byUrl = new Map<string, Citation>();

  addFrom(content: BetaContentBlock[]): void {
    for (const block of content) {
      if (block.type === 'text') {
        for (const citation of block.citations ?? []) {
          if (citation.type === 'web_search_result_location') this.add(citation.url, citation.title);
        }
      } else if (block.type === 'web_fetch_tool_result' && block.content.type === 'web_fetch_result') {
        this.add(block.content.url, block.content.content.title);
      }
    }
  }

  get list(): Citation[] {
    return [...this.byUrl.values()];
  }

  private add(url: string, title: string | null): void {
    if (!this.byUrl.has(url)) this.byUrl.set(url, { url, title: title?.trim() || url });
  }
}

function describeCall(tools: ToolSet, name: string, input: unknown): string {
  const tool = tools.client.get(name);
  if (!tool) return '';
  const args = typeof input === 'object' && input !== null ? (input as Record<string, unknown>) : {};
  return clip(tool.describe(args));
}

/** tool_start and tool_end for the server tools, as their blocks complete in the stream. */
function serverToolEvent(block: BetaContentBlock, events: TurnEvents): void {
  if (block.type === 'server_tool_use' && (block.name === 'web_search' || block.name === 'web_fetch')) {
    const what = block.name === 'web_search' ? block.input['query'] : block.input['url'];
    events.onTool('tool_start', { name: block.name, summary: typeof what === 'string' ? clip(what) : '' });
  } else if (block.type === 'web_search_tool_result') {
    const summary = Array.isArray(block.content) ? `${block.content.length} results` : `failed: ${block.content.error_code}`;
    events.onTool('tool_end', { name: 'web_search', summary });
  } else if (block.type === 'web_fetch_tool_result') {
    const summary = block.content.type === 'web_fetch_result' ? `read ${clip(block.content.url)}` : `failed: ${block.content.error_code}`;
    events.onTool('tool_end', { name: 'web_fetch', summary });
  }
}

function clip(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > SUMMARY_CHARS ? `${flat.slice(0, SUMMARY_CHARS - 1)}…` : flat;
}
