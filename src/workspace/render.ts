/**
 * Renders a new customer's workspace: the markdown files the assistant reads at the start of every session,
 * its machine state, its daily log and one skill per plan feature. The text lives in templates/ beside this
 * module (with {{placeholders}}); this module fills them in. Rendering is pure and deterministic, so the same
 * input always gives byte-identical files; writing them to disk is a separate, idempotent step (core/workspace).
 */
import { readFileSync } from 'node:fs';
import { ALL_FEATURES, cheapestPlanWith, type Feature, type Plan } from '../../core/plans.ts';
import type { WorkspaceFile } from '../../core/workspace/files.ts';
import { parseSkillFrontMatter } from '../../core/workspace/formats.ts';
import { connectionsSection, withConnectionsSection } from '../../core/workspace/connections.ts';


export interface WorkspaceInput {
  workspaceId: string;
  customer: { name: string | null; email: string };
  plan: Plan;
  /** Provisioning date: names the first daily log and dates the workspace. */
  createdAt: Date;
  /** IANA zone the customer gave at signup, shown to the assistant; files are always dated in UTC. */
  timezone?: string;
}

const WORKSPACE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
const MAX_CUSTOMER_TEXT = 200;

/** A template's exact text. Found beside this module, whatever the working directory; read once, at load. */
function template(path: string): string {
  return readFileSync(new URL(`templates/${path}`, import.meta.url), 'utf8');
}

const TEMPLATES = {
  soul: template('SOUL.md'),
  user: template('USER.md'),
  agents: template('AGENTS.md'),
  /** Fragments start with the blank line that separates them from what comes before. */
  agentsCustomSkills: template('AGENTS.custom-skills.md'),
  tools: template('TOOLS.md'),
  toolsNotOnPlan: template('TOOLS.not-on-plan.md'),
  heartbeat: template('HEARTBEAT.md'),
  memory: template('MEMORY.md'),
  firstDay: template('memory/first-day.md'),
  env: template('workspace.env'),
};

/** Each feature's SKILL.md, copied as it is; its front matter description is also the feature's line in TOOLS.md. */
const SKILLS: Readonly<Record<Feature, { content: string; description: string }>> = Object.fromEntries(
  ALL_FEATURES.map((feature) => {
    const content = template(`skills/${feature}/SKILL.md`);
    const parsed = parseSkillFrontMatter(content);
    if ('error' in parsed || parsed.name !== feature) {
      throw new Error(`templates/skills/${feature}/SKILL.md: ${'error' in parsed ? parsed.error : `its name is not ${feature}`}`);
    }
    return [feature, { content, description: parsed.description }];
  }),
) as Record<Feature, { content: string; description: string }>;

/** The template with each {{name}} replaced by its value; a placeholder without a value is a bug, not a blank. */
function fill(text: string, values: Record<string, string | number>): string {
  return text.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`workspace template: no value for {{${name}}}`);
    return String(value);
  });
}

