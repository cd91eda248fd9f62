/**
 * Memory search at a customer's scale: searchMemories over N memories (100,000 at full size) in a throwaway runtime
 * database on the local Postgres, for a common word (in about 20 % of the memories), a rare one (in about ten), in
 * both match modes, with and without a tag, and for a chat-like message (the prompt builder's 'any' search). The
 * anchor is a primary-key lookup of one memory timed the same way in the same loop, so each ratio is the cost of a
 * search over a bare round trip to the same database.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { quoteIdent } from '../../core/postgres.ts';
import { searchMemories, type MemoryQuery } from '../../runtime/src/memory.ts';
import { createRuntimeDatabase, PG_SERVER } from '../../test/support/runtimeDatabase.ts';
import { percentile, sized, type BenchOptions, type BenchRow, type BenchSection } from '../lib/report.ts';

/** Each is in a memory with probability COMMON_SHARE, so each is in about a fifth of them. */
const COMMON = ['meeting', 'project', 'coffee', 'email', 'family', 'travel', 'budget', 'doctor', 'garden', 'weekend'];
const COMMON_SHARE = 0.2;
/** Everyday words; a memory takes a handful, so each is in a few percent. */
const EVERYDAY = (
  'alice bob carol dave erin frank grace heidi ivan judy mallory oscar peggy trent victor walter ' +
  'monday tuesday wednesday thursday friday saturday sunday morning evening afternoon tonight tomorrow yesterday ' +
  'call write send book order pay buy cancel remind plan visit review finish start move fix clean cook read ' +
  'invoice report contract ticket flight hotel train car bike house kitchen office school dentist bank gym ' +
  'birthday party dinner lunch breakfast recipe wine cheese bread tea cake pizza salad soup market store ' +
  'password laptop phone printer router server backup database website account license subscription ' +
  'insurance tax rent mortgage salary loan refund receipt deadline agenda slides notes draft summary ' +
  'daughter son mother father sister brother uncle aunt cousin friend neighbour colleague manager client ' +
  'paris berlin london tokyo rome madrid lisbon vienna prague oslo dublin boston seattle denver austin ' +
  'allergy medicine vitamin appointment checkup vaccine prescription therapy yoga running swimming tennis'
).split(/\s+/);
const EVERYDAY_PER_MEMORY = 6;
const TAGS = ['work', 'home', 'health', 'money', 'people', 'travel', 'food', 'tech', 'ideas', 'errands'];
const SYLLABLES = ['ka', 'lo', 'mi', 'zu', 'ren', 'tov', 'qua', 'bex', 'dri', 'fen', 'gol', 'hax', 'jun', 'vor', 'wyl', 'pim'];
/** About this many memories carry each rare word. */
const RARE_COPIES = 10;

/** A made-up word for each n: distinct for distinct n below SYLLABLES.length ** 4. */
function rareWord(n: number): string {
  let word = '';
  for (let i = 0; i < 4; i++) {
    word += SYLLABLES[n % SYLLABLES.length];
    n = Math.floor(n / SYLLABLES.length);
  }
  return word + 'x';
}

