import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { createRuntimeDatabase, PG_SERVER } from '../support/runtimeDatabase.ts';
import { listen } from '../support/routerApp.ts';
import pg from 'pg';
import { PLANS } from '../../core/plans.ts';
import { renderWorkspace } from '../../src/workspace/render.ts';
import { loadRuntimeConfig } from '../../runtime/src/config.ts';
import type { RuntimeContext } from '../../runtime/src/context.ts';
import {
  addMemory,
  deleteMemory,
  memoryRoutes,
  MEMORY_SEARCH_CANDIDATES,
  MEMORY_SEARCH_RANK_WORDS,
  memorySearchSql,
  searchMemories,
  type MemoryHit,
  type MemoryQuery,
} from '../../runtime/src/memory.ts';
import { dailyLogPath, WorkspaceStore } from '../../runtime/src/workspace.ts';


describe('runtime memory', () => {
  const dbName = `rt_mem_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: `${PG_SERVER}/postgres` });
  let pool: pg.Pool;
  let dir: string;
  let ctx: RuntimeContext;
  let server: Server;
  let base: string;

  before(async () => {
    await admin.connect();
    const created = await createRuntimeDatabase(dbName);
    pool = created.pool;
    const url = created.url;
    const files = renderWorkspace({
      workspaceId: 'ws_mem',
      customer: { name: 'Ada', email: 'ada@example.com' },
      plan: PLANS.starter,
      createdAt: new Date('2025-01-02T03:04:05Z'),
    });
    for (const file of files) {
      await pool.query('INSERT INTO workspace_files (path, content, sha256) VALUES ($1, $2, $3)', [file.path, file.content, 'x']);
    }
    dir = await mkdtemp(path.join(tmpdir(), 'rt-mem-'));
    const workspace = await WorkspaceStore.load(pool, dir);
    const config = loadRuntimeConfig({ DATABASE_URL: url, WORKSPACE_ID: 'ws_mem', PLAN: 'starter', MESSAGE_LIMIT: '100' });
    ctx = {
      db: pool,
      config,
      workspace,
      runTurn: async () => {
        throw new Error('runTurn is not used by the memory API');
      },
    };

    server = await listen(memoryRoutes(ctx));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await pool?.end();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function call(method: string, url: string, body?: unknown, headers: Record<string, string> = {}) {
    const init: RequestInit = { method, headers: { ...headers } };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
    }
    const res = await fetch(base + url, init);
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  }

  const post = (body: unknown, headers?: Record<string, string>) => call('POST', '/api/memory', body, headers);
  async function search(query: string): Promise<MemoryHit[]> {
    const res = await call('GET', `/api/memory${query}`);
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    return res.body.memories;
  }

  async function expect400(res: { status: number; body: any }, reasonPart: string | RegExp): Promise<void> {
    expect(res.status, JSON.stringify(res.body)).to.equal(400);
    expect(res.body.error).to.be.a('string');
    if (typeof reasonPart === 'string') expect(res.body.reason).to.include(reasonPart);
    else expect(res.body.reason).to.match(reasonPart);
  }

  const ids: Record<string, string> = {};

  describe('POST /api/memory', () => {
    it('stores a memory, answers 201 with its id and time, and appends it to the daily log', async () => {
      const res = await post({ content: '  Ada prefers espresso over filter coffee  ', tags: ['Food', 'preferences', 'food'] });
      expect(res.status).to.equal(201);
      expect(res.body.id).to.match(/^\d+$/);
      expect(new Date(res.body.createdAt).toISOString()).to.equal(res.body.createdAt);
      ids.coffee = res.body.id;

      const { rows } = await pool.query('SELECT content, tags, source FROM memories WHERE id = $1', [res.body.id]);
      expect(rows[0]).to.deep.equal({ content: 'Ada prefers espresso over filter coffee', tags: ['food', 'preferences'], source: 'api' });

      const logPath = dailyLogPath(new Date(res.body.createdAt));
      const line = 'Remembered: Ada prefers espresso over filter coffee (tags: food, preferences)';
      expect(ctx.workspace.get(logPath)).to.include(line);
      expect(ctx.workspace.get(logPath)).to.match(/^# \d{4}-\d{2}-\d{2}\n\n- \d{2}:\d{2} UTC — Remembered: /);
      const stored = await pool.query('SELECT content FROM workspace_files WHERE path = $1', [logPath]);
      expect(stored.rows[0].content).to.include(line);
      expect(await readFile(path.join(dir, logPath), 'utf8')).to.include(line);
    });

    it('stores more memories (addMemory as a function too), each with its own log line', async () => {
      const more: Array<[string, string[]]> = [
        ['Nightly postgres backup runs at 02:00 UTC on the db-1 server', ['infra', 'backups']],
        ['The postgres server db-1 needs a kernel upgrade', ['infra']],
        ['Dentist appointment on Friday at 10:00', ['health']],
        ['Ada is learning the Japanese language: 日本語を勉強しています', ['learning']],
      ];
      for (const [content, tags] of more) {
        const res = await post({ content, tags });
        expect(res.status).to.equal(201);
        ids[content.split(' ')[0]!.toLowerCase()] = res.body.id;
      }
      const direct = await addMemory(ctx, { content: 'Backup restore drill passed in March', tags: ['backups'], source: 'webhook:github' });
      ids.drill = direct.id;
      const { rows } = await pool.query('SELECT source FROM memories WHERE id = $1', [direct.id]);
      expect(rows[0].source).to.equal('webhook:github');
      const log = ctx.workspace.get(dailyLogPath(new Date(direct.createdAt)))!;
      for (const text of ['Nightly postgres backup', 'kernel upgrade', 'Dentist', '日本語', 'restore drill']) expect(log).to.include(text);
    });

    it('refuses bad bodies with a 4xx JSON reason', async () => {
      await expect400(await post({}), 'content is required');
      await expect400(await post({ content: 42 }), 'content is required and must be a string');
      await expect400(await post({ content: '   \n\t ' }), 'must not be blank');
      await expect400(await post({ content: 'x'.repeat(10_001) }), 'at most 10000');
      await expect400(await post({ content: 'nul \u0000 inside' }), 'NUL');
      await expect400(await post({ content: 'ok', tags: 'infra' }), 'tags must be an array');
      await expect400(await post({ content: 'ok', tags: [1] }), 'tags[0] must be a string');
      await expect400(await post({ content: 'ok', tags: ['fine', 'has space'] }), 'tags[1] "has space" is not a valid tag');
      await expect400(await post({ content: 'ok', tags: ['-dash'] }), 'is not a valid tag');
      await expect400(await post({ content: 'ok', tags: ['a'.repeat(41)] }), 'is not a valid tag');
      await expect400(await post({ content: 'ok', tags: Array.from({ length: 21 }, (_, i) => `t${i}`) }), 'at most 20 tags');
      await expect400(await post([{ content: 'array' }]), 'JSON object');
      await expect400(await post('null'), 'JSON object');
      await expect400(await post('{"content": '), 'not valid JSON');

      const wrongType = await post('content=hi', { 'content-type': 'application/x-www-form-urlencoded' });
      expect(wrongType.status).to.equal(415);
      expect(wrongType.body).to.include({ error: 'unsupported_media_type' });

      const huge = await post({ content: 'y'.repeat(70 * 1024) });
      expect(huge.status).to.equal(413);
      expect(huge.body.reason).to.include('65536');

      // 10,000 characters is the limit in characters, not bytes.
      expect((await post({ content: 'é'.repeat(10_000) })).status).to.equal(201);
      const { rows } = await pool.query("SELECT id FROM memories WHERE content LIKE 'éé%'");
      expect(await deleteMemory(pool, rows[0].id)).to.equal(true);
      const { rows: bad } = await pool.query("SELECT count(*)::int AS n FROM memories WHERE content IN ('ok', '')");
      expect(bad[0].n).to.equal(0);
    });
  });

  describe('GET /api/memory', () => {
    it('lists newest first without a query, with rank 0', async () => {
      const hits = await search('');
      expect(hits.map((h) => h.id)).to.deep.equal(
        [ids.coffee, ids.nightly, ids.the, ids.dentist, ids.ada, ids.drill].reverse(),
      );
      expect(hits.every((h) => h.rank === 0)).to.equal(true);
      expect(hits[0]).to.have.all.keys('id', 'content', 'tags', 'source', 'createdAt', 'rank');
      expect(await search('?limit=2')).to.have.length(2);
    });

    it('finds by words, stemmed, ignoring case', async () => {
      const hits = await search('?q=BACKUPS');
      expect(hits.map((h) => h.id)).to.have.members([ids.nightly, ids.drill]);
      expect(hits.every((h) => h.rank > 0)).to.equal(true);
      expect((await search('?q=dentist')).map((h) => h.id)).to.deep.equal([ids.dentist]);
      expect((await search(`?q=${encodeURIComponent('"kernel upgrade"')}`)).map((h) => h.id)).to.deep.equal([ids.the]);
      expect(await search('?q=zebra')).to.deep.equal([]);
      // Every word must match by default.
      expect((await search('?q=postgres+kernel')).map((h) => h.id)).to.deep.equal([ids.the]);
    });

    it('finds by tag (case-insensitively) and by words within a tag', async () => {
      expect((await search('?tag=infra')).map((h) => h.id)).to.deep.equal([ids.the, ids.nightly]);
      expect((await search('?tag=BACKUPS')).map((h) => h.id)).to.deep.equal([ids.drill, ids.nightly]);
      expect((await search('?tag=backups&q=nightly')).map((h) => h.id)).to.deep.equal([ids.nightly]);
      expect(await search('?tag=nope')).to.deep.equal([]);
      // Tags are part of the searchable text too.
      expect((await search('?q=preferences')).map((h) => h.id)).to.deep.equal([ids.coffee]);
    });

    it('ranks a memory matching more of the words first', async () => {
      const hits = await search(`?q=${encodeURIComponent('postgres or backup or nightly')}`);
      expect(hits.map((h) => h.id)).to.have.members([ids.nightly, ids.the, ids.drill]);
      expect(hits[0]!.id).to.equal(ids.nightly);
      expect(hits[0]!.rank).to.be.greaterThan(hits[1]!.rank);
      expect(hits[1]!.rank).to.be.at.least(hits[2]!.rank);

      const any = await searchMemories(pool, { q: 'what time does the nightly postgres backup run?', match: 'any' });
      expect(any[0]!.id).to.equal(ids.nightly);
      expect(any.map((h) => h.id)).to.include.members([ids.the, ids.drill]);
      // By default every word must match, and no memory mentions a "time".
      expect(await searchMemories(pool, { q: 'what time does the nightly postgres backup run?' })).to.deep.equal([]);
    });

    it('is unharmed by SQL-looking, tsquery-looking and unicode input', async () => {
      const nasty = [
        "'; DROP TABLE memories; --",
        "' OR '1'='1",
        'a & b | !c',
        '(((',
        ')))',
        "!!!:*<->''",
        '\\',
        'postgres:* & !',
        '$1 $2',
        '日本語',
        '🙂🙃 émoji',
        '-',
        'the and of',
      ];
      for (const q of nasty) {
        const res = await call('GET', `/api/memory?q=${encodeURIComponent(q)}`);
        expect(res.status, `${q}: ${JSON.stringify(res.body)}`).to.equal(200);
        expect(res.body.memories).to.be.an('array');
        for (const match of ['any', 'all'] as const) await searchMemories(pool, { q, match });
      }
      // A stored memory can look like SQL too, and is found as text.
      const stored = await post({ content: "Robert'); DROP TABLE memories;-- is a funny name", tags: ['jokes'] });
      expect(stored.status).to.equal(201);
      expect((await search(`?q=${encodeURIComponent('robert drop table')}`)).map((h) => h.id)).to.deep.equal([stored.body.id]);
      const { rows } = await pool.query('SELECT count(*)::int AS n FROM memories');
      expect(rows[0].n).to.equal(7);
      expect(await searchMemories(pool, { q: 'nul\u0000byte' })).to.deep.equal([]);
      expect(await searchMemories(pool, { q: 'lone \ud800 surrogate' })).to.deep.equal([]);
      expect((await post({ content: 'lone \ud800 surrogate', tags: ['x'] })).status).to.equal(201);
      expect((await search('?q=surrogate')).map((h) => h.content)).to.deep.equal(['lone \ufffd surrogate']);
      await pool.query("DELETE FROM memories WHERE content LIKE 'lone %'");
      expect(await deleteMemory(pool, stored.body.id)).to.equal(true);
    });

    it('refuses bad parameters with 400', async () => {
      for (const limit of ['0', '101', '-1', '1.5', 'ten', '1e2', '00000000001']) {
        await expect400(await call('GET', `/api/memory?limit=${limit}`), 'limit must be an integer from 1 to 100');
      }
      await expect400(await call('GET', '/api/memory?tag=has%20space'), 'is not a valid tag');
      await expect400(await call('GET', `/api/memory?tag=${'a'.repeat(41)}`), 'is not a valid tag');
      await expect400(await call('GET', '/api/memory?tag=a&tag=b'), 'at most once');
      await expect400(await call('GET', `/api/memory?q=${'w'.repeat(1001)}`), 'longer than 1000');
      await expect400(await call('GET', '/api/memory?q=a%00b'), 'NUL');
      expect(await search('?limit=100')).to.have.length(6);
    });

    it('serves searches from the GIN indexes, not a scan', async () => {
      await pool.query(
        `INSERT INTO memories (content, tags)
         SELECT 'filler note number ' || n || ' about gardening and ' || (ARRAY['tomatoes','roses','herbs'])[n % 3 + 1],
                ARRAY['filler', 'garden' || (n % 50)]
         FROM generate_series(1, 3000) AS n`,
      );
      // VACUUM moves the GIN pending list into the index proper, as autovacuum does; with the new rows still
      // pending, the planner prices the index too high for a table this small.
      await pool.query('VACUUM ANALYZE memories');
      const client = await pool.connect();
      try {
        await client.query('SET enable_seqscan = off');
        const plan = async (query: Parameters<typeof memorySearchSql>[0]): Promise<string> => {
          const { text, values } = memorySearchSql(query);
          const { rows } = await client.query(`EXPLAIN ${text}`, values);
          return rows.map((row: { 'QUERY PLAN': string }) => row['QUERY PLAN']).join('\n');
        };
        const byWords = await plan({ q: 'postgres backup' });
        expect(byWords).to.include('memories_search_idx');
        expect(byWords).not.to.match(/Seq Scan/);
        const anyWords = await plan({ q: 'postgres backup', match: 'any' });
        expect(anyWords).to.include('memories_search_idx');
        expect(anyWords).not.to.match(/Seq Scan/);
        const byTag = await plan({ tag: 'garden7' });
        expect(byTag).to.include('memories_tags_idx');
        expect(byTag).not.to.match(/Seq Scan/);
      } finally {
        await client.query('RESET enable_seqscan');
        client.release();
      }
      try {
        // And without any hint, on a table of a few thousand rows, the planner picks the indexes by itself.
        for (const query of [{ q: 'dentist' }, { q: 'dentist', match: 'any' as const }, { tag: 'health' }]) {
          const { text, values } = memorySearchSql(query);
          const { rows } = await pool.query(`EXPLAIN ${text}`, values);
          const plan = rows.map((row: { 'QUERY PLAN': string }) => row['QUERY PLAN']).join('\n');
          expect(plan, plan).to.match(query.tag ? /Bitmap Index Scan on memories_tags_idx/ : /Bitmap Index Scan on memories_search_idx/);
          expect(plan, plan).not.to.match(/Seq Scan/);
        }
        expect((await search('?q=dentist')).map((h) => h.id)).to.deep.equal([ids.dentist]);
        expect((await search('?tag=health')).map((h) => h.id)).to.deep.equal([ids.dentist]);
      } finally {
        await pool.query("DELETE FROM memories WHERE 'filler' = ANY (tags)");
      }
    });
  });

  describe('DELETE /api/memory/:id', () => {
    it('deletes a memory (204), then 404', async () => {
      const first = await call('DELETE', `/api/memory/${ids.dentist}`);
      expect(first.status).to.equal(204);
      expect(first.body).to.equal(undefined);
      expect(await search('?q=dentist')).to.deep.equal([]);
      const again = await call('DELETE', `/api/memory/${ids.dentist}`);
      expect(again.status).to.equal(404);
      expect(again.body).to.include({ error: 'not_found' });
      expect(again.body.reason).to.include(ids.dentist);
      expect((await call('DELETE', '/api/memory/999999999')).status).to.equal(404);
    });

    it('refuses an id that is not a positive integer with 400', async () => {
      for (const id of ['0', '-1', 'abc', '1.5', '01', '9223372036854775808', '1%20OR%201%3D1', "1';DROP TABLE memories;--"]) {
        await expect400(await call('DELETE', `/api/memory/${encodeURIComponent(id)}`), 'must be a positive integer');
      }
      expect(await deleteMemory(pool, 'abc')).to.equal(false);
      const { rows } = await pool.query('SELECT count(*)::int AS n FROM memories');
      expect(rows[0].n).to.equal(5);
    });
  });

  describe('plan', () => {
    it('answers 403 plan_required when the plan lacks memory', async () => {
      const other = await listen(memoryRoutes({ ...ctx, config: { ...ctx.config, features: ['chat'] } }));
      try {
        const res = await fetch(`http://127.0.0.1:${(other.address() as AddressInfo).port}/api/memory`);
        expect(res.status).to.equal(403);
        expect(await res.json()).to.include({ error: 'plan_required', requiredPlan: 'starter' });
      } finally {
        await new Promise((resolve) => other.close(resolve));
      }
    });
  });
});