export function renderWorkspace(input: WorkspaceInput): WorkspaceFile[] {
  const { workspaceId, plan, createdAt } = input;
  if (!WORKSPACE_ID_PATTERN.test(workspaceId)) throw new Error(`invalid workspace id: ${JSON.stringify(workspaceId)}`);
  if (Number.isNaN(createdAt.getTime())) throw new RangeError('createdAt is not a valid date');
  const iso = createdAt.toISOString();
  const day = iso.slice(0, 10);

  const files: WorkspaceFile[] = [
    { path: 'SOUL.md', content: TEMPLATES.soul },
    { path: 'USER.md', content: user(input) },
    { path: 'AGENTS.md', content: agents(input) },
    { path: 'TOOLS.md', content: tools(plan) },
    { path: 'HEARTBEAT.md', content: TEMPLATES.heartbeat },
    { path: 'MEMORY.md', content: TEMPLATES.memory },
    { path: `memory/${day}.md`, content: fill(TEMPLATES.firstDay, { day, time: iso.slice(11, 16), planTitle: plan.title }) },
    { path: 'STATE.json', content: state(input) },
    { path: '.env', content: env(input) },
    ...plan.features.map((feature) => ({ path: `skills/${feature}/SKILL.md`, content: SKILLS[feature].content })),
  ];
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

function user({ customer, plan, timezone }: WorkspaceInput): string {
  const name = customerText(customer.name);
  const email = customerText(customer.email);
  const zone = customerText(timezone);
  return fill(TEMPLATES.user, {
    name: name ? inlineCode(name) : '(not given yet; ask what they would like to be called)',
    email: email ? inlineCode(email) : '(not given)',
    planTitle: plan.title,
    timezone: zone ? inlineCode(zone) : '(not given yet; assume UTC and ask)',
  });
}

function agents({ workspaceId, plan }: WorkspaceInput): string {
  return fill(TEMPLATES.agents, {
    workspaceId,
    planTitle: plan.title,
    customSkills: plan.features.includes('custom_skills') ? TEMPLATES.agentsCustomSkills : '',
    messageLimit: formatCount(plan.messageLimit),
    agentLimit: plan.agentLimit === null ? 'unlimited' : `up to ${formatCount(plan.agentLimit)}`,
    features: plan.features.join(', '),
  });
}

/**
 * The tools behind each feature, as the runtime offers them (runtime/src/tools/registry.ts), so TOOLS.md claims no
 * ability the assistant lacks. The connected services are only known at run time: the prompt says which.
 */
/** A connection's tools act only once the customer connected the service; sending, creating and commenting ask first. */
const CONNECTION = "They act through the customer's connection (POST /api/connections/<service> to connect); the system prompt says whether it is connected now, and acting tools ask the customer to confirm in a later message.";
const FEATURE_TOOLS: Readonly<Record<Feature, string>> = {
  chat: 'Tool: read_skill (a skill\'s whole SKILL.md).',
  memory: 'Tools: memory_search, memory_save, memory_forget, daily_log.',
  web_search: 'Tools: web_search, web_fetch.',
  gmail: `Tools: gmail_search, gmail_read, gmail_draft, gmail_send. ${CONNECTION}`,
  calendar: `Tools: calendar_list, calendar_create. ${CONNECTION}`,
  github: `Tools: github_issues, github_comment. ${CONNECTION}`,
  browser: 'Not available yet: no sandboxed browser runs for this workspace. Say so when asked.',
  custom_skills: "The customer's own skills are read with read_skill too.",
};

function tools(plan: Plan): string {
  const enabled = plan.features.map((f) => `- **${f}** — ${SKILLS[f].description} ${FEATURE_TOOLS[f]}`);
  const missing = ALL_FEATURES.filter((f) => !plan.features.includes(f)).map(
    (f) => `- **${f}** — from the ${cheapestPlanWith(f).title} plan.`,
  );
  const file = fill(TEMPLATES.tools, {
    planTitle: plan.title,
    enabled: enabled.join('\n'),
    notOnPlan: missing.length ? fill(TEMPLATES.toolsNotOnPlan, { missing: missing.join('\n') }) : '',
  });
  // Nothing connected yet: the runtime rewrites the section as the customer connects services.
  return withConnectionsSection(file, connectionsSection(plan.features, new Map()));
}

function state({ workspaceId, plan, createdAt }: WorkspaceInput): string {
  const state = {
    workspaceId,
    plan: plan.name,
    messageLimit: plan.messageLimit,
    features: [...plan.features],
    createdAt: createdAt.toISOString(),
    version: 1,
  };
  return JSON.stringify(state, null, 2) + '\n';
}

function env({ workspaceId, plan }: WorkspaceInput): string {
  return fill(TEMPLATES.env, {
    workspaceId,
    plan: plan.name,
    messageLimit: plan.messageLimit,
    features: plan.features.join(','),
  });
}

/**
 * Customer-provided text made safe to place inside one markdown line: control, line/paragraph separator and
 * bidi-override characters become spaces, whitespace collapses, and the result is capped. Empty becomes ''.
 */
function customerText(value: string | null | undefined): string {
  if (!value) return '';
  const flat = value
    .replace(/[\p{Cc}\p{Zl}\p{Zp}\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return Array.from(flat).slice(0, MAX_CUSTOMER_TEXT).join('').trim();
}

/** A markdown code span showing `text` literally, whatever backticks it contains (CommonMark rules). */
function inlineCode(text: string): string {
  const longestRun = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longestRun + 1);
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return fence + pad + text + pad + fence;
}

function formatCount(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}
