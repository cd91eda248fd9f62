/**
 * What a tool the assistant may call is, to the agent loop (./registry.ts runs them; chat.ts drives the loop). Client
 * tools run here, in the runtime; server tools (web search and fetch) run at Anthropic and only need declaring.
 *
 * Every tool is gated by a plan feature: a tool whose feature the plan lacks is never offered to the model, and a call
 * to it anyway is refused. A tool that acts on the customer's behalf outside this runtime (sends, creates, comments)
 * is `acting`: it does so only with the customer's confirmation given in a later message, which the tool itself checks
 * (./confirmations.ts) before it acts, so no path through the loop can skip it.
 */
import type pg from 'pg';
import type { Feature } from '../../../core/plans.ts';
import type { RuntimeConfig } from '../config.ts';
import type { WorkspaceStore } from '../workspace.ts';

/** A JSON Schema object, as the Messages API takes it in `input_schema`. */
export interface ToolInputSchema {
  type: 'object';
  properties: Record<string, unknown>;
  required?: string[];
  additionalProperties?: boolean;
}

/** What a tool's run sees: this customer's runtime only (its database, workspace and configuration). */
export interface ToolContext {
  db: pg.Pool;
  config: RuntimeConfig;
  workspace: WorkspaceStore;
  conversationId: string;
  /** The customer's message of this turn (what a confirmation is read from). */
  message: string;
  now: Date;
}

export interface ToolOutcome {
  /** What goes back to the model in the tool_result block (the loop wraps it as untrusted content). */
  content: string;
  /** A short line for the SSE `tool_end` event and the logs: never a secret, never a whole result. */
  summary: string;
  /** The tool failed or refused: the model sees is_error and can answer accordingly. */
  isError?: boolean;
}

export interface ClientTool {
  name: string;
  description: string;
  input_schema: ToolInputSchema;
  /** The plan feature that offers this tool. */
  feature: Feature;
  /** Acts outside the runtime on the customer's behalf: runs only once the customer confirmed, in a later message. */
  acting?: boolean;
  /**
   * What it answers is this workspace's own instructions (a SKILL.md), meant to be followed, so the loop does not wrap
   * it as untrusted content. Anything that can hold text from outside (memories, email, pages) must leave this unset.
   */
  trustedOutput?: boolean;
  /** A short line for the SSE `tool_start` event, from the input (never a secret, never a whole document). */
  describe(input: Record<string, unknown>): string;
  run(input: Record<string, unknown>, ctx: ToolContext): Promise<ToolOutcome>;
}
