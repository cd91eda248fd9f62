/**
 * Skills: one built-in skill per product feature (ALL_FEATURES), allowed when the plan includes the feature, plus
 * the custom skills a Team customer writes. The `skills` table holds a row only for a built-in the customer
 * switched off or on again, and one per custom skill (with its SKILL.md). A skill outside the plan is never
 * enabled, whatever its row says, so a downgrade switches it off and an upgrade brings the customer's choice back.
 */
import { TextDecoder } from 'node:util';
import Router from '@koa/router';
import { ALL_FEATURES, cheapestPlanWith, type Feature, type PlanName } from '../../core/plans.ts';
import { HttpError } from '../../core/http/httpError.ts';
import { readJsonBody, readRawBody } from '../../core/http/rawBody.ts';
import { parseSkillFrontMatter, SKILL_NAME_PATTERN } from '../../core/workspace/formats.ts';
import type { RuntimeContext } from './context.ts';

export interface SkillView {
  name: string;
  description: string;
  enabled: boolean;
  /** Whether the plan includes the skill; a skill that is not allowed is never enabled. */
  allowed: boolean;
  custom: boolean;
  /** For a skill the plan does not include: the cheapest plan that does. */
  requiredPlan?: PlanName;
}

type SkillsContext = Pick<RuntimeContext, 'db' | 'workspace' | 'config'>;

/** A SKILL.md sent to POST /api/skills, in bytes of UTF-8. */
export const MAX_SKILL_BYTES = 32 * 1024;
const JSON_BODY_LIMIT_BYTES = 64 * 1024; // JSON escaping may double a 32 KB file

/** Used when the workspace has no skills/<feature>/SKILL.md (the plan does not include it, or it was removed). */
const BUILTIN_DESCRIPTIONS: Readonly<Record<Feature, string>> = {
  chat: 'Talk with the customer to answer questions, draft text and carry out their requests.',
  memory: 'Remember what matters across sessions: stored memories and the daily logs.',
  web_search: 'Search the web for current information, citing sources.',
  gmail: "Search, read and draft email in the customer's Gmail; send only with their approval.",
  calendar: "Check availability and manage events in the customer's calendar.",
  browser: 'Open and operate web pages in a sandboxed browser.',
  github: "Read and act on the customer's GitHub repositories, issues and pull requests.",
  custom_skills: "Draft the customer's own skills under skills/<name>/SKILL.md, which they add.",
};

function isBuiltin(name: string): name is Feature {
  return (ALL_FEATURES as readonly string[]).includes(name);
}

export function skillPath(name: string): string {
  return `skills/${name}/SKILL.md`;
}

/** A row of the skills table: a built-in switched off or on again, or a custom skill. */
export interface SkillRow {
  name: string;
  enabled: boolean;
  custom: boolean;
  description: string | null;
}

/** The skills table's rows, ordered as listSkills lists the custom ones (a chat turn reads them with its prompt). */
export const SKILL_ROWS_SQL = 'SELECT name, enabled, custom, description FROM skills ORDER BY name COLLATE "C"';

/** Every skill: the built-ins in feature order, then the custom skills by name. */
export async function listSkills(ctx: SkillsContext): Promise<SkillView[]> {
  const { rows } = await ctx.db.query<SkillRow>(SKILL_ROWS_SQL);
  return skillViews(ctx, rows);
}

