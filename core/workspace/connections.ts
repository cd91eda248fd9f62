/**
 * TOOLS.md's "Connected now" section: which of the plan's services the customer has connected. The control plane
 * writes it when it renders the workspace (nothing connected yet); the runtime rewrites it whenever a connection is
 * made or removed, so the file says what the assistant can reach at this moment.
 */
import type { Feature } from '../plans.ts';

/** The features that act through a connection the customer makes (OAuth). */
export const CONNECTION_FEATURES: readonly Feature[] = ['gmail', 'calendar', 'github'];

export const CONNECTIONS_HEADING = '## Connected now';

/** The section for the plan's connection features, given the account of each connected one. */
export function connectionsSection(features: readonly Feature[], accounts: ReadonlyMap<Feature, string | null>): string {
  const lines = CONNECTION_FEATURES.filter((feature) => features.includes(feature)).map((feature) =>
    accounts.has(feature)
      ? `- ${feature}: connected${accounts.get(feature) ? ` (${accounts.get(feature)})` : ''}`
      : `- ${feature}: not connected; the customer connects it with POST /api/connections/${feature}`,
  );
  return lines.length ? `${CONNECTIONS_HEADING}\n\n${lines.join('\n')}\n\n` : '';
}

/** TOOLS.md with its section replaced by `section` (added before the next heading after the features when absent). */
export function withConnectionsSection(tools: string, section: string): string {
  const start = tools.indexOf(`${CONNECTIONS_HEADING}\n`);
  if (start >= 0) {
    const next = tools.indexOf('\n## ', start + CONNECTIONS_HEADING.length);
    return tools.slice(0, start) + section + (next >= 0 ? tools.slice(next + 1) : '');
  }
  const notes = tools.indexOf('\n## Notes');
  return notes >= 0 ? tools.slice(0, notes + 1) + section + tools.slice(notes + 1) : `${tools.trimEnd()}\n\n${section}`;
}
