/** What the runtime's modules share: its configuration, its database, its workspace and the turn runner. */
import type pg from 'pg';
import type { Citation } from './agentLoop.ts';
import type { RuntimeConfig } from './config.ts';
import type { WorkspaceStore } from './workspace.ts';

export interface TurnInput {
  message: string;
  conversationId?: string;
  /** Who asked: 'api', 'webhook:<source>' or 'heartbeat'. */
  source: string;
}

export interface TurnResult {
  reply: string;
  conversationId: string;
  /** Every round's tokens of the turn. */
  usage: { inputTokens: number; outputTokens: number };
  /** The web pages the reply drew on (cited search results, fetched pages), each once. */
  citations: Citation[];
  /** The turn ran out of tool rounds before the model answered; the reply says so. */
  roundLimitReached?: true;
}

/** One chat turn with the model, counted against the plan's limit (used by chat, webhooks and the heartbeat). */
export type RunTurn = (input: TurnInput) => Promise<TurnResult>;

export interface RuntimeContext {
  db: pg.Pool;
  config: RuntimeConfig;
  workspace: WorkspaceStore;
  runTurn: RunTurn;
}
