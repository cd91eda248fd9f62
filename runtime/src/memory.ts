/**
 * The customer's long-term memory: facts stored in `memories` and found again by Postgres full-text search. The
 * `search` tsvector column (content and tags, english configuration) and the GIN indexes on it and on `tags` come
 * from the runtime schema; every query here is written so those indexes serve it, never a scan of the table.
 * Each stored fact is also written to that day's daily log (memory/YYYY-MM-DD.md), where the assistant reads it.
 */
import Router from '@koa/router';
import type pg from 'pg';
import { cheapestPlanWith } from '../../core/plans.ts';
import { HttpError } from '../../core/http/httpError.ts';
import { readJsonBody } from '../../core/http/rawBody.ts';
import type { RuntimeContext } from './context.ts';
import { namedStatement } from './namedStatement.ts';
import { appendToDailyLog } from './workspace.ts';

export interface MemoryHit {
  id: string;
  content: string;
  tags: string[];
  source: string | null;
  createdAt: string;
  /** ts_rank_cd of the match; 0 when the search had no words. */
  rank: number;
}

export interface MemoryQuery {
  /** Words to look for, in web-search syntax ("quoted phrase", or, -excluded); blank means newest first. */
  q?: string;
  /** Only memories carrying this tag (lowercase). */
  tag?: string;
  /** 1..100; default 20. */
  limit?: number;
  /**
   * 'all' (default): websearch_to_tsquery, every word must match. 'any': a memory matching any of the words is
   * a hit, ranked by how many and how closely (what a chat prompt wants for a whole message).
   */
  match?: 'all' | 'any';
  /** How many of the newest matches are ranked (MEMORY_SEARCH_CANDIDATES unless less is asked for); see below. */
  candidates?: number;
}

export const MEMORY_DEFAULT_LIMIT = 20;
export const MEMORY_MAX_LIMIT = 100;
export const MEMORY_MAX_CONTENT_CHARS = 10_000;
export const MEMORY_MAX_TAGS = 20;
export const MEMORY_MAX_QUERY_CHARS = 1_000;
export const TAG_PATTERN = /^[a-z0-9][a-z0-9_-]{0,39}$/;

const BODY_LIMIT_BYTES = 64 * 1024;
/** A daily log entry is one line; the full fact stays in the database. */
const DAILY_LOG_MAX_CHARS = 1_000;
/** bigserial's upper bound. */
const MAX_ID = 9_223_372_036_854_775_807n;

/** Checks and normalizes a memory (trimmed content, lowercase unique tags); a 400 HttpError names the problem. */
export function normalizeMemoryInput(input: { content?: unknown; tags?: unknown }): { content: string; tags: string[] } {
  const { content, tags } = input;
  if (typeof content !== 'string') throw badRequest('content is required and must be a string');
  const trimmed = content.trim();
  if (trimmed === '') throw badRequest('content must not be blank');
  const chars = [...trimmed].length;
  if (chars > MEMORY_MAX_CONTENT_CHARS) {
    throw badRequest(`content is ${chars} characters; at most ${MEMORY_MAX_CONTENT_CHARS} are allowed`);
  }
  if (trimmed.includes('\u0000')) throw badRequest('content must not contain NUL characters');

  if (tags === undefined || tags === null) return { content: trimmed, tags: [] };
  if (!Array.isArray(tags)) throw badRequest('tags must be an array of strings');
  if (tags.length > MEMORY_MAX_TAGS) throw badRequest(`at most ${MEMORY_MAX_TAGS} tags are allowed (got ${tags.length})`);
  const normalized: string[] = [];
  for (const [index, tag] of tags.entries()) {
    if (typeof tag !== 'string') throw badRequest(`tags[${index}] must be a string`);
    const lower = tag.trim().toLowerCase();
    if (!TAG_PATTERN.test(lower)) throw badRequest(`tags[${index}] ${describeTag(tag)} ${TAG_RULE}`);
    if (!normalized.includes(lower)) normalized.push(lower);
  }
  return { content: trimmed, tags: normalized };
}

