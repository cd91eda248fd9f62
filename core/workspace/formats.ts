/**
 * The formats of workspace files that the runtime reads back: HEARTBEAT.md's task lines and a SKILL.md's front
 * matter. The control plane writes them (src/workspace/), the runtime parses them.
 */

export const SKILL_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const MAX_DESCRIPTION = 300;

/** Open heartbeat tasks: lines starting with "- [ ] ", per the convention documented in HEARTBEAT.md. */
export function heartbeatTasks(content: string): string[] {
  return content
    .split(/\r?\n/)
    .flatMap((line) => (line.startsWith('- [ ] ') && line.slice(6).trim() ? [line.slice(6).trim()] : []));
}

/**
 * Validates a SKILL.md's YAML front matter: the file must open with a `---` block holding a `name` that is a
 * skill identifier and a one-line, non-empty `description` of at most 300 characters. Only top-level
 * `key: value` lines are read; a value may be wrapped in matching quotes (escapes are not decoded), and must be
 * when it contains ": " or " #", as YAML requires. Other keys are allowed and ignored.
 */
export function parseSkillFrontMatter(content: string): { name: string; description: string } | { error: string } {
  const lines = content.replace(/^\uFEFF/, '').split(/\r?\n/);
  if (lines[0] !== '---') return { error: 'missing front matter: the file must start with a "---" line' };
  const end = lines.indexOf('---', 1);
  if (end === -1) return { error: 'front matter is not closed by a "---" line' };

  const fields = new Map<string, string>();
  const quoted = new Set<string>();
  for (const line of lines.slice(1, end)) {
    const match = /^([A-Za-z0-9_-]+):(.*)$/.exec(line);
    if (!match) continue;
    const [, key = '', raw = ''] = match;
    if (fields.has(key)) return { error: `duplicate key "${key}"` };
    const value = raw.trim();
    if (/^(["']).*\1$/.test(value)) quoted.add(key);
    fields.set(key, quoted.has(key) ? value.slice(1, -1).trim() : value);
  }

  const name = fields.get('name');
  const description = fields.get('description');
  if (name === undefined) return { error: 'front matter has no "name"' };
  if (!SKILL_NAME_PATTERN.test(name)) return { error: `invalid skill name "${name}": expected ${SKILL_NAME_PATTERN}` };
  if (!description) return { error: 'front matter has no "description"' };
  if (/^[|>][+-]?\d*$/.test(description)) return { error: 'description must be a single-line value' };
  if (!quoted.has('description') && /: | #/.test(description)) {
    return { error: 'quote a description that contains ": " or " #"' };
  }
  if (description.length > MAX_DESCRIPTION) return { error: `description exceeds ${MAX_DESCRIPTION} characters` };
  return { name, description };
}