/** The skills as listSkills answers them, from the table's rows (in SKILL_ROWS_SQL's order). */
export function skillViews(ctx: Pick<SkillsContext, 'workspace' | 'config'>, rows: SkillRow[]): SkillView[] {
  const builtinRows = new Map(rows.filter((row) => !row.custom).map((row) => [row.name, row]));
  const features = ctx.config.features;

  const builtins = ALL_FEATURES.map((feature): SkillView => {
    const allowed = features.includes(feature);
    const row = builtinRows.get(feature);
    return {
      name: feature,
      description: workspaceDescription(ctx, feature) ?? BUILTIN_DESCRIPTIONS[feature],
      enabled: allowed && (row?.enabled ?? true),
      allowed,
      custom: false,
      ...(allowed ? {} : { requiredPlan: cheapestPlanWith(feature).name }),
    };
  });

  const customAllowed = features.includes('custom_skills');
  const customs = rows
    .filter((row) => row.custom && !isBuiltin(row.name))
    .map((row): SkillView => ({
      name: row.name,
      description: row.description ?? workspaceDescription(ctx, row.name) ?? '',
      enabled: customAllowed && row.enabled,
      allowed: customAllowed,
      custom: true,
      ...(customAllowed ? {} : { requiredPlan: cheapestPlanWith('custom_skills').name }),
    }));

  return [...builtins, ...customs];
}

function workspaceDescription(ctx: Pick<SkillsContext, 'workspace'>, name: string): string | undefined {
  const content = ctx.workspace.get(skillPath(name));
  if (content === undefined) return undefined;
  const parsed = parseSkillFrontMatter(content);
  return 'error' in parsed ? undefined : parsed.description;
}

async function findSkill(ctx: SkillsContext, name: string): Promise<SkillView | undefined> {
  return (await listSkills(ctx)).find((skill) => skill.name === name);
}

/** Switches a skill on or off; HttpError 404 for an unknown skill, 403 for one outside the plan. */
export async function setSkillEnabled(ctx: SkillsContext, name: string, enabled: boolean): Promise<SkillView> {
  const skill = await findSkill(ctx, name);
  if (!skill) throw unknownSkill(name);
  if (!skill.allowed) throw planRequired(`the ${name} skill`, skill.requiredPlan!);
  if (skill.custom) {
    await ctx.db.query('UPDATE skills SET enabled = $2, updated_at = now() WHERE name = $1 AND custom', [name, enabled]);
  } else {
    await ctx.db.query(
      `INSERT INTO skills (name, enabled, custom) VALUES ($1, $2, false)
       ON CONFLICT (name) DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now() WHERE NOT skills.custom`,
      [name, enabled],
    );
  }
  return (await findSkill(ctx, name)) ?? { ...skill, enabled };
}

/**
 * Adds a custom skill from its SKILL.md (front matter validated), stored in the database and written to the
 * workspace as skills/<name>/SKILL.md. HttpError 403 without the custom_skills feature, 400 for bad front matter,
 * 409 for a built-in or existing name.
 */
export async function createCustomSkill(ctx: SkillsContext, content: string): Promise<SkillView> {
  requireCustomSkills(ctx);
  if (Buffer.byteLength(content, 'utf8') > MAX_SKILL_BYTES) {
    throw new HttpError(413, 'payload_too_large', `SKILL.md is larger than ${MAX_SKILL_BYTES} bytes`);
  }
  if (content.includes('\u0000')) throw new HttpError(400, 'invalid_skill', 'SKILL.md must not contain NUL characters');
  const parsed = parseSkillFrontMatter(content);
  if ('error' in parsed) throw new HttpError(400, 'invalid_skill', `invalid SKILL.md front matter: ${parsed.error}`);
  const { name, description } = parsed;
  if (isBuiltin(name)) {
    throw new HttpError(409, 'skill_exists', `"${name}" is a built-in skill; choose another name`, { name });
  }
  const { rowCount } = await ctx.db.query(
    `INSERT INTO skills (name, enabled, custom, description, content) VALUES ($1, true, true, $2, $3)
     ON CONFLICT (name) DO NOTHING`,
    [name, description, content],
  );
  if (!rowCount) {
    throw new HttpError(409, 'skill_exists', `a custom skill named "${name}" already exists; delete it first`, { name });
  }
  try {
    await ctx.workspace.write(skillPath(name), content);
  } catch (err) {
    await ctx.db.query('DELETE FROM skills WHERE name = $1 AND custom', [name]).catch(() => undefined);
    throw err;
  }
  return { name, description, enabled: true, allowed: true, custom: true };
}