/** mulberry32: the same memories on every run. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function memoryText(random: () => number, rarePool: number): { content: string; tags: string } {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const words = Array.from({ length: EVERYDAY_PER_MEMORY }, () => pick(EVERYDAY));
  for (const word of COMMON) if (random() < COMMON_SHARE) words.push(word);
  words.push(rareWord(Math.floor(random() * rarePool)));
  for (let i = words.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [words[i], words[j]] = [words[j]!, words[i]!];
  }
  const sentence = `Remember to ${words.slice(0, 3).join(' ')}, then ${words.slice(3).join(' ')}.`;
  const tags = random() < 0.5 ? [pick(TAGS)] : [pick(TAGS), pick(TAGS)];
  return { content: sentence, tags: [...new Set(tags)].join(',') };
}

/** N memories, oldest first, created over the last two years; multi-row inserts of BATCH rows, then ANALYZE. */
async function load(db: pg.Pool, count: number, rarePool: number): Promise<void> {
  const BATCH = 5_000;
  const random = seeded(20_250_101);
  const span = 2 * 365 * 86_400_000;
  const start = Date.now() - span;
  for (let first = 0; first < count; first += BATCH) {
    const contents: string[] = [];
    const tags: string[] = [];
    const times: string[] = [];
    for (let i = first; i < Math.min(count, first + BATCH); i++) {
      const memory = memoryText(random, rarePool);
      contents.push(memory.content);
      tags.push(memory.tags);
      times.push(new Date(start + Math.floor((i / count) * span)).toISOString());
    }
    await db.query(
      `INSERT INTO memories (content, tags, source, created_at)
       SELECT c, string_to_array(t, ','), 'bench', at FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u (c, t, at)`,
      [contents, tags, times],
    );
  }
  // VACUUM also moves the GIN pending list into the index proper, as autovacuum would have by then.
  await db.query('VACUUM ANALYZE memories');
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

const section: BenchSection = async (options: BenchOptions): Promise<BenchRow[]> => {
  const count = Math.round(sized('MEMORIES', options, { smoke: 3_000, full: 100_000 }));
  const rounds = Math.round(sized('MEMORY_QUERIES', options, { smoke: 40, full: 300 }));
  const rarePool = Math.max(1, Math.floor(count / RARE_COPIES));
  const dbName = `bench_memsearch_${randomBytes(6).toString('hex')}`;
  const { pool } = await createRuntimeDatabase(dbName, 2);
  try {
    await load(pool, count, rarePool);
    const { rows: bounds } = await pool.query<{ min: string; max: string }>('SELECT min(id)::text AS min, max(id)::text AS max FROM memories');
    const minId = Number(bounds[0]!.min);
    const maxId = Number(bounds[0]!.max);

    const random = seeded(7);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
    const kinds: Record<string, (i: number) => MemoryQuery> = {
      commonAll: (i) => ({ q: COMMON[i % COMMON.length] }),
      commonAny: (i) => ({ q: COMMON[i % COMMON.length], match: 'any' }),
      commonTag: (i) => ({ q: COMMON[i % COMMON.length], tag: pick(TAGS) }),
      rareAll: () => ({ q: rareWord(Math.floor(random() * rarePool)) }),
      rareAny: () => ({ q: rareWord(Math.floor(random() * rarePool)), match: 'any' }),
      // What the chat prompt builder sends: the whole message, any of its words.
      message: (i) => ({
        q: `Did ${pick(EVERYDAY)} mention the ${COMMON[i % COMMON.length]} about ${rareWord(Math.floor(random() * rarePool))} on ${pick(EVERYDAY)}?`,
        match: 'any',
        limit: 8,
      }),
      // A pasted text: twenty sentences like the memories' (some 1,800 characters).
      pasted: () => ({
        q: Array.from({ length: 20 }, () => memoryText(random, rarePool).content).join(' '),
        match: 'any',
        limit: 8,
      }),
    };
    const times: Record<string, number[]> = { anchor: [] };
    for (const kind of Object.keys(kinds)) times[kind] = [];
    const anchor = (): Promise<unknown> =>
      pool.query('SELECT id::text AS id, content, tags, source, created_at FROM memories WHERE id = $1', [
        minId + Math.floor(random() * (maxId - minId + 1)),
      ]);

    // Warm-up: connections, plans and the buffer cache, out of the figures.
    for (let i = 0; i < 20; i++) {
      await anchor();
      for (const make of Object.values(kinds)) await searchMemories(pool, make(i));
    }
    // Interleaved, so every figure and the anchor see the same moments of a noisy machine.
    for (let i = 0; i < rounds; i++) {
      times.anchor!.push(await time(anchor));
      for (const [kind, make] of Object.entries(kinds)) {
        const query = make(i);
        times[kind]!.push(await time(() => searchMemories(pool, query)));
      }
    }

    const size = `${count.toLocaleString('en-US')} memories`;
    const note = `${rounds} queries; a common word is in ~${COMMON_SHARE * 100} % of the memories, a rare one in ~${RARE_COPIES}`;
    const row = (figure: string, kind: string, p: number, goalMs: number | null): BenchRow => {
      const value = percentile(times[kind]!, p);
      return {
        figure: `${figure}, ${size}`,
        anchor: `primary-key lookup of one memory, p${p}`,
        anchorValue: percentile(times.anchor!, p),
        value,
        unit: 'ms',
        better: 'lower',
        goal: goalMs === null ? '–' : `≤ ${goalMs} ms`,
        met: goalMs === null ? true : value <= goalMs,
        note,
      };
    };
    return [
      row("memory search p95, common word, 'all'", 'commonAll', 95, 10),
      row("memory search p50, common word, 'all'", 'commonAll', 50, 10),
      row("memory search p95, common word, 'any'", 'commonAny', 95, 10),
      row("memory search p50, common word, 'any'", 'commonAny', 50, 10),
      row('memory search p95, common word and a tag', 'commonTag', 95, 10),
      row("memory search p95, rare word, 'all'", 'rareAll', 95, 10),
      row("memory search p95, rare word, 'any'", 'rareAny', 95, 10),
      row('memory search p95, chat message (any of its words)', 'message', 95, null),
      row('memory search p95, pasted chat message (20 sentences, any of their words)', 'pasted', 95, null),
    ];
  } finally {
    await pool.end();
    const admin = new pg.Client({ connectionString: `${PG_SERVER}/postgres` });
    await admin.connect();
    try {
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(dbName)} WITH (FORCE)`);
    } finally {
      await admin.end();
    }
  }
};

export default section;
