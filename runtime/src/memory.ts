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
 * The parameterized SQL searchMemories runs (exported so a test can EXPLAIN exactly that). Conditions are only
 * added when used, so each shape is one the planner serves from the GIN indexes: `search @@ query` from
 * memories_search_idx, `tags @> ARRAY[tag]` from memories_tags_idx.
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
  const columns = 'm.id::text AS id, m.content, m.tags, m.source, m.created_at';
  const where: string[] = [];
  let from = 'memories m';
  let rank = '0::real';
  let order = 'm.created_at DESC, m.id DESC';
  if (q !== '') {
    const tsquery =
      query.match === 'any'
        ? // plainto_tsquery joins the lexemes with ' & '; a lexeme never holds a space, so this turns AND into OR.
          `replace(plainto_tsquery('english', ${param(q)})::text, ' & ', ' | ')::tsquery`
        : `websearch_to_tsquery('english', ${param(q)})`;
    from += ` CROSS JOIN (SELECT ${tsquery} AS query) AS s`;
    where.push('m.search @@ s.query');
    rank = 'ts_rank_cd(m.search, s.query)';
    order = `rank DESC, ${order}`;
  }
  if (query.tag !== undefined) where.push(`m.tags @> ARRAY[${param(query.tag)}::text]`);
  const text =
    `SELECT ${columns}, ${rank} AS rank FROM ${from}` +
    (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
    ` ORDER BY ${order} LIMIT ${param(limit)}`;
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
  }>(text, values);
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

function isMemoryId(id: string): boolean {
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
