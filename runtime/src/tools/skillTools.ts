/**
 * Skills loaded on demand: the prompt lists the enabled skills by name and description only, and `read_skill`
 * answers a skill's whole SKILL.md when the model decides it needs it, so a long custom skill costs nothing until it
 * is used. A skill outside the plan, or one the customer switched off, is refused: the same rule as /api/skills.
 */
import { listSkills, skillPath } from '../skills.ts';
import { refusal } from './outcome.ts';
import type { ClientTool, ToolContext } from './types.ts';

const readSkill: ClientTool = {
  name: 'read_skill',
  description:
    'Read the whole SKILL.md of one of the enabled skills listed in the system prompt: how to do that kind of task ' +
    'for this customer. Read a skill before first using it in a conversation.',
  input_schema: {
    type: 'object',
    properties: { name: { type: 'string', description: 'The skill name, as listed (e.g. "memory").' } },
    required: ['name'],
    additionalProperties: false,
  },
  // Every plan has chat, and skills are how the assistant learns to work: reading one needs no other feature.
  feature: 'chat',
  trustedOutput: true,
  describe: (input) => `reading the ${String(input.name ?? '').slice(0, 40)} skill`,
  async run(input, ctx) {
    const name = typeof input.name === 'string' ? input.name.trim() : '';
    const skills = await listSkills(ctx);
    const skill = skills.find((s) => s.name === name);
    const enabled = skills.filter((s) => s.enabled).map((s) => s.name).join(', ');
    if (!skill) return refusal(`there is no skill named "${name.slice(0, 40)}"; the enabled skills are: ${enabled}`);
    if (!skill.allowed) return refusal(`the ${name} skill is not included in this plan; it comes with the ${skill.requiredPlan} plan`);
    if (!skill.enabled) return refusal(`the customer has switched the ${name} skill off; it can be switched on again from the skills settings`);
    const content = ctx.workspace.get(skillPath(name)) ?? (skill.custom ? await storedContent(ctx, name) : undefined);
    if (content === undefined) return { content: `${name}: ${skill.description}\n(This skill has no further instructions.)`, summary: `read ${name}` };
    return { content, summary: `read ${name}` };
  },
};

/** A custom skill's SKILL.md as stored in the database (the copy a workspace without the file falls back on). */
async function storedContent(ctx: ToolContext, name: string): Promise<string | undefined> {
  const { rows } = await ctx.db.query<{ content: string | null }>('SELECT content FROM skills WHERE name = $1 AND custom', [name]);
  return rows[0]?.content ?? undefined;
}

export const skillTools: readonly ClientTool[] = [readSkill];
