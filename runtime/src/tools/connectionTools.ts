/**
 * The tools that act through the customer's OAuth connections (Gmail, Calendar, GitHub), and which services are
 * connected now (for the prompt's and TOOLS.md's honest list).
 */
import type pg from 'pg';
import { calendarTools } from './calendarTools.ts';
import { githubTools } from './githubTools.ts';
import { gmailTools } from './gmailTools.ts';
import type { ClientTool } from './types.ts';

export const connectionTools: readonly ClientTool[] = [...gmailTools, ...calendarTools, ...githubTools];

/** The services this customer has connected (e.g. 'gmail', 'calendar', 'github'). */
export async function connectedServices(db: pg.Pool): Promise<ReadonlySet<string>> {
  const { rows } = await db.query<{ service: string }>('SELECT service FROM connections');
  return new Set(rows.map((row) => row.service));
}