/** Stores a fact and appends it to the daily log of the day it was stored. */
export async function addMemory(
  ctx: Pick<RuntimeContext, 'db' | 'workspace'>,
  input: { content: string; tags?: string[]; source?: string },
): Promise<{ id: string; createdAt: string }> {
  const { content, tags } = normalizeMemoryInput(input);
  const { rows } = await ctx.db.query<{ id: string; created_at: Date }>(
    'INSERT INTO memories (content, tags, source) VALUES ($1, $2::text[], $3) RETURNING id::text AS id, created_at',
    [content, tags, input.source ?? null],
  );
  const { id, created_at: createdAt } = rows[0]!;
  try {
    await appendToDailyLog(ctx.workspace, dailyLogEntry(content, tags), createdAt);
  } catch (err) {
    // Both or neither: a client that retries after the error must not leave a duplicate behind.
    await ctx.db.query('DELETE FROM memories WHERE id = $1', [id]).catch(() => undefined);
    throw err;
  }
  return { id, createdAt: createdAt.toISOString() };
}

function dailyLogEntry(content: string, tags: string[]): string {
  const flat = content.replace(/\s+/g, ' ');
  const chars = [...flat];
  const text = chars.length > DAILY_LOG_MAX_CHARS ? `${chars.slice(0, DAILY_LOG_MAX_CHARS - 1).join('')}…` : flat;
  return `Remembered: ${text}${tags.length ? ` (tags: ${tags.join(', ')})` : ''}`;
}

/**
 * A search with words ranks a bounded set of candidates, never every match: ranking is the expensive part
 * (ts_rank_cd on each row, after fetching each row from the table), and a common word matches a fifth of a large
 * table. The candidates are
 *
 * 1. the newest MEMORY_SEARCH_CANDIDATES matches (highest id: the most recently stored), found in the cheapest
 *    way for how common the words are, each step only when the ones before fell short. The newest
 *    MEMORY_SEARCH_RECENT memories, read backwards on the primary key and stopping at enough matches, serve a
 *    common word (`recent`). When they hold few matches, the GIN index is asked for one match more than needed
 *    (`few`): a word with no more matches than that has them all ranked, so its search answers exactly what
 *    ranking every match would, wherever in the table its memories sit. A word in between (enough among the
 *    newest to promise enough further back, or more than `few` can hold) is looked for in the newest
 *    MEMORY_SEARCH_WINDOW memories (`wider`), and when even those hold too few, every match is fetched from the
 *    GIN index and the newest kept (`older`: each is fetched, but only those are ranked).
 * 2. in a search with "or" (so every 'any' search of several words), also every memory holding a rare word of
 *    the query: one in at most MEMORY_SEARCH_RARE_HITS memories, for up to MEMORY_SEARCH_RARE_WORDS such words
 *    (`rare`). So the memory behind a rare name in a chat message is found even when a common word of the same
 *    message fills the newest matches. A word seen in more than MEMORY_SEARCH_RARE_HITS of the newest matches is
 *    common by that count alone and is not looked up.
 *
 * The candidates are ranked by ts_rank_cd and ordered by rank, then recency, as before. What this gives up: an
 * old memory matching only common words (each in more than MEMORY_SEARCH_CANDIDATES memories) is not found behind
 * the newer matches, even where it would rank higher (say, it repeats the word or holds more of the words).
 */
export const MEMORY_SEARCH_CANDIDATES = 200;
/** How many of the newest memories are read first, for a common word's newest matches. */
export const MEMORY_SEARCH_RECENT = 2_000;
/** How many are read for a word in between, before every match is fetched from the GIN index. */
export const MEMORY_SEARCH_WINDOW = 10_000;
/** A word in at most this many memories (with the tag, if any) is rare: all its memories are candidates. */
export const MEMORY_SEARCH_RARE_HITS = 32;
/** At most this many words of one query are looked up as possibly rare, the least often seen first. */
export const MEMORY_SEARCH_RARE_WORDS = 16;
/**
 * An 'any' search of more words than this (a pasted text, say) ranks each candidate with only the words it holds:
 * the same rank, at a cost that does not grow with the square of the message as ts_rank_cd's does.
 */
