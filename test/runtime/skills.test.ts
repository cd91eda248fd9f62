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
import { ALL_FEATURES, PLANS, type PlanName } from '../../core/plans.ts';
import { renderWorkspace } from '../../src/workspace/render.ts';
import { loadRuntimeConfig } from '../../runtime/src/config.ts';
import type { RuntimeContext } from '../../runtime/src/context.ts';
import { listSkills, skillRoutes, type SkillView } from '../../runtime/src/skills.ts';
import { WorkspaceStore } from '../../runtime/src/workspace.ts';


interface Runtime {
  plan: PlanName;
  dbName: string;
  pool: pg.Pool;
  dir: string;
  ctx: RuntimeContext;
  server: Server;
  base: string;
}

const WEEKLY = `---
name: weekly-report
description: "Every Monday: summarise last week's calendar and email into a short report."
owner: ada
---

# weekly-report

## When
Monday mornings, or when the customer asks for the weekly report.
`;

describe('runtime skills', () => {
  const admin = new pg.Pool({ connectionString: `${PG_SERVER}/postgres`, max: 3 });
  const runtimes: Runtime[] = [];
  let starter: Runtime;
  let pro: Runtime;
  let team: Runtime;

  async function start(plan: PlanName): Promise<Runtime> {
    const dbName = `rt_skill_${randomBytes(6).toString('hex')}`;
    const { pool, url } = await createRuntimeDatabase(dbName, 3);
    // DROP DATABASE ... WITH (FORCE) in after() may reach a connection the pool is still closing.
    pool.on('error', () => undefined);
    const files = renderWorkspace({
      workspaceId: `ws_${plan}`,
      customer: { name: 'Ada', email: 'ada@example.com' },
      plan: PLANS[plan],
      createdAt: new Date('2025-01-02T03:04:05Z'),
    });
    for (const file of files) {
      await pool.query('INSERT INTO workspace_files (path, content, sha256) VALUES ($1, $2, $3)', [file.path, file.content, 'x']);
    }
    const dir = await mkdtemp(path.join(tmpdir(), `rt-skill-${plan}-`));
    const workspace = await WorkspaceStore.load(pool, dir);
    const config = loadRuntimeConfig({ DATABASE_URL: url, WORKSPACE_ID: `ws_${plan}`, PLAN: plan, MESSAGE_LIMIT: '100' });
    const ctx: RuntimeContext = {
      db: pool,
      config,
      workspace,
      runTurn: async () => {
        throw new Error('runTurn is not used by the skills API');
      },
    };
    const server = await listen(skillRoutes(ctx));
    const runtime = { plan, dbName, pool, dir, ctx, server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
    runtimes.push(runtime);
    return runtime;
  }

  before(async () => {
    [starter, pro, team] = await Promise.all([start('starter'), start('pro'), start('team')]);
  });

  after(async () => {
    for (const runtime of runtimes) {
      await new Promise((resolve) => runtime.server.close(resolve));
      await runtime.pool.end();
      await admin.query(`DROP DATABASE IF EXISTS ${runtime.dbName} WITH (FORCE)`);
      await rm(runtime.dir, { recursive: true, force: true });
    }
    await admin.end();
  });

  async function call(
    runtime: Runtime,
    method: string,
    url: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<{ status: number; body: any }> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      init.headers = { 'content-type': contentType };
    }
    const res = await fetch(runtime.base + url, init);
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  }

  async function skills(runtime: Runtime): Promise<SkillView[]> {
    const res = await call(runtime, 'GET', '/api/skills');
    expect(res.status).to.equal(200);
    return res.body.skills;
  }

  function expectError(res: { status: number; body: any }, status: number, error: string, reasonPart?: string): void {
    expect(res.status, JSON.stringify(res.body)).to.equal(status);
    expect(res.body.error).to.equal(error);
    expect(res.body.reason).to.be.a('string').and.not.empty;
    if (reasonPart) expect(res.body.reason).to.include(reasonPart);
  }

  describe('GET /api/skills', () => {
    it('lists every built-in on starter, allowed or not, with the plan that includes it', async () => {
      const list = await skills(starter);
      expect(list.map((s) => s.name)).to.deep.equal([...ALL_FEATURES]);
      const byName = new Map(list.map((s) => [s.name, s]));
      for (const name of ['chat', 'memory', 'web_search']) {
        expect(byName.get(name)).to.deep.include({ enabled: true, allowed: true, custom: false });
        expect(byName.get(name)).not.to.have.property('requiredPlan');
      }
      // The description comes from the workspace's SKILL.md when there is one ...
      expect(byName.get('web_search')!.description).to.equal(
        'Search the web for current information and say which pages an answer came from.',
      );
      // ... and from a built-in default otherwise (starter workspaces have no skills/gmail/SKILL.md).
      expect(byName.get('gmail')).to.deep.equal({
        name: 'gmail',
        description: "Search, read and draft email in the customer's Gmail; send only with their approval.",
        enabled: false,
        allowed: false,
        custom: false,
        requiredPlan: 'pro',
      });
      for (const name of ['calendar', 'browser']) expect(byName.get(name)!.requiredPlan).to.equal('pro');
      for (const name of ['github', 'custom_skills']) expect(byName.get(name)!.requiredPlan).to.equal('team');
    });

    it('lists every built-in as allowed and enabled on team', async () => {
      const list = await skills(team);
      expect(list.map((s) => s.name)).to.deep.equal([...ALL_FEATURES]);
      for (const skill of list) {
        expect(skill).to.deep.include({ enabled: true, allowed: true, custom: false });
        expect(skill).not.to.have.property('requiredPlan');
        expect(skill.description).to.equal(renderedDescription(team, skill.name));
      }
    });

    it('reads a description the workspace changed', async () => {
      const file = 'skills/github/SKILL.md';
      const original = team.ctx.workspace.get(file)!;
      await team.ctx.workspace.write(file, original.replace(/^description: .*$/m, 'description: Work on GitHub for Ada.'));
      try {
        expect((await skills(team)).find((s) => s.name === 'github')!.description).to.equal('Work on GitHub for Ada.');
      } finally {
        await team.ctx.workspace.write(file, original);
      }
    });
  });

  describe('PUT /api/skills/:name', () => {
    it('disables and enables an allowed skill, and the choice persists', async () => {
      const off = await call(starter, 'PUT', '/api/skills/web_search', { enabled: false });
      expect(off.status).to.equal(200);
      expect(off.body).to.deep.include({ name: 'web_search', enabled: false, allowed: true, custom: false });
      expect((await skills(starter)).find((s) => s.name === 'web_search')!.enabled).to.equal(false);
      const { rows } = await starter.pool.query('SELECT enabled, custom FROM skills WHERE name = $1', ['web_search']);
      expect(rows).to.deep.equal([{ enabled: false, custom: false }]);

      // Another runtime process on the same database (a restart) sees the same.
      const reloaded = { ...starter.ctx, workspace: await WorkspaceStore.load(starter.pool, undefined) };
      expect((await listSkills(reloaded)).find((s) => s.name === 'web_search')!.enabled).to.equal(false);

      const on = await call(starter, 'PUT', '/api/skills/web_search', { enabled: true });
      expect(on.status).to.equal(200);
      expect(on.body.enabled).to.equal(true);
      expect((await skills(starter)).find((s) => s.name === 'web_search')!.enabled).to.equal(true);
    });

    it('answers 403 with the required plan for a skill outside the plan', async () => {
      const res = await call(starter, 'PUT', '/api/skills/gmail', { enabled: true });
      expectError(res, 403, 'plan_required', 'pro');
      expect(res.body.requiredPlan).to.equal('pro');
      expect((await call(starter, 'PUT', '/api/skills/github', { enabled: false })).body.requiredPlan).to.equal('team');
      expect((await call(pro, 'PUT', '/api/skills/github', { enabled: true })).body.requiredPlan).to.equal('team');
      expect((await call(pro, 'PUT', '/api/skills/gmail', { enabled: false })).status).to.equal(200);
      const { rows } = await starter.pool.query('SELECT count(*)::int AS n FROM skills');
      expect(rows[0].n).to.equal(1); // only web_search's row
    });

    it('never reports a skill outside the plan as enabled, whatever its row says', async () => {
      await starter.pool.query("INSERT INTO skills (name, enabled) VALUES ('gmail', true)");
      try {
        expect((await skills(starter)).find((s) => s.name === 'gmail')).to.deep.include({ enabled: false, allowed: false });
      } finally {
        await starter.pool.query("DELETE FROM skills WHERE name = 'gmail'");
      }
    });

    it('answers 404 for an unknown skill and 400 for a bad body', async () => {
      expectError(await call(team, 'PUT', '/api/skills/nope', { enabled: true }), 404, 'not_found', 'nope');
      expectError(await call(team, 'PUT', '/api/skills/Not%20A%20Name', { enabled: true }), 404, 'not_found');
      for (const body of [{}, { enabled: 'yes' }, { enabled: 1 }, { enabled: null }, [true], 'true', 'null']) {
        expectError(await call(team, 'PUT', '/api/skills/chat', body), 400, 'invalid_request', '"enabled"');
      }
      expectError(await call(team, 'PUT', '/api/skills/chat', '{"enabled": tru'), 400, 'invalid_json');
      expectError(await call(team, 'PUT', '/api/skills/chat', 'enabled=true', 'text/plain'), 415, 'unsupported_media_type');
      expectError(await call(team, 'PUT', '/api/skills/chat'), 415, 'unsupported_media_type');
    });
  });

  describe('custom skills', () => {
    it('creates one on team from a text/markdown body: 201, stored in the database and the workspace', async () => {
      const res = await call(team, 'POST', '/api/skills', WEEKLY, 'text/markdown; charset=utf-8');
      expect(res.status, JSON.stringify(res.body)).to.equal(201);
      const view = {
        name: 'weekly-report',
        description: "Every Monday: summarise last week's calendar and email into a short report.",
        enabled: true,
        allowed: true,
        custom: true,
      };
      expect(res.body).to.deep.equal(view);

      const { rows } = await team.pool.query('SELECT enabled, custom, description, content FROM skills WHERE name = $1', [
        'weekly-report',
      ]);
      expect(rows).to.deep.equal([{ enabled: true, custom: true, description: view.description, content: WEEKLY }]);
      const file = await team.pool.query('SELECT content FROM workspace_files WHERE path = $1', ['skills/weekly-report/SKILL.md']);
      expect(file.rows[0].content).to.equal(WEEKLY);
      expect(team.ctx.workspace.get('skills/weekly-report/SKILL.md')).to.equal(WEEKLY);
      expect(await readFile(path.join(team.dir, 'skills/weekly-report/SKILL.md'), 'utf8')).to.equal(WEEKLY);

      const list = await skills(team);
      expect(list.at(-1)).to.deep.equal(view);
      expect(list).to.have.length(ALL_FEATURES.length + 1);
    });

    it('creates one from JSON { content } and from text/plain', async () => {
      const json = await call(team, 'POST', '/api/skills', {
        content: '---\nname: standup\ndescription: Prepare the daily standup notes.\n---\n\nBody.\n',
      });
      expect(json.status, JSON.stringify(json.body)).to.equal(201);
      expect(json.body).to.deep.include({ name: 'standup', custom: true, enabled: true });
      const plain = await call(team, 'POST', '/api/skills', '---\nname: expenses\ndescription: File expenses.\n---\n', 'text/plain');
      expect(plain.status, JSON.stringify(plain.body)).to.equal(201);
      expect((await skills(team)).filter((s) => s.custom).map((s) => s.name)).to.deep.equal(['expenses', 'standup', 'weekly-report']);
    });

    it('enables and disables a custom skill with PUT', async () => {
      const off = await call(team, 'PUT', '/api/skills/standup', { enabled: false });
      expect(off.status).to.equal(200);
      expect(off.body).to.deep.include({ name: 'standup', custom: true, enabled: false, allowed: true });
      expect((await skills(team)).find((s) => s.name === 'standup')!.enabled).to.equal(false);
    });

    it('answers 400 with the front matter problem', async () => {
      const cases: Array<[string, string]> = [
        ['# No front matter\n', 'missing front matter'],
        ['---\nname: x\ndescription: never closed\n', 'not closed'],
        ['---\ndescription: Nameless.\n---\n', 'no "name"'],
        ['---\nname: Bad Name\ndescription: Spaces.\n---\n', 'invalid skill name'],
        ['---\nname: quiet\n---\n', 'no "description"'],
        ['---\nname: colon\ndescription: Note: unquoted\n---\n', 'quote a description'],
        ['---\nname: multi\ndescription: >\n  folded\n---\n', 'single-line'],
        [`---\nname: long\ndescription: ${'d'.repeat(301)}\n---\n`, 'exceeds 300'],
      ];
      for (const [content, reason] of cases) {
        const res = await call(team, 'POST', '/api/skills', content, 'text/markdown');
        expectError(res, 400, 'invalid_skill', reason);
        expect(res.body.reason).to.include('front matter');
      }
      expectError(await call(team, 'POST', '/api/skills', '---\nname: nul\ndescription: a\u0000b\n---\n', 'text/markdown'), 400, 'invalid_skill', 'NUL');
      expectError(await call(team, 'POST', '/api/skills', { content: 42 }), 400, 'invalid_request', 'content');
      expectError(await call(team, 'POST', '/api/skills', ['x']), 400, 'invalid_request');
      expectError(await call(team, 'POST', '/api/skills', '{"content":'), 400, 'invalid_json');
      expectError(await call(team, 'POST', '/api/skills', WEEKLY, 'text/html'), 415, 'unsupported_media_type');
      expectError(await call(team, 'POST', '/api/skills', `${WEEKLY}${'x'.repeat(33 * 1024)}`, 'text/markdown'), 413, 'payload_too_large');
      expectError(await call(team, 'POST', '/api/skills', { content: `${WEEKLY}${'x'.repeat(33 * 1024)}` }), 413, 'payload_too_large');
      const { rows } = await team.pool.query('SELECT count(*)::int AS n FROM skills WHERE custom');
      expect(rows[0].n).to.equal(3);
    });

    it('answers 409 for a built-in name or an existing custom skill', async () => {
      const builtin = await call(team, 'POST', '/api/skills', '---\nname: gmail\ndescription: Mine.\n---\n', 'text/markdown');
      expectError(builtin, 409, 'skill_exists', 'built-in');
      const duplicate = await call(team, 'POST', '/api/skills', WEEKLY.replace('Every Monday', 'Each Monday'), 'text/markdown');
      expectError(duplicate, 409, 'skill_exists', 'already exists');
      // The first version is untouched.
      expect(team.ctx.workspace.get('skills/weekly-report/SKILL.md')).to.equal(WEEKLY);
      expect(team.ctx.workspace.get('skills/gmail/SKILL.md')).to.equal(renderedFile(team, 'gmail'));
    });

    it('answers 403 plan_required (team) on starter and pro, storing nothing', async () => {
      for (const runtime of [starter, pro]) {
        const res = await call(runtime, 'POST', '/api/skills', WEEKLY, 'text/markdown');
        expectError(res, 403, 'plan_required', 'team');
        expect(res.body.requiredPlan).to.equal('team');
        const { rows } = await runtime.pool.query('SELECT count(*)::int AS n FROM skills WHERE custom');
        expect(rows[0].n).to.equal(0);
        expect(runtime.ctx.workspace.get('skills/weekly-report/SKILL.md')).to.equal(undefined);
      }
    });

    it('shows a custom skill kept from an earlier plan as not allowed, and refuses to enable it', async () => {
      await pro.pool.query(
        "INSERT INTO skills (name, enabled, custom, description, content) VALUES ('old-habit', true, true, 'From Team days.', '')",
      );
      const skill = (await skills(pro)).find((s) => s.name === 'old-habit');
      expect(skill).to.deep.equal({
        name: 'old-habit',
        description: 'From Team days.',
        enabled: false,
        allowed: false,
        custom: true,
        requiredPlan: 'team',
      });
      const res = await call(pro, 'PUT', '/api/skills/old-habit', { enabled: true });
      expectError(res, 403, 'plan_required');
      expect(res.body.requiredPlan).to.equal('team');
      // It can still be deleted.
      expect((await call(pro, 'DELETE', '/api/skills/old-habit')).status).to.equal(204);
    });

    it('deletes a custom skill (204, then 404) and refuses to delete a built-in', async () => {
      const res = await call(team, 'DELETE', '/api/skills/standup');
      expect(res.status).to.equal(204);
      expect(res.body).to.equal(undefined);
      expect((await skills(team)).map((s) => s.name)).not.to.include('standup');
      expect(team.ctx.workspace.get('skills/standup/SKILL.md')).to.equal(undefined);
      const file = await team.pool.query("SELECT 1 FROM workspace_files WHERE path = 'skills/standup/SKILL.md'");
      expect(file.rowCount).to.equal(0);
      expectError(await call(team, 'DELETE', '/api/skills/standup'), 404, 'not_found');
      expectError(await call(team, 'PUT', '/api/skills/standup', { enabled: true }), 404, 'not_found');
      expectError(await call(team, 'DELETE', '/api/skills/chat'), 409, 'builtin_skill');
      expectError(await call(team, 'DELETE', '/api/skills/..%2F..%2Fetc'), 404, 'not_found');
      // The name is free again.
      const again = await call(team, 'POST', '/api/skills', '---\nname: standup\ndescription: Again.\n---\n', 'text/markdown');
      expect(again.status).to.equal(201);
      expect(team.ctx.workspace.get('skills/standup/SKILL.md')).to.include('Again.');
    });
  });
});

function renderedFile(runtime: Runtime, feature: string): string {
  return renderWorkspace({
    workspaceId: `ws_${runtime.plan}`,
    customer: { name: 'Ada', email: 'ada@example.com' },
    plan: PLANS[runtime.plan],
    createdAt: new Date('2025-01-02T03:04:05Z'),
  }).find((file) => file.path === `skills/${feature}/SKILL.md`)!.content;
}

function renderedDescription(runtime: Runtime, feature: string): string {
  return /^description: (.*)$/m.exec(renderedFile(runtime, feature))![1]!;
}

