/**
 * What every connection tool does around its own call: the plan's feature, a check of the input, a live token for
 * the service (or how to connect it), the customer's confirmation for an acting tool, and a provider's failure
 * told to the model without a token or a stack.
 */
import { maskSecrets } from '../../../core/logger.ts';
import { connectPath, notInPlan, SERVICES, type ServiceName } from '../connections/services.ts';
import { accessToken, ConnectionUnavailable } from '../connections/store.ts';
import { confirmableSchema, confirmationGate } from './confirmations.ts';
import type { ClientTool, ToolContext, ToolInputSchema, ToolOutcome } from './types.ts';

export interface ServiceToolSpec {
  name: string;
  description: string;
  input_schema: ToolInputSchema;
  service: ServiceName;
  describe(input: Record<string, unknown>): string;
  /** Why the input cannot be used, before anything else happens; undefined when it can. */
  invalid?(input: Record<string, unknown>): string | undefined;
  /** Set on an acting tool: what will happen, exactly, in the words the customer is asked to confirm. */
  action?(input: Record<string, unknown>): string;
  call(input: Record<string, unknown>, ctx: ToolContext, token: string): Promise<ToolOutcome>;
}

const MAX_ERROR_CHARS = 300;
/** An email address as the tools accept one: no display name, nothing that could break a header. */
export const EMAIL_ADDRESS = /^[^\s@<>,;"]+@[^\s@<>,;"]+\.[^\s@<>,;"]+$/;

export function serviceTool(spec: ServiceToolSpec): ClientTool {
  const service = SERVICES[spec.service];
  const refused = (content: string, summary: string): ToolOutcome => ({ content, summary, isError: true });
  /** No token to be had: not connected (how to connect), or the provider could not be reached. */
  const unavailable = (err: unknown): ToolOutcome =>
    err instanceof ConnectionUnavailable
      ? refused(err.message, `${service.name} not connected`)
      : refused(`${service.title} could not be reached to authorize the call (${maskSecrets((err as Error).message).slice(0, MAX_ERROR_CHARS)}).`, 'authorization failed');
  return {
    name: spec.name,
    description: spec.description,
    input_schema: spec.action ? confirmableSchema(spec.input_schema) : spec.input_schema,
    feature: service.feature,
    ...(spec.action ? { acting: true } : {}),
    describe: spec.describe,
    async run(input, ctx) {
      if (!ctx.config.features.includes(service.feature)) return refused(notInPlan(service, ctx.config.plan).reason, 'not in the plan');
      const problem = spec.invalid?.(input);
      if (problem) return refused(problem, 'invalid input');
      const token = (refresh = false) => accessToken(ctx.db, ctx.config.connections, service, ctx.now, refresh);
      let first: string;
      try {
        first = await token();
      } catch (err) {
        return unavailable(err);
      }
      if (spec.action) {
        const gate = await confirmationGate(spec.name, input, ctx, spec.action(input));
        if (gate) return gate;
      }
      try {
        try {
          return await spec.call(input, ctx, first);
        } catch (err) {
          // A token refused before its expiry gets one refresh and one more try (nothing was done with it).
          if (providerStatus(err) !== 401) throw err;
          let fresh: string;
          try {
            fresh = await token(true);
          } catch (refreshErr) {
            return unavailable(refreshErr);
          }
          return await spec.call(input, ctx, fresh);
        }
      } catch (err) {
        const status = providerStatus(err);
        if (status === 401) {
          return refused(`${service.title} no longer accepts this connection. The customer reconnects it with POST ${connectPath(service)}.`, `${service.name} unauthorized`);
        }
        const detail = maskSecrets((err as Error).message ?? String(err)).slice(0, MAX_ERROR_CHARS);
        return refused(`${service.title} answered with an error${status ? ` (HTTP ${status})` : ''}: ${detail}`, `${service.name} error${status ? ` ${status}` : ''}`);
      }
    },
  };
}

/** The HTTP status of a googleapis (Gaxios) or Octokit error, when it has one. */
function providerStatus(err: unknown): number | undefined {
  const e = err as { status?: unknown; response?: { status?: unknown } };
  const status = typeof e.status === 'number' ? e.status : e.response?.status;
  return typeof status === 'number' ? status : undefined;
}

/** A string field of a tool's input, trimmed; undefined when absent or blank. */
export function textField(input: Record<string, unknown>, name: string): string | undefined {
  const value = input[name];
  return typeof value === 'string' && value.trim() ? value.trim() : undefined;
}

/** An integer field within bounds, or its default. */
export function countField(input: Record<string, unknown>, name: string, fallback: number, max: number): number {
  const value = input[name];
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 ? Math.min(value, max) : fallback;
}

/** Problems of required text fields: missing ones, and longer than allowed. */
export function missingOrLong(input: Record<string, unknown>, limits: Record<string, number>, required: readonly string[]): string | undefined {
  for (const name of required) if (!textField(input, name)) return `${name} is required`;
  for (const [name, max] of Object.entries(limits)) {
    const value = input[name];
    if (value !== undefined && typeof value !== 'string') return `${name} must be a string`;
    if (typeof value === 'string' && value.length > max) return `${name} must be at most ${max} characters`;
  }
  return undefined;
}

/** The tool's result as the model reads it: compact JSON. */
export function jsonOutcome(data: unknown, summary: string): ToolOutcome {
  return { content: JSON.stringify(data), summary };
}