export const MEMORY_SEARCH_RANK_WORDS = 16;

/**
 * The parameterized SQL searchMemories runs (exported so a test can EXPLAIN exactly that). Conditions are only
 * added when used, so each shape is one the planner serves from the indexes: `search @@ query` from
 * memories_search_idx, `tags @> ARRAY[tag]` from memories_tags_idx, the newest memories from memories_pkey. A step
 * that is not needed does not run (a one-time filter on a count of the step before). The query reaches the
 * planner as the value of a materialized CTE, not as a constant, so it never sees a common word: seeing one, it
 * would pick a sequential scan for the GIN steps, which only run for words that turned out to be rarer.
 */
export function memorySearchSql(query: MemoryQuery): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const param = (value: unknown): string => {
    values.push(value);
    return `$${values.length}`;
  };
  // Postgres text cannot hold NUL; anything else is data to websearch_to_tsquery, which never fails on syntax.
  const q = query.q?.replace(/\u0000/g, ' ').trim() ?? '';
  const limit = clampLimit(query.limit);
  const tag = query.tag === undefined ? null : param(query.tag);
  const tagged = (alias: string): string => (tag === null ? '' : ` AND ${alias}.tags @> ARRAY[${tag}::text]`);
  const output = 'id::text AS id, content, tags, source, created_at';

  if (q === '') {
    const text =
      `SELECT ${output}, 0::real AS rank FROM memories m` +
      (tag === null ? '' : ` WHERE m.tags @> ARRAY[${tag}::text]`) +
      ` ORDER BY created_at DESC, m.id DESC LIMIT ${param(limit)}`;
    return { text, values };
  }

  const C = Math.min(MEMORY_SEARCH_CANDIDATES, Math.max(1, Math.floor(query.candidates ?? MEMORY_SEARCH_CANDIDATES)));
  const R = MEMORY_SEARCH_RARE_HITS;
  // A lexeme as tsquery input: quoted, with its quotes (39) and backslashes (92) doubled.
  const doubled = (text: string, c: number): string => `replace(${text}, chr(${c}), repeat(chr(${c}), 2))`;
  const quoted = (lexeme: string): string => `chr(39) || ${doubled(doubled(lexeme, 92), 39)} || chr(39)`;
  const anyOf = (from: string): string => `SELECT coalesce(string_agg(${quoted('lexeme')}, ' | '), '')::tsquery FROM ${from}`;
  const words = param(q);
  // 'any': the words' lexemes (those plainto_tsquery would find) joined by "or".
  const tsquery = query.match === 'any' ? anyOf('lexemes') : `SELECT websearch_to_tsquery('english', ${words})`;
  const row = 'm.id, m.content, m.tags, m.source, m.created_at, m.search';
  const matches = (alias: string): string => `${alias}.search @@ (SELECT query FROM s)${tagged(alias)}`;
  const count = (cte: string): string => `(SELECT count(*) FROM ${cte})`;
  const window = (size: number, gate: string): string =>
    `SELECT w.* FROM (SELECT ${row} FROM memories m ORDER BY m.id DESC LIMIT ${size}) w
  WHERE ${gate}${matches('w')} ORDER BY w.id DESC LIMIT ${C}`;
  // So many matches among the newest RECENT make the newest WINDOW likely to hold enough: no need to ask GIN.
  const promising = Math.ceil((C * MEMORY_SEARCH_RECENT) / MEMORY_SEARCH_WINDOW);
  const [recent, few, wider] = [count('recent'), count('few'), count('wider')];
  const widerRuns = `${recent} < ${C} AND (${recent} >= ${promising} OR ${few} > ${C})`;
  // ts_rank_cd costs about the square of the query's words, and in a query of "or"s alone a word the memory lacks
  // adds nothing: a long message is ranked, memory by memory, with the words that memory holds (the same rank).
  const held = anyOf('unnest(tsvector_to_array(search)) AS l (lexeme) WHERE lexeme IN (SELECT lexeme FROM lexemes)');
  const rank =
    query.match === 'any'
      ? `CASE WHEN ${count('lexemes')} <= ${MEMORY_SEARCH_RANK_WORDS} THEN ts_rank_cd(search, (SELECT query FROM s))
  ELSE ts_rank_cd(search, (${held})) END`
      : 'ts_rank_cd(search, (SELECT query FROM s))';
  const text = `WITH lexemes AS MATERIALIZED (
  SELECT lexeme FROM unnest(tsvector_to_array(to_tsvector('english', ${words}))) AS l (lexeme)),
s AS MATERIALIZED (SELECT (${tsquery}) AS query),
recent AS MATERIALIZED (${window(MEMORY_SEARCH_RECENT, '')}),
few AS MATERIALIZED (SELECT ${row} FROM memories m WHERE ${recent} < ${promising} AND ${matches('m')} LIMIT ${C + 1}),
wider AS MATERIALIZED (${window(MEMORY_SEARCH_WINDOW, `${widerRuns} AND `)}),
older AS MATERIALIZED (SELECT m.id FROM memories m WHERE ${widerRuns} AND ${wider} < ${C} AND ${matches('m')}),
newest AS MATERIALIZED (
  SELECT * FROM recent WHERE ${recent} = ${C}
  UNION ALL SELECT * FROM few WHERE ${recent} < ${promising} AND ${few} <= ${C}
  UNION ALL SELECT * FROM wider WHERE ${wider} = ${C}
  UNION ALL
  SELECT ${row} FROM memories m WHERE m.id = ANY (ARRAY(SELECT id FROM older ORDER BY id DESC LIMIT ${C}))),
words AS MATERIALIZED (
  SELECT lexeme FROM lexemes WHERE ${count('newest')} = ${C} AND position(' | ' IN (SELECT query FROM s)::text) > 0),
seen AS (
  SELECT l.lexeme, count(*) AS hits FROM newest n CROSS JOIN LATERAL unnest(tsvector_to_array(n.search)) AS l (lexeme)
  WHERE l.lexeme IN (SELECT lexeme FROM words) GROUP BY l.lexeme),
probes AS (
  SELECT (${quoted('w.lexeme')})::tsquery AS query FROM words w LEFT JOIN seen USING (lexeme)
  WHERE coalesce(seen.hits, 0) <= ${R}
  ORDER BY coalesce(seen.hits, 0), length(w.lexeme) DESC, w.lexeme LIMIT ${MEMORY_SEARCH_RARE_WORDS}),
rare AS MATERIALIZED (
  SELECT r.id, r.content, r.tags, r.source, r.created_at, r.search FROM probes p CROSS JOIN LATERAL (
    SELECT f.*, count(*) OVER () AS hits
    FROM (SELECT ${row} FROM memories m WHERE m.search @@ p.query${tagged('m')} LIMIT ${R + 1}) f) r
  WHERE r.hits <= ${R} AND r.search @@ (SELECT query FROM s)),
candidates AS (SELECT DISTINCT ON (id) * FROM (SELECT * FROM newest UNION ALL SELECT * FROM rare) u ORDER BY id)
SELECT ${output}, ${rank} AS rank FROM candidates
ORDER BY rank DESC, created_at DESC, candidates.id DESC LIMIT ${param(limit)}`;
  return { text, values };
}

