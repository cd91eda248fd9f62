/**
 * The model, through the official Anthropic SDK. The SDK retries 408/409/429/5xx/529 and timeouts with backoff,
 * honouring Retry-After (MODEL_MAX_RETRIES times); what still fails becomes a ModelError: a ModelUnavailableError
 * (503 with Retry-After) or a ModelRefusedError (502). A stream that breaks after it began is not retried: the
 * caller has already shown part of the reply.
 *
 * One call is one round of a turn's agent loop (agentLoop.ts): the model answers, or asks for tools. The beta
 * Messages API is used because web fetch, one of the server tools, is a beta; its types cover every block a round
 * may hold, so the loop can send an answer's blocks back as they came.
 */
import Anthropic from '@anthropic-ai/sdk';
import type {
  BetaContentBlock,
  BetaMessage,
  BetaMessageParam,
  BetaToolUnion,
} from '@anthropic-ai/sdk/resources/beta/messages/messages';
import { HttpError } from '../../core/http/httpError.ts';
import type { RuntimeConfig } from './config.ts';

/** A stored message of a conversation's history: text only (tool blocks live within their turn). */
export interface ModelMessage {
  role: 'user' | 'assistant';
  content: string;
}

export interface ModelRequest {
  system: string;
  /** The history and this turn so far, tool_use and tool_result blocks included. */
  messages: BetaMessageParam[];
  tools: BetaToolUnion[];
  /** The beta features the tools need (the `anthropic-beta` header). */
  betas: string[];
}

/** One answer of the model: its blocks (text, tool calls, server tool results) and why it stopped. */
export interface ModelRound {
  content: BetaContentBlock[];
  stopReason: BetaMessage['stop_reason'];
  inputTokens: number;
  outputTokens: number;
}

export interface StreamHandlers {
  /** Each piece of text as the model produces it. */
  onText(text: string): void;
  /** Each block once it is complete (a tool call with its whole input, a search's results). */
  onBlock?(block: BetaContentBlock): void;
}

export interface Model {
  complete(request: ModelRequest): Promise<ModelRound>;
  /** Streams one round; `signal` aborts the request (the client went away): TurnAbortedError with the tokens used. */
  stream(request: ModelRequest, handlers: StreamHandlers, signal?: AbortSignal): Promise<ModelRound>;
}

/**
 * The turn was given up while the model was working (the customer's client disconnected from the stream): the model
 * request was aborted. It carries the tokens used so far (they are counted) and the text the customer was sent.
 */
export class TurnAbortedError extends Error {
  constructor(
    readonly inputTokens: number,
    readonly outputTokens: number,
    readonly text = '',
  ) {
    super('the client went away: the turn was abandoned');
    this.name = 'TurnAbortedError';
  }
}

const DEFAULT_RETRY_AFTER_SECONDS = 30;

/** The model gave no reply. Chat answers with it; the webhook processor tries the turn again later. */
export abstract class ModelError extends HttpError {}

/** The model is not configured, busy or unreachable, or its stream broke off: 503 with Retry-After. */
export class ModelUnavailableError extends ModelError {
  constructor(reason: string, retryAfterSeconds = DEFAULT_RETRY_AFTER_SECONDS) {
    super(503, 'model_unavailable', reason, { retryAfter: retryAfterSeconds }, { 'Retry-After': String(retryAfterSeconds) });
  }
}

/** The model refused the request (an HTTP 4xx other than authentication, timeout or rate limit): 502. */
export class ModelRefusedError extends ModelError {
  constructor(upstreamStatus: number) {
    super(502, 'model_error', `the model refused the request (HTTP ${upstreamStatus})`);
  }
}

export function createModel(config: RuntimeConfig['model']): Model {
  const client = config.apiKey
    ? new Anthropic({ apiKey: config.apiKey, baseURL: config.baseUrl, maxRetries: config.maxRetries, timeout: config.timeoutMs })
    : undefined;
  const params = (request: ModelRequest) => ({
    model: config.name,
    max_tokens: config.maxOutputTokens,
    system: request.system,
    messages: request.messages,
    ...(request.tools.length ? { tools: request.tools } : {}),
    ...(request.betas.length ? { betas: request.betas } : {}),
  });
  const ready = (): Anthropic => {
    if (!client) throw new ModelUnavailableError('the model is not configured for this assistant yet');
    return client;
  };

  return {
    async complete(request) {
      try {
        return roundOf(await ready().beta.messages.create(params(request)));
      } catch (err) {
        throw asModelError(err);
      }
    },
    async stream(request, handlers, signal) {
      let current = (): BetaMessage | undefined => undefined;
      try {
        const stream = ready().beta.messages.stream(params(request), { signal });
        current = () => stream.currentMessage;
        stream.on('text', (text) => handlers.onText(text));
        if (handlers.onBlock) stream.on('contentBlock', handlers.onBlock);
        return roundOf(await stream.finalMessage());
      } catch (err) {
        if (signal?.aborted) {
          // What the model had counted when the request was cut: the input, and the output so far.
          const usage = current()?.usage;
          throw new TurnAbortedError(usage?.input_tokens ?? 0, usage?.output_tokens ?? 0);
        }
        throw asModelError(err);
      }
    },
  };
}

function roundOf(message: BetaMessage): ModelRound {
  return {
    content: message.content,
    stopReason: message.stop_reason,
    inputTokens: message.usage.input_tokens,
    outputTokens: message.usage.output_tokens,
  };
}

/** What the customer is told when the model fails after the retries. */
function asModelError(err: unknown): unknown {
  if (err instanceof ModelError) return err;
  if (err instanceof Anthropic.APIError) {
    const status = err.status ?? 0;
    const retryAfter = Number(err.headers?.get?.('retry-after'));
    const seconds = Number.isFinite(retryAfter) && retryAfter > 0 ? Math.ceil(retryAfter) : DEFAULT_RETRY_AFTER_SECONDS;
    if (status === 0 || status === 408 || status === 429 || status >= 500) {
      return new ModelUnavailableError('the model is busy or unreachable; try again shortly', seconds);
    }
    if (status === 401 || status === 403) return new ModelUnavailableError('the model is not available for this assistant', seconds);
    return new ModelRefusedError(status);
  }
  // A stream that ended without its final message, a dropped connection: the model is not there right now.
  if (err instanceof Anthropic.AnthropicError || (err instanceof Error && /terminated|socket|ECONN|aborted/i.test(err.message))) {
    return new ModelUnavailableError('the model stream broke off; try again');
  }
  return err;
}
