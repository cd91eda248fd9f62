/**
 * The model, through the official Anthropic SDK. The SDK retries 408/409/429/5xx/529 and timeouts with backoff,
 * honouring Retry-After (MODEL_MAX_RETRIES times); what still fails becomes a 503 with Retry-After for the caller.
 * A stream that breaks after it began is not retried: the caller has already shown part of the reply.
 */
import Anthropic from '@anthropic-ai/sdk';
import { HttpError } from '../../core/http/httpError.ts';
import type { RuntimeConfig } from './config.ts';

export interface ModelMessage {
  role: 'user' | 'assistant';
  content: string;
}

export interface ModelRequest {
  system: string;
  messages: ModelMessage[];
}

export interface ModelReply {
  text: string;
  inputTokens: number;
  outputTokens: number;
}

export interface Model {
  complete(request: ModelRequest): Promise<ModelReply>;
  /** Calls onText with each piece of the reply as the model produces it. */
  stream(request: ModelRequest, onText: (text: string) => void): Promise<ModelReply>;
}

const DEFAULT_RETRY_AFTER_SECONDS = 30;

export function createModel(config: RuntimeConfig['model']): Model {
  const client = config.apiKey
    ? new Anthropic({ apiKey: config.apiKey, baseURL: config.baseUrl, maxRetries: config.maxRetries, timeout: config.timeoutMs })
    : undefined;
  const params = (request: ModelRequest) => ({
    model: config.name,
    max_tokens: config.maxOutputTokens,
    system: request.system,
    messages: request.messages,
  });
  const ready = (): Anthropic => {
    if (!client) throw unavailable('the model is not configured for this assistant yet', DEFAULT_RETRY_AFTER_SECONDS);
    return client;
  };

  return {
    async complete(request) {
      try {
        return replyOf(await ready().messages.create(params(request)));
      } catch (err) {
        throw asHttpError(err);
      }
    },
    async stream(request, onText) {
      try {
        const stream = ready().messages.stream(params(request));
        stream.on('text', (text) => onText(text));
        return replyOf(await stream.finalMessage());
      } catch (err) {
        throw asHttpError(err);
      }
    },
  };
}

function replyOf(message: Anthropic.Message): ModelReply {
  const text = message.content.flatMap((block) => (block.type === 'text' ? [block.text] : [])).join('');
  return { text, inputTokens: message.usage.input_tokens, outputTokens: message.usage.output_tokens };
}

function unavailable(reason: string, retryAfterSeconds: number): HttpError {
  return new HttpError(503, 'model_unavailable', reason, { retryAfter: retryAfterSeconds }, { 'Retry-After': String(retryAfterSeconds) });
}

/** What the customer is told when the model fails after the retries. */
function asHttpError(err: unknown): unknown {
  if (err instanceof HttpError) return err;
  if (err instanceof Anthropic.APIError) {
    const status = err.status ?? 0;
    const retryAfter = Number(err.headers?.get?.('retry-after'));
    const seconds = Number.isFinite(retryAfter) && retryAfter > 0 ? Math.ceil(retryAfter) : DEFAULT_RETRY_AFTER_SECONDS;
    if (status === 0 || status === 408 || status === 429 || status >= 500) {
      return unavailable('the model is busy or unreachable; try again shortly', seconds);
    }
    if (status === 401 || status === 403) return unavailable('the model is not available for this assistant', seconds);
    return new HttpError(502, 'model_error', `the model refused the request (HTTP ${status})`);
  }
  // A stream that ended without its final message, a dropped connection: the model is not there right now.
  if (err instanceof Anthropic.AnthropicError || (err instanceof Error && /terminated|socket|ECONN|aborted/i.test(err.message))) {
    return unavailable('the model stream broke off; try again', DEFAULT_RETRY_AFTER_SECONDS);
  }
  return err;
}