describe('runtime memory search over many matches', () => {
  const dbName = `rt_memsearch_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: `${PG_SERVER}/postgres` });
  let pool: pg.Pool;
  const BULK = 12_000;
  const special: Record<string, string> = {};

  async function store(content: string, tags: string[], minutesAgo: number): Promise<string> {
    const { rows } = await pool.query(
      `INSERT INTO memories (content, tags, created_at) VALUES ($1, $2, now() - make_interval(mins => $3)) RETURNING id::text AS id`,
      [content, tags, minutesAgo],
    );
    return rows[0].id;
  }

  before(async () => {
    await admin.connect();
    pool = (await createRuntimeDatabase(dbName)).pool;
    // Stored first, so the oldest: each is behind thousands of newer matches of 'coffee'.
    special.grinder = await store('The coffee grinder from Zanzibar needs new burrs', ['kitchen'], 100_000);
    special.budget = await store('Coffee, coffee, coffee: the office coffee budget is spent', [], 99_999);
    special.trip = await store('Zanzibar trip: the ferry leaves at nine', ['travel'], 99_998);
    special.wifi = await store('The wifi password is with bob@example.com, the scripts in /usr/local/bin', ['tech'], 99_997);
    // Then BULK notes, one a minute: 'coffee' in every other one, a tree name in every fifth, 'tea' only in the
    // oldest thousand (so in none of the newest MEMORY_SEARCH_WINDOW), and on notes with coffee: the tag kitchen on
    // every tenth, garden on every fortieth, pantry on every fiftieth of the oldest 1,500.
    await pool.query(
      `INSERT INTO memories (content, tags, created_at)
       SELECT 'note ' || n || ' about ' || CASE WHEN n % 2 = 0 THEN 'coffee and ' ELSE '' END
                || (ARRAY['maple', 'cedar', 'birch', 'aspen', 'larch'])[n % 5 + 1]
                || CASE WHEN n <= 1000 AND n % 4 = 0 THEN ' with tea' ELSE '' END,
              ARRAY['bulk'] || CASE WHEN n % 10 = 0 THEN ARRAY['kitchen'] ELSE '{}' END
                            || CASE WHEN n % 40 = 0 THEN ARRAY['garden'] ELSE '{}' END
                            || CASE WHEN n % 50 = 0 AND n <= 1500 THEN ARRAY['pantry'] ELSE '{}' END,
              now() - make_interval(mins => $1 - n)
       FROM generate_series(1, $1::int) AS n`,
      [BULK],
    );
    special.fresh = await store('Fresh coffee beans arrived: coffee for a month', ['kitchen'], 0);
    await pool.query('VACUUM ANALYZE memories');
  });

  after(async () => {
    await pool?.end();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  });

  /**
   * What the search promises, written independently of it: the newest MEMORY_SEARCH_CANDIDATES matches (with the
   * tag), ranked by ts_rank_cd, then newest first.
   */
  async function newestRanked(
    q: string,
    options: { tag?: string; limit?: number; all?: boolean; candidates?: number } = {},
  ): Promise<string[]> {
    const { rows } = await pool.query(
      `SELECT id::text AS id FROM (
         SELECT id, search, created_at FROM memories
         WHERE search @@ websearch_to_tsquery('english', $1) AND ($2::text IS NULL OR tags @> ARRAY[$2])
         ORDER BY id DESC LIMIT $3) c
       ORDER BY ts_rank_cd(search, websearch_to_tsquery('english', $1)) DESC, created_at DESC, id DESC LIMIT $4`,
      [q, options.tag ?? null, options.all ? 1_000_000 : (options.candidates ?? MEMORY_SEARCH_CANDIDATES), options.limit ?? 20],
    );
    return rows.map((row) => row.id);
  }
  const ids = (hits: MemoryHit[]): string[] => hits.map((hit) => hit.id);

  function expectRankedThenNewest(hits: MemoryHit[]): void {
    for (let i = 1; i < hits.length; i++) {
      const [a, b] = [hits[i - 1]!, hits[i]!];
      expect(a.rank, `${a.id} before ${b.id}`).to.be.at.least(b.rank);
      if (a.rank === b.rank) expect(a.createdAt >= b.createdAt, `${a.id} before ${b.id}`).to.equal(true);
    }
  }

  it('ranks the newest matches of a common word: the newest, and one that repeats the word, come first', async () => {
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM memories WHERE search @@ to_tsquery('english', 'coffee')`);
    expect(rows[0].n).to.equal(BULK / 2 + 3);
    for (const match of ['all', 'any'] as const) {
      const hits = await searchMemories(pool, { q: 'coffee', match });
      expect(hits).to.have.length(20);
      expect(hits[0]!.id).to.equal(special.fresh);
      expect(ids(hits)).to.deep.equal(await newestRanked('coffee'));
      expectRankedThenNewest(hits);
      expect(hits[0]).to.have.all.keys('id', 'content', 'tags', 'source', 'createdAt', 'rank');
      expect(hits[0]!.rank).to.be.greaterThan(hits[1]!.rank);
    }
    // The trade-off, on purpose: ranking every match would put the old memory that says coffee four times
    // first; it is behind 3,000 newer matches, so it is not a candidate.
    expect((await newestRanked('coffee', { all: true }))[0]).to.equal(special.budget);
    expect(ids(await searchMemories(pool, { q: 'coffee', limit: 100 }))).not.to.include(special.budget);
  });

  it('honours the limit', async () => {
    expect(await searchMemories(pool, { q: 'coffee', limit: 100 })).to.have.length(100);
    expect(ids(await searchMemories(pool, { q: 'coffee', limit: 1 }))).to.deep.equal([special.fresh]);
    expect(ids(await searchMemories(pool, { q: 'maple', limit: 100 }))).to.deep.equal(await newestRanked('maple', { limit: 100 }));
  });

  it('finds a rare word wherever it sits, and ranks every match of a word that is not common', async () => {
    for (const match of ['all', 'any'] as const) {
      expect(ids(await searchMemories(pool, { q: 'zanzibar', match }))).to.have.members([special.grinder, special.trip]);
      expect(ids(await searchMemories(pool, { q: 'grinder', match }))).to.deep.equal([special.grinder]);
    }
    // Every word must match: one rare word makes the whole search rare, and exact.
    expect(ids(await searchMemories(pool, { q: 'coffee grinder' }))).to.deep.equal([special.grinder]);
    // 250 matches, all older than the newest MEMORY_SEARCH_WINDOW memories: the newest 200 of them, from the index.
    const tea = await searchMemories(pool, { q: 'tea', limit: 100 });
    expect(ids(tea)).to.deep.equal(await newestRanked('tea', { limit: 100 }));
    expect(Number(tea[0]!.id)).to.be.lessThan(Number(special.fresh) - BULK + 1000);
    expectRankedThenNewest(tea);
    // A phrase and an exclusion are still the query's own.
    expect(ids(await searchMemories(pool, { q: '"coffee grinder"' }))).to.deep.equal([special.grinder]);
    expect(ids(await searchMemories(pool, { q: 'zanzibar -ferry' }))).to.deep.equal([special.grinder]);
  });

  it("finds the memory behind a message's rare words ('any'), though the message's common words fill the newest", async () => {
    const hits = await searchMemories(pool, { q: 'Where is the coffee grinder I bought in Zanzibar?', match: 'any', limit: 8 });
    expect(hits).to.have.length(8);
    expect(hits[0]!.id).to.equal(special.grinder);
    expectRankedThenNewest(hits);
    // After it, memories holding two of the words before those holding one, newest first among equals.
    expect(hits[1]!.id).to.equal(special.fresh);

    // A long message ranks each memory with the words it holds: the same rank as with the whole message.
    const filler = Array.from({ length: MEMORY_SEARCH_RANK_WORDS }, (_, i) => `word${i}`).join(' ');
    const long = `Is the coffee grinder from Zanzibar on the maple shelf? ${filler}`;
    const longHits = await searchMemories(pool, { q: long, match: 'any', limit: 50 });
    expect(longHits[0]!.id).to.equal(special.grinder);
    const { rows: full } = await pool.query(
      `SELECT id::text AS id, ts_rank_cd(search, replace(plainto_tsquery('english', $1)::text, ' & ', ' | ')::tsquery) AS rank,
              cardinality(tsvector_to_array(to_tsvector('english', $1))) AS words
       FROM memories WHERE id = ANY ($2::bigint[])`,
      [long, ids(longHits)],
    );
    expect(full[0].words).to.be.greaterThan(MEMORY_SEARCH_RANK_WORDS);
    expect(longHits.map((hit) => [hit.id, hit.rank])).to.have.deep.members(full.map((row) => [row.id, row.rank]));
    expectRankedThenNewest(longHits);

    // Rare words that are not plain words: each is looked up as a lexeme of its own.
    const wifi = await searchMemories(pool, { q: 'coffee, maple: the scripts of bob@example.com in /usr/local/bin', match: 'any', limit: 3 });
    expect(wifi[0]!.id).to.equal(special.wifi);
    // "or" in the web-search syntax is an 'any' within an 'all' search.
    expect(ids(await searchMemories(pool, { q: 'coffee or grinder or zanzibar', limit: 3 }))[0]).to.equal(special.grinder);
  });

  it('ranks only the newest matches asked for (a chat prompt asks for fewer), still finding a rare word wherever it sits', async () => {
    for (const q of ['coffee', 'maple', 'tea']) {
      const hits = await searchMemories(pool, { q, limit: 10, candidates: 24 });
      expect(ids(hits), q).to.deep.equal(await newestRanked(q, { limit: 10, candidates: 24 }));
    }
    // Fewer candidates than the API's: the memory that repeats coffee is not among the newest 24, nor among 200.
    expect(ids(await searchMemories(pool, { q: 'coffee', limit: 24, candidates: 24 }))).to.deep.equal(
      await newestRanked('coffee', { limit: 24, candidates: 24 }),
    );
    const message = await searchMemories(pool, { q: 'Where is the coffee grinder I bought in Zanzibar?', match: 'any', limit: 8, candidates: 24 });
    expect(ids(message).slice(0, 2)).to.deep.equal([special.grinder, special.fresh]);
    // More than the API ranks is not granted.
    expect(ids(await searchMemories(pool, { q: 'coffee', limit: 100, candidates: 10_000 }))).to.deep.equal(
      await newestRanked('coffee', { limit: 100 }),
    );
  });

  it('narrows to a tag: a common word with a common tag, and with a tag on few of its memories', async () => {
    // One in ten of the newest memories, and one in forty.
    expect(ids(await searchMemories(pool, { q: 'coffee', tag: 'garden', limit: 50 }))).to.deep.equal(
      await newestRanked('coffee', { tag: 'garden', limit: 50 }),
    );
    const kitchen = await searchMemories(pool, { q: 'coffee', tag: 'kitchen', limit: 50 });
    expect(kitchen[0]!.id).to.equal(special.fresh);
    expect(kitchen.every((hit) => hit.tags.includes('kitchen'))).to.equal(true);
    expect(ids(kitchen)).to.deep.equal(await newestRanked('coffee', { tag: 'kitchen', limit: 50 }));
    // 30 old memories tagged pantry: every one is ranked.
    const pantry = await searchMemories(pool, { q: 'coffee', tag: 'pantry', limit: 100 });
    expect(pantry).to.have.length(30);
    expect(ids(pantry)).to.deep.equal(await newestRanked('coffee', { tag: 'pantry', limit: 100, all: true }));
    expect(ids(await searchMemories(pool, { q: 'zanzibar', tag: 'kitchen', match: 'any' }))).to.deep.equal([special.grinder]);
    expect(await searchMemories(pool, { q: 'zanzibar', tag: 'pantry' })).to.deep.equal([]);
  });

  it('takes the matches from where they are cheapest for how common the words are, never a scan of the table', async () => {
    /** The plan, and which steps (CTEs) read the table: EXPLAIN ANALYZE counts no loops for a step not run. */
    async function plan(query: MemoryQuery): Promise<{ text: string; ran: (cte: string) => boolean }> {
      const { text, values } = memorySearchSql(query);
      const { rows } = await pool.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, values);
      const root = rows[0]['QUERY PLAN'][0].Plan as PlanNode;
      const isCte = (node: PlanNode): boolean => node['Subplan Name']?.startsWith('CTE ') ?? false;
      const all = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(all)];
      const own = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).filter((n) => !isCte(n)).flatMap(own)];
      const { rows: lines } = await pool.query(`EXPLAIN ${text}`, values);
      return {
        text: lines.map((row: { 'QUERY PLAN': string }) => row['QUERY PLAN']).join('\n'),
        ran: (cte) =>
          own(all(root).find((node) => node['Subplan Name'] === `CTE ${cte}`)!).some(
            (node) => node['Relation Name'] === 'memories' && node['Actual Loops'] > 0,
          ),
      };
    }
    const message = 'where is the coffee grinder from zanzibar';
    const expected: Array<[MemoryQuery, string[]]> = [
      // A common word: the newest memories hold enough; neither index is asked.
      [{ q: 'coffee' }, ['recent']],
      [{ q: 'coffee', match: 'any' }, ['recent']],
      [{ q: 'coffee', tag: 'kitchen' }, ['recent']],
      // A message also has its rare words looked up.
      [{ q: message, match: 'any' }, ['recent', 'rare']],
      // Enough among the newest to promise enough a little further back.
      [{ q: 'coffee', tag: 'garden' }, ['recent', 'wider']],
      // Rare: the GIN index has them all.
      [{ q: 'zanzibar' }, ['recent', 'few']],
      [{ q: 'coffee', tag: 'pantry' }, ['recent', 'few']],
      // Not rare, but not among the newest memories either.
      [{ q: 'tea' }, ['recent', 'few', 'wider', 'older']],
    ];
    for (const [query, steps] of expected) {
      const { text, ran } = await plan(query);
      expect(text, text).to.match(/Index Scan Backward using memories_pkey on memories/);
      expect(text, text).to.match(/Bitmap Index Scan on memories_search_idx/);
      expect(text, text).not.to.match(/Seq Scan on memories/);
      expect(['recent', 'few', 'wider', 'older', 'rare'].filter(ran), JSON.stringify(query)).to.deep.equal(steps);
    }
  });
});

interface PlanNode {
  'Relation Name'?: string;
  'Subplan Name'?: string;
  'Actual Loops': number;
  Plans?: PlanNode[];
}
