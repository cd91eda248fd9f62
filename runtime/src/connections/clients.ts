/**
 * The providers' official clients, pointed at the configured base URLs (the real APIs, or emulators in tests) and
 * authorized with one access token for one call of a tool.
 */
import { auth, calendar, type calendar_v3 } from '@googleapis/calendar';
import { gmail, type gmail_v1 } from '@googleapis/gmail';
import { Octokit } from '@octokit/rest';
import type { ConnectionsConfig } from '../config.ts';

const REQUEST_TIMEOUT_MS = 20_000;
const USER_AGENT = 'clawdbot-runtime';

/** An OAuth client holding only the access token: refreshing is the store's job, which also persists the result. */
function googleAuth(token: string) {
  const client = new auth.OAuth2();
  client.setCredentials({ access_token: token });
  return client;
}

export function gmailClient(config: ConnectionsConfig, token: string): gmail_v1.Gmail {
  return gmail({ version: 'v1', rootUrl: `${config.google.gmailApiUrl}/`, auth: googleAuth(token), timeout: REQUEST_TIMEOUT_MS, retry: false });
}

export function calendarClient(config: ConnectionsConfig, token: string): calendar_v3.Calendar {
  return calendar({ version: 'v3', rootUrl: `${config.google.calendarApiUrl}/`, auth: googleAuth(token), timeout: REQUEST_TIMEOUT_MS, retry: false });
}

export function githubClient(config: ConnectionsConfig, token: string): Octokit {
  return new Octokit({ auth: token, baseUrl: config.github.apiUrl, userAgent: USER_AGENT, request: { timeout: REQUEST_TIMEOUT_MS } });
}

/** The login a GitHub token acts as (the connection's account label). */
export async function githubAccount(config: ConnectionsConfig, token: string): Promise<string> {
  const { data } = await githubClient(config, token).rest.users.getAuthenticated();
  return data.login;
}
