import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import { searchMemories } from '../../runtime/src/memory.ts';
import { readPromptContext, startingWithUser } from '../../runtime/src/promptContext.ts';
import { SKILL_ROWS_SQL } from '../../runtime/src/skills.ts';
import { createRuntimeDatabase, PG_SERVER } from '../support/runtimeDatabase.ts';

describe('runtime prompt context', () => {
  describe('startingWithUser', () => {
    it('drops the messages before the first user message, and keeps the rest as they are', () => {
      const [u1, a1, u2] = [
        { role: 'user' as const, content: 'u1' },
        { role: 'assistant' as const, content: 'a1' },
        { role: 'user' as const, content: 'u2' },
      ];
      expect(startingWithUser([a1, a1, u1, a1, u2])).to.deep.equal([u1, a1, u2]);
      expect(startingWithUser([u1, a1])).to.deep.equal([u1, a1]);
      expect(startingWithUser([a1])).to.deep.equal([]);
      expect(startingWithUser([])).to.deep.equal([]);
    });
  });

  describe('readPromptContext (one statement)', () => {
    const dbName = `rt_ctx_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: `${PG_SERVER}/postgres` });
    let pool: pg.Pool;
    let conversation: string;

    before(async () => {
      await admin.connect();
      pool = (await createRuntimeDatabase(dbName)).pool;
      conversation = (await pool.query(`INSERT INTO conversations (title, source) VALUES ('c', 'api') RETURNING id`)).rows[0].id;
      // Oldest first: an assistant message, then turns; one reply was empty.
      const messages: Array<[string, string]> = [
        ['assistant', 'a greeting'],
        ['user', 'first question'],
        ['assistant', 'first answer'],
        ['user', 'second question'],
        ['assistant', ''],
        ['user', 'third question'],
        ['assistant', 'third answer'],
      ];
      for (const [role, content] of messages) {
        await pool.query('INSERT INTO conversation_messages (conversation_id, role, content) VALUES ($1, $2, $3)', [conversation, role, content]);
      }
      await pool.query(
        `INSERT INTO skills (name, enabled, custom, description) VALUES
           ('web_search', false, false, NULL), ('zeta-notes', true, true, 'Zeta'), ('Alpha-notes', true, true, NULL)`,
      );
      await pool.query(
        `INSERT INTO memories (content, tags)
         SELECT 'note ' || n || ' about ' || (ARRAY['coffee', 'the ferry to Zanzibar', 'coffee and tea'])[n % 3 + 1], ARRAY['t' || n % 4]
         FROM generate_series(1, 300) AS n`,
      );
    });

    after(async () => {
      await pool?.end();
      await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      await admin.end();
    });

    const read = (conversationId: string | undefined, historyMessages: number, message = 'coffee in Zanzibar?') =>
      readPromptContext(pool, { conversationId, historyMessages, message, memories: 8, candidates: 24 });

    it('reads the last messages oldest first, without empty ones, starting with a user message', async () => {
      expect((await read(conversation, 20)).history).to.deep.equal([
        { role: 'user', content: 'first question' },
        { role: 'assistant', content: 'first answer' },
        { role: 'user', content: 'second question' },
        { role: 'user', content: 'third question' },
        { role: 'assistant', content: 'third answer' },
      ]);
      // The last four non-empty ones are first answer, second and third question, third answer: the answer goes.
      expect((await read(conversation, 4)).history.map((m) => m.content)).to.deep.equal(['second question', 'third question', 'third answer']);
      expect((await read(conversation, 0)).history).to.deep.equal([]);
      expect((await read(undefined, 20)).history).to.deep.equal([]);
    });

    it("reads the skills' rows and the memories the search finds, in their own order", async () => {
      const context = await read(conversation, 20);
      expect(context.skills).to.deep.equal((await pool.query(SKILL_ROWS_SQL)).rows);
      expect(context.skills.map((row) => row.name)).to.deep.equal(['Alpha-notes', 'web_search', 'zeta-notes']);
      for (const message of ['coffee in Zanzibar?', 'tea', 'nothing stored matches', '\u0000']) {
        const hits = await searchMemories(pool, { q: message, match: 'any', limit: 8, candidates: 24 });
        expect((await read(conversation, 20, message)).memories, message).to.deep.equal(hits.map(({ content, tags }) => ({ content, tags })));
      }
    });
  });
});
