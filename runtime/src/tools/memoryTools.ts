/**
 * The memory the assistant keeps itself, as the memory skill describes it: facts stored in `memories` (the same
 * table and search as /api/memory, so what it saves shows there), each noted in today's daily log; lasting ones also
 * listed in MEMORY.md, marked with their id so forgetting one takes its line out again; and free notes in the log.
 */
import { addMemory, isMemoryId, searchMemories, TAG_PATTERN, type MemoryHit } from '../memory.ts';
import { appendToDailyLog } from '../workspace.ts';
import { refusal } from './outcome.ts';
import type { ClientTool, ToolContext } from './types.ts';

const MEMORY_FILE = 'MEMORY.md';
const MEMORY_FILE_HEADER = '# MEMORY.md — Long-term memory\n\n';
const SEARCH_DEFAULT_LIMIT = 8;
const SEARCH_MAX_LIMIT = 20;
const NOTE_MAX_CHARS = 1_000;
/** A MEMORY.md line is a reminder; the whole fact stays in the database. */
const MEMORY_LINE_MAX_CHARS = 500;
const SUMMARY_CHARS = 60;

/** `- <fact> (memory #<id>)`: the marker is how memory_forget finds the line again. */
export function memoryLine(content: string, id: string): string {
  return `- ${shortened(content, MEMORY_LINE_MAX_CHARS)} (memory #${id})`;
}

/** MEMORY.md without the lines of memory `id`. */
export function withoutMemoryLine(file: string, id: string): string {
  const marker = `(memory #${id})`;
  return file
    .split('\n')
    .filter((line) => !line.trimEnd().endsWith(marker))
    .join('\n');
}

function shortened(text: string, max: number): string {
  const flat = [...text.replace(/\s+/g, ' ').trim()];
  return flat.length > max ? `${flat.slice(0, max - 1).join('')}…` : flat.join('');
}

const quoted = (text: unknown): string => (typeof text === 'string' && text.trim() ? `"${shortened(text, SUMMARY_CHARS)}"` : '');

function formatHit(hit: MemoryHit): string {
  const tags = hit.tags.length ? ` [${hit.tags.join(', ')}]` : '';
  return `#${hit.id} (${hit.createdAt.slice(0, 10)})${tags}: ${hit.content}`;
}

const memorySearch: ClientTool = {
  name: 'memory_search',
  description:
    "Search the customer's stored memories (facts saved earlier by you or the customer). Memories holding any of the " +
    'words match, best first. Without words, the newest. Use it before saying you do not know something about them.',
  input_schema: {
    type: 'object',
    properties: {
      query: { type: 'string', description: 'Words to look for.' },
      tag: { type: 'string', description: 'Only memories with this tag (lowercase).' },
      limit: { type: 'integer', minimum: 1, maximum: SEARCH_MAX_LIMIT, description: `How many (default ${SEARCH_DEFAULT_LIMIT}).` },
    },
    additionalProperties: false,
  },
  feature: 'memory',
  describe: (input) => `searching memories ${quoted(input.query)}`.trim(),
  async run(input, ctx) {
    const q = typeof input.query === 'string' ? input.query.slice(0, 1_000) : undefined;
    const tag = typeof input.tag === 'string' ? input.tag.trim().toLowerCase() : undefined;
    if (tag !== undefined && !TAG_PATTERN.test(tag)) return refusal(`"${shortened(tag, 40)}" is not a valid tag`);
    const limit = typeof input.limit === 'number' ? Math.min(SEARCH_MAX_LIMIT, Math.max(1, Math.floor(input.limit))) : SEARCH_DEFAULT_LIMIT;
    const hits = await searchMemories(ctx.db, { q, tag, limit, match: 'any' });
    if (!hits.length) return { content: 'No stored memory matches.', summary: 'no memories found' };
    return { content: hits.map(formatHit).join('\n'), summary: `${hits.length} ${hits.length === 1 ? 'memory' : 'memories'} found` };
  },
};

