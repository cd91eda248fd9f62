/**
 * What a chat turn's prompt reads from the database, in one named statement: the conversation's recent messages,
 * the skills' rows and the memories most relevant to the message. One round trip to one server process instead of
 * three in parallel: on a busy machine each process that has to be woken up for a turn adds its wait to the turn.
 */
import type pg from 'pg';
import { memorySearchSql } from './memory.ts';
import type { ModelMessage } from './model.ts';
import { namedStatement } from './namedStatement.ts';
import { SKILL_ROWS_SQL, type SkillRow } from './skills.ts';

export interface PromptContextQuery {
  /** Undefined for a new conversation, which has no history. */
  conversationId?: string;
  /** How many of the conversation's last messages to read. */
  historyMessages: number;
  message: string;
  /** How many memories to keep, and how many of the newest matches to rank for them (see memorySearchSql). */
  memories: number;
  candidates: number;
}

export interface PromptContextRows {
  /** Oldest first, starting with a user message. */
  history: ModelMessage[];
  skills: SkillRow[];
  /** Most relevant first. */
  memories: { content: string; tags: string[] }[];
}

/** The statement readPromptContext runs (exported so a test can check its parts against their own queries). */
export function promptContextSql(query: PromptContextQuery): { text: string; values: unknown[] } {
  const search = memorySearchSql({ q: query.message, match: 'any', limit: query.memories, candidates: query.candidates });
  const values = [...search.values, query.conversationId ?? null, query.historyMessages];
  const [conversation, count] = [`$${values.length - 1}::uuid`, `$${values.length}::int`];
  // Empty messages (a model may answer with nothing) are left out: the API refuses them in a history.
  const text = `SELECT
  (SELECT coalesce(json_agg(json_build_object('role', h.role, 'content', h.content) ORDER BY h.id), '[]')
     FROM (SELECT id, role, content FROM conversation_messages
            WHERE conversation_id = ${conversation} AND content <> '' ORDER BY id DESC LIMIT ${count}) h) AS history,
  (SELECT coalesce(json_agg(k ORDER BY k.name COLLATE "C"), '[]') FROM (${SKILL_ROWS_SQL}) k) AS skills,
  (SELECT coalesce(json_agg(json_build_object('content', m.content, 'tags', m.tags)
                            ORDER BY m.rank DESC, m.created_at DESC, m.id::bigint DESC), '[]')
     FROM (${search.text}) m) AS memories`;
  return { text, values };
}

export async function readPromptContext(db: pg.Pool, query: PromptContextQuery): Promise<PromptContextRows> {
  const { text, values } = promptContextSql(query);
  const { rows } = await db.query<PromptContextRows>(namedStatement('prompt-context', text, values));
  const { history, skills, memories } = rows[0]!;
  return { history: startingWithUser(history), skills, memories };
}

/** The API wants a history to start with a user message: the oldest messages up to the first user one are dropped. */
export function startingWithUser(messages: ModelMessage[]): ModelMessage[] {
  const first = messages.findIndex((m) => m.role === 'user');
  return first === -1 ? [] : messages.slice(first);
}