/**
 * Removes a custom skill and its skills/<name>/SKILL.md; HttpError 404 when there is none, 409 for a built-in
 * (switch those off instead).
 */
export async function deleteCustomSkill(ctx: SkillsContext, name: string): Promise<void> {
  if (isBuiltin(name)) {
    throw new HttpError(409, 'builtin_skill', `"${name}" is a built-in skill and cannot be deleted; disable it with PUT`);
  }
  const { rowCount } = await ctx.db.query('DELETE FROM skills WHERE name = $1 AND custom', [name]);
  if (!rowCount) throw unknownSkill(name);
  await ctx.workspace.remove(skillPath(name));
}

/** GET/POST /api/skills, PUT/DELETE /api/skills/:name; mounted behind the API key and rate limit. */
export function skillRoutes(ctx: RuntimeContext): Router {
  const router = new Router();

  router.get('/api/skills', async (http) => {
    http.body = { skills: await listSkills(ctx) };
  });

  router.put('/api/skills/:name', async (http) => {
    const name = http.params.name ?? '';
    const body = await readJsonBody(http.req, JSON_BODY_LIMIT_BYTES);
    const enabled = (body as { enabled?: unknown } | null)?.enabled;
    if (typeof body !== 'object' || body === null || Array.isArray(body) || typeof enabled !== 'boolean') {
      throw new HttpError(400, 'invalid_request', 'the body must be {"enabled": true} or {"enabled": false}');
    }
    if (!SKILL_NAME_PATTERN.test(name)) throw unknownSkill(name);
    http.body = await setSkillEnabled(ctx, name, enabled);
  });

  router.post('/api/skills', async (http) => {
    requireCustomSkills(ctx);
    http.status = 201;
    http.body = await createCustomSkill(ctx, await readSkillBody(http.req));
  });

  router.delete('/api/skills/:name', async (http) => {
    const name = http.params.name ?? '';
    if (!SKILL_NAME_PATTERN.test(name)) throw unknownSkill(name);
    await deleteCustomSkill(ctx, name);
    http.status = 204;
  });

  return router;
}

/** The SKILL.md text: the body itself (text/markdown, text/plain) or the `content` of a JSON object. */
async function readSkillBody(req: Parameters<typeof readRawBody>[0]): Promise<string> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/json') {
    const body = await readJsonBody(req, JSON_BODY_LIMIT_BYTES);
    const content = (body as { content?: unknown } | null)?.content;
    if (typeof body !== 'object' || body === null || Array.isArray(body) || typeof content !== 'string') {
      throw new HttpError(400, 'invalid_request', 'a JSON body must be {"content": "<the SKILL.md text>"}');
    }
    return content;
  }
  if (type !== 'text/markdown' && type !== 'text/plain') {
    throw new HttpError(
      415,
      'unsupported_media_type',
      'send the SKILL.md as text/markdown or text/plain, or as application/json {"content": "..."}',
    );
  }
  const raw = await readRawBody(req, MAX_SKILL_BYTES);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    throw new HttpError(400, 'invalid_skill', 'SKILL.md is not valid UTF-8');
  }
}

function requireCustomSkills(ctx: SkillsContext): void {
  if (!ctx.config.features.includes('custom_skills')) {
    throw planRequired('custom skills', cheapestPlanWith('custom_skills').name);
  }
}

function planRequired(what: string, requiredPlan: PlanName): HttpError {
  return new HttpError(403, 'plan_required', `${what} is not included in this plan; it comes with the ${requiredPlan} plan`, {
    requiredPlan,
  });
}

function unknownSkill(name: string): HttpError {
  return new HttpError(404, 'not_found', `no skill named ${JSON.stringify(name.slice(0, 64))}`);
}