const memorySave: ClientTool = {
  name: 'memory_save',
  description:
    'Store a fact worth knowing in later conversations (a preference, a person, a decision, a deadline), with tags ' +
    'to find it by. It is also noted in today\'s daily log. Set lasting for what will still matter next month: it ' +
    'is listed in MEMORY.md too. Never store passwords, keys or tokens.',
  input_schema: {
    type: 'object',
    properties: {
      content: { type: 'string', description: 'The fact, in a sentence or two.' },
      tags: { type: 'array', items: { type: 'string' }, description: 'Lowercase tags such as "family" or "work".' },
      lasting: { type: 'boolean', description: 'Also list it in MEMORY.md (long-term memory).' },
    },
    required: ['content'],
    additionalProperties: false,
  },
  feature: 'memory',
  describe: (input) => `saving a memory ${quoted(input.content)}`.trim(),
  async run(input, ctx) {
    const { id } = await addMemory(ctx, { content: input.content as string, tags: input.tags as string[] | undefined, source: 'assistant' });
    if (input.lasting === true) await addToMemoryFile(ctx, memoryLine(String(input.content), id));
    const where = input.lasting === true ? 'the daily log and MEMORY.md' : "today's daily log";
    return { content: `Saved as memory #${id}, noted in ${where}.`, summary: `saved memory #${id}` };
  },
};

const memoryForget: ClientTool = {
  name: 'memory_forget',
  description: 'Delete a stored memory that is no longer true or that the customer wants forgotten, by its id (from memory_search). Its MEMORY.md line goes too.',
  input_schema: {
    type: 'object',
    properties: { id: { type: 'string', description: 'The memory id, e.g. "42".' } },
    required: ['id'],
    additionalProperties: false,
  },
  feature: 'memory',
  describe: (input) => `forgetting memory #${String(input.id ?? '').replace(/^#/, '').slice(0, 20)}`,
  async run(input, ctx) {
    const id = String(input.id ?? '').trim().replace(/^#/, '');
    if (!isMemoryId(id)) return refusal('id must be a memory id such as "42"');
    const { rowCount } = await ctx.db.query('DELETE FROM memories WHERE id = $1', [id]);
    if (!rowCount) return refusal(`there is no memory #${id}`);
    const file = ctx.workspace.get(MEMORY_FILE);
    if (file !== undefined) {
      const kept = withoutMemoryLine(file, id);
      if (kept !== file) await ctx.workspace.write(MEMORY_FILE, kept);
    }
    return { content: `Memory #${id} is forgotten.`, summary: `forgot memory #${id}` };
  },
};

const dailyLog: ClientTool = {
  name: 'daily_log',
  description:
    "Append a short note to today's daily log (memory/YYYY-MM-DD.md): a request, a decision, a promise, a follow-up. " +
    'Use memory_save instead for facts to find again later.',
  input_schema: {
    type: 'object',
    properties: { note: { type: 'string', description: 'One line.' } },
    required: ['note'],
    additionalProperties: false,
  },
  feature: 'memory',
  describe: () => 'writing to the daily log',
  async run(input, ctx) {
    const note = typeof input.note === 'string' ? input.note.trim() : '';
    if (!note) return refusal('note must be a non-empty string');
    if ([...note].length > NOTE_MAX_CHARS) return refusal(`note must be at most ${NOTE_MAX_CHARS} characters`);
    await appendToDailyLog(ctx.workspace, note, new Date());
    return { content: "Noted in today's daily log.", summary: 'noted in the daily log' };
  },
};

/** Appends a line to MEMORY.md, on a line of its own whatever the file ends with. */
async function addToMemoryFile(ctx: ToolContext, line: string): Promise<void> {
  const current = ctx.workspace.get(MEMORY_FILE);
  const separator = current && !current.endsWith('\n') ? '\n' : '';
  await ctx.workspace.append(MEMORY_FILE, `${separator}${line}\n`, MEMORY_FILE_HEADER);
}

export const memoryTools: readonly ClientTool[] = [memorySearch, memorySave, memoryForget, dailyLog];