/** Ranked full-text search over the memories, optionally narrowed to a tag; newest first without words. */
export async function searchMemories(db: pg.Pool, query: MemoryQuery): Promise<MemoryHit[]> {
  const { text, values } = memorySearchSql(query);
  const { rows } = await db.query<{
    id: string;
    content: string;
    tags: string[];
    source: string | null;
    created_at: Date;
    rank: number;
  }>(namedStatement('memory-search', text, values));
  return rows.map((row) => ({
    id: row.id,
    content: row.content,
    tags: row.tags,
    source: row.source,
    createdAt: row.created_at.toISOString(),
    rank: Number(row.rank),
  }));
}

/** Deletes a memory; false when there was none with that id. */
export async function deleteMemory(db: pg.Pool, id: string): Promise<boolean> {
  if (!isMemoryId(id)) return false;
  const { rowCount } = await db.query('DELETE FROM memories WHERE id = $1', [id]);
  return (rowCount ?? 0) > 0;
}

/** POST/GET /api/memory and DELETE /api/memory/:id; mounted behind the API key and rate limit. */
export function memoryRoutes(ctx: RuntimeContext): Router {
  const router = new Router();
  const requireMemoryFeature = (): void => {
    if (ctx.config.features.includes('memory')) return;
    const requiredPlan = cheapestPlanWith('memory').name;
    throw new HttpError(403, 'plan_required', `memory is not included in this plan; it comes with the ${requiredPlan} plan`, {
      requiredPlan,
    });
  };

  router.post('/api/memory', async (http) => {
    requireMemoryFeature();
    const body = await readJsonBody(http.req, BODY_LIMIT_BYTES);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw badRequest('the body must be a JSON object such as {"content": "...", "tags": ["..."]}');
    }
    const { content, tags } = normalizeMemoryInput(body as { content?: unknown; tags?: unknown });
    const stored = await addMemory(ctx, { content, tags, source: 'api' });
    http.status = 201;
    http.body = stored;
  });

  router.get('/api/memory', async (http) => {
    requireMemoryFeature();
    const q = singleParam(http.query.q, 'q');
    if (q !== undefined && [...q].length > MEMORY_MAX_QUERY_CHARS) {
      throw badRequest(`q is longer than ${MEMORY_MAX_QUERY_CHARS} characters`);
    }
    if (q?.includes('\u0000')) throw badRequest('q must not contain NUL characters');

    const tagText = singleParam(http.query.tag, 'tag');
    let tag: string | undefined;
    if (tagText !== undefined) {
      tag = tagText.trim().toLowerCase();
      if (!TAG_PATTERN.test(tag)) throw badRequest(`tag ${describeTag(tagText)} ${TAG_RULE}`);
    }

    const limitText = singleParam(http.query.limit, 'limit');
    let limit = MEMORY_DEFAULT_LIMIT;
    if (limitText !== undefined) {
      limit = /^\d{1,3}$/.test(limitText) ? Number(limitText) : NaN;
      if (!(limit >= 1 && limit <= MEMORY_MAX_LIMIT)) {
        throw badRequest(`limit must be an integer from 1 to ${MEMORY_MAX_LIMIT} (got ${JSON.stringify(limitText)})`);
      }
    }

    http.body = { memories: await searchMemories(ctx.db, { q, tag, limit }) };
  });

  router.delete('/api/memory/:id', async (http) => {
    requireMemoryFeature();
    const id = http.params.id ?? '';
    if (!isMemoryId(id)) throw badRequest(`memory id must be a positive integer (got ${JSON.stringify(id.slice(0, 40))})`);
    if (!(await deleteMemory(ctx.db, id))) throw new HttpError(404, 'not_found', `no memory with id ${id}`);
    http.status = 204;
  });

  return router;
}

const TAG_RULE = 'is not a valid tag: use 1 to 40 lowercase letters, digits, "-" or "_", starting with a letter or digit';

function describeTag(tag: string): string {
  return JSON.stringify(tag.length > 60 ? `${tag.slice(0, 60)}…` : tag);
}

export function isMemoryId(id: string): boolean {
  return /^[1-9]\d{0,18}$/.test(id) && BigInt(id) <= MAX_ID;
}

function clampLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return MEMORY_DEFAULT_LIMIT;
  return Math.min(MEMORY_MAX_LIMIT, Math.max(1, Math.floor(limit)));
}

/** A query parameter given at most once; empty counts as absent. */
function singleParam(value: string | string[] | undefined, name: string): string | undefined {
  if (Array.isArray(value)) throw badRequest(`give ${name} at most once`);
  return value === undefined || value.trim() === '' ? undefined : value;
}

function badRequest(reason: string): HttpError {
  return new HttpError(400, 'invalid_request', reason);
}
