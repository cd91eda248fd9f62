/**
 * The tools that act through the customer's OAuth connections (Gmail, Calendar, GitHub), and which services are
 * connected now (for the prompt's and TOOLS.md's honest list). Filled in by the connections work.
 */
import type pg from 'pg';
import type { ClientTool } from './types.ts';

export const connectionTools: readonly ClientTool[] = [];

/** The services this customer has connected (e.g. 'gmail', 'calendar', 'github'). */
export async function connectedServices(_db: pg.Pool): Promise<ReadonlySet<string>> {
  return new Set();
}
