// Google's OAuth 2.0 endpoints, Gmail API v1 and Calendar API v3 for the calls the runtime makes, on the real REST
// paths with the real JSON shapes, so the official `@googleapis/gmail` and `@googleapis/calendar` clients (pointed at
// it with `rootUrl`) are exercised for real:
// - GET  /o/oauth2/v2/auth: the consent screen, consenting at once: 302 to redirect_uri with code and state (or
//   error=access_denied once `deny` is set).
// - POST /token: grant_type authorization_code (code once, same client, secret and redirect_uri; a refresh token and
//   an id token naming `email`) and refresh_token (a new access token); `invalid_grant` / `invalid_client` otherwise.
// - POST /revoke: token=<access or refresh token>; revoking a refresh token revokes its access tokens too.
// - Gmail: users/me/messages (list with q), messages/{id} (format full|metadata), drafts (create), messages/send.
// - Calendar: calendars/primary/events (list with timeMin/timeMax/q/maxResults, ordered by start; insert).
// Access tokens live `accessTokenTtlSeconds` (3599 like Google's); `expireAccessTokens()` ends every live one, so a
// test sees the runtime refresh. Every API call checks the bearer token and its scopes (401/403 in Google's error
// shape). Tokens look like Google's (ya29.…, 1//…) so a test can search logs and databases for them.
import { authorizeRedirect, randomToken, startEmulatorServer, type AuthorizationCode, type EmulatorRequest, type EmulatorResponse } from './oauthEmulatorServer.ts';

export const GOOGLE_CLIENT = { clientId: 'emulator-client.apps.googleusercontent.com', clientSecret: 'GOCSPX-emulator-secret' };
const SCOPE = 'https://www.googleapis.com/auth/';

export interface MailboxMessage {
  id: string;
  threadId: string;
  labelIds: string[];
  from: string;
  to: string;
  subject: string;
  date: string;
  body: string;
}

export interface StoredDraft {
  id: string;
  message: { id: string; raw: string };
}

export interface CalendarEvent {
  id: string;
  summary?: string;
  description?: string;
  location?: string;
  start: { dateTime?: string; date?: string };
  end: { dateTime?: string; date?: string };
  attendees?: { email: string }[];
  htmlLink: string;
  status: 'confirmed';
}

interface AccessGrant {
  scopes: string[];
  expiresAt: number;
  refreshToken: string;
}

export interface GoogleEmulator {
  url: string;
  /** The account that consents (the id token's email). */
  email: string;
  /** The next authorizations are refused by the customer (error=access_denied). */
  deny: boolean;
  accessTokenTtlSeconds: number;
  inbox: MailboxMessage[];
  drafts: StoredDraft[];
  /** Messages sent, with their raw RFC 5322 text decoded. */
  sent: { id: string; raw: string; text: string }[];
  events: CalendarEvent[];
  /** Every access and refresh token issued, and which were revoked. */
  issued: { access: string[]; refresh: string[] };
  revoked: Set<string>;
  /** Token endpoint calls, by grant type. */
  grants: { authorization_code: number; refresh_token: number };
  requests: { method: string; path: string }[];
  addMessage(message: Partial<MailboxMessage> & Pick<MailboxMessage, 'from' | 'subject' | 'body'>): MailboxMessage;
  expireAccessTokens(): void;
  close(): Promise<void>;
}

export async function startGoogleEmulator(options: { email?: string } = {}): Promise<GoogleEmulator> {
  const codes = new Map<string, AuthorizationCode>();
  const access = new Map<string, AccessGrant>();
  const refresh = new Map<string, { scopes: string[] }>();
  let seq = 0;
  const nextId = () => (0x18c0000000 + ++seq).toString(16);

  const error = (status: number, message: string, reason: string): EmulatorResponse => ({
    status,
    body: { error: { code: status, message, errors: [{ message, domain: 'global', reason }], status: reason.toUpperCase() } },
  });

  /** The grant behind a request's bearer token, or the 401/403 Google answers. */
  function authorize(req: EmulatorRequest, scopes: string[]): EmulatorResponse | undefined {
    const grant = req.bearer ? access.get(req.bearer) : undefined;
    if (!grant || emulator.revoked.has(req.bearer!) || grant.expiresAt <= Date.now()) {
      return error(401, 'Request had invalid authentication credentials.', 'unauthenticated');
    }
    if (!scopes.some((s) => grant.scopes.includes(s))) return error(403, 'Request had insufficient authentication scopes.', 'permission_denied');
    return undefined;
  }

  function issueAccess(refreshToken: string, scopes: string[]): string {
    const token = randomToken('ya29.a0');
    access.set(token, { scopes, expiresAt: Date.now() + emulator.accessTokenTtlSeconds * 1000, refreshToken });
    emulator.issued.access.push(token);
    return token;
  }

  function idToken(): string {
    const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    return `${part({ alg: 'RS256', typ: 'JWT' })}.${part({ iss: 'https://accounts.google.com', aud: GOOGLE_CLIENT.clientId, email: emulator.email, email_verified: true })}.c2lnbmF0dXJl`;
  }

  function token(req: EmulatorRequest): EmulatorResponse {
    const b = req.body as Record<string, string>;
    if (b.client_id !== GOOGLE_CLIENT.clientId || b.client_secret !== GOOGLE_CLIENT.clientSecret) {
      return { status: 401, body: { error: 'invalid_client', error_description: 'The OAuth client was not found.' } };
    }
    const invalid: EmulatorResponse = { status: 400, body: { error: 'invalid_grant', error_description: 'Bad Request' } };
    if (b.grant_type === 'authorization_code') {
      const code = codes.get(b.code ?? '');
      codes.delete(b.code ?? '');
      if (!code || code.clientId !== b.client_id || code.redirectUri !== b.redirect_uri) return invalid;
      emulator.grants.authorization_code++;
      const refreshToken = randomToken('1//0g', 48);
      refresh.set(refreshToken, { scopes: code.scopes });
      emulator.issued.refresh.push(refreshToken);
      return {
        status: 200,
        body: {
          access_token: issueAccess(refreshToken, code.scopes),
          expires_in: emulator.accessTokenTtlSeconds,
          refresh_token: refreshToken,
          scope: code.scopes.join(' '),
          token_type: 'Bearer',
          id_token: idToken(),
        },
      };
    }
    if (b.grant_type === 'refresh_token') {
      const grant = refresh.get(b.refresh_token ?? '');
      if (!grant || emulator.revoked.has(b.refresh_token!)) return invalid;
      emulator.grants.refresh_token++;
      return {
        status: 200,
        body: { access_token: issueAccess(b.refresh_token!, grant.scopes), expires_in: emulator.accessTokenTtlSeconds, scope: grant.scopes.join(' '), token_type: 'Bearer' },
      };
    }
    return { status: 400, body: { error: 'unsupported_grant_type' } };
  }

  function revoke(req: EmulatorRequest): EmulatorResponse {
    const t = String(req.body.token ?? req.query.get('token') ?? '');
    if (!access.has(t) && !refresh.has(t)) return { status: 400, body: { error: 'invalid_token', error_description: 'Token expired or revoked' } };
    emulator.revoked.add(t);
    for (const [accessToken, grant] of access) if (grant.refreshToken === t) emulator.revoked.add(accessToken);
    return { status: 200, body: {} };
  }

  function messageResource(m: MailboxMessage, format: string, wanted: string[]) {
    const headers = [
      { name: 'From', value: m.from },
      { name: 'To', value: m.to },
      { name: 'Subject', value: m.subject },
      { name: 'Date', value: m.date },
    ].filter((h) => format !== 'metadata' || wanted.length === 0 || wanted.some((w) => w.toLowerCase() === h.name.toLowerCase()));
    const data = Buffer.from(m.body).toString('base64url');
    return {
      id: m.id,
      threadId: m.threadId,
      labelIds: m.labelIds,
      snippet: m.body.replace(/\s+/g, ' ').slice(0, 100),
      sizeEstimate: m.body.length + 200,
      internalDate: String(Date.parse(m.date)),
      payload:
        format === 'metadata'
          ? { mimeType: 'text/plain', headers }
          : { partId: '', mimeType: 'multipart/alternative', filename: '', headers, body: { size: 0 }, parts: [{ partId: '0', mimeType: 'text/plain', filename: '', headers: [{ name: 'Content-Type', value: 'text/plain; charset="UTF-8"' }], body: { size: m.body.length, data } }] },
    };
  }

  /** Gmail's search, reduced: every term must match (field:value against that field, a bare word anywhere). */
  function matches(m: MailboxMessage, q: string): boolean {
    return q
      .toLowerCase()
      .split(/\s+/)
      .filter(Boolean)
      .every((term) => {
        const [field, value] = term.includes(':') ? (term.split(/:(.*)/s) as [string, string]) : ['', term];
        const fields: Record<string, string> = { from: m.from, to: m.to, subject: m.subject };
        return (fields[field] ?? `${m.from} ${m.to} ${m.subject} ${m.body}`).toLowerCase().includes(value);
      });
  }

  const GMAIL = [`${SCOPE}gmail.readonly`, `${SCOPE}gmail.modify`, 'https://mail.google.com/'];
  const GMAIL_COMPOSE = [`${SCOPE}gmail.compose`, `${SCOPE}gmail.modify`, 'https://mail.google.com/'];
  const CALENDAR = [`${SCOPE}calendar.events`, `${SCOPE}calendar`];

  async function handle(req: EmulatorRequest): Promise<EmulatorResponse> {
    const { method, path } = req;
    if (method === 'GET' && path === '/o/oauth2/v2/auth') return authorizeRedirect(req, codes, { clientId: GOOGLE_CLIENT.clientId, deny: emulator.deny, codePrefix: '4/0A' });
    if (method === 'POST' && path === '/token') return token(req);
    if (method === 'POST' && path === '/revoke') return revoke(req);

    let m: RegExpExecArray | null;
    if (path.startsWith('/gmail/v1/users/me/')) {
      const compose = path.endsWith('/drafts') || path.endsWith('/messages/send');
      const denied = authorize(req, compose ? GMAIL_COMPOSE : GMAIL);
      if (denied) return denied;
      if (method === 'GET' && path === '/gmail/v1/users/me/messages') {
        const found = emulator.inbox.filter((msg) => matches(msg, req.query.get('q') ?? '')).slice(0, Number(req.query.get('maxResults') ?? 100));
        return { status: 200, body: { messages: found.map(({ id, threadId }) => ({ id, threadId })), resultSizeEstimate: found.length } };
      }
      if (method === 'GET' && (m = /^\/gmail\/v1\/users\/me\/messages\/([^/]+)$/.exec(path))) {
        const msg = emulator.inbox.find((x) => x.id === m![1]);
        if (!msg) return error(404, 'Requested entity was not found.', 'notFound');
        return { status: 200, body: messageResource(msg, req.query.get('format') ?? 'full', req.query.getAll('metadataHeaders')) };
      }
      if (method === 'POST' && path === '/gmail/v1/users/me/drafts') {
        const raw = String((req.body.message as { raw?: unknown } | undefined)?.raw ?? '');
        if (!raw) return error(400, "Invalid value for ByteString: ''", 'invalidArgument');
        const draft = { id: `r-${nextId()}`, message: { id: nextId(), raw } };
        emulator.drafts.push(draft);
        return { status: 200, body: { id: draft.id, message: { id: draft.message.id, threadId: draft.message.id, labelIds: ['DRAFT'] } } };
      }
      if (method === 'POST' && path === '/gmail/v1/users/me/messages/send') {
        const raw = String(req.body.raw ?? '');
        if (!raw) return error(400, "'raw' RFC822 payload message string or uploading message via /upload/* URL required", 'invalidArgument');
        const id = nextId();
        emulator.sent.push({ id, raw, text: Buffer.from(raw, 'base64url').toString('utf8') });
        return { status: 200, body: { id, threadId: id, labelIds: ['SENT'] } };
      }
    }
    if (path === '/calendar/v3/calendars/primary/events') {
      const denied = authorize(req, CALENDAR);
      if (denied) return denied;
      const startOf = (e: CalendarEvent) => Date.parse(e.start.dateTime ?? e.start.date!);
      if (method === 'GET') {
        const min = req.query.get('timeMin');
        const max = req.query.get('timeMax');
        const q = (req.query.get('q') ?? '').toLowerCase();
        const items = emulator.events
          .filter((e) => (!min || Date.parse(e.end.dateTime ?? e.end.date!) > Date.parse(min)) && (!max || startOf(e) < Date.parse(max)))
          .filter((e) => !q || `${e.summary ?? ''} ${e.description ?? ''} ${e.location ?? ''}`.toLowerCase().includes(q))
          .sort((a, b) => startOf(a) - startOf(b))
          .slice(0, Number(req.query.get('maxResults') ?? 250));
        return { status: 200, body: { kind: 'calendar#events', summary: emulator.email, timeZone: 'UTC', items } };
      }
      if (method === 'POST') {
        const b = req.body as Partial<CalendarEvent>;
        if (!b.start || !b.end) return error(400, 'Missing end time.', 'required');
        const id = `ev${nextId()}`;
        const event: CalendarEvent = { ...b, id, start: b.start, end: b.end, status: 'confirmed', htmlLink: `https://www.google.com/calendar/event?eid=${id}` };
        emulator.events.push(event);
        return { status: 200, body: { kind: 'calendar#event', ...event } };
      }
    }
    return error(404, `No route for ${method} ${path}`, 'notFound');
  }

  const server = await startEmulatorServer(handle);
  const emulator: GoogleEmulator = {
    url: server.url,
    email: options.email ?? 'customer@gmail.example',
    deny: false,
    accessTokenTtlSeconds: 3599,
    inbox: [],
    drafts: [],
    sent: [],
    events: [],
    issued: { access: [], refresh: [] },
    revoked: new Set(),
    grants: { authorization_code: 0, refresh_token: 0 },
    requests: server.requests,
    addMessage(message) {
      const id = nextId();
      const full: MailboxMessage = { id, threadId: id, labelIds: ['INBOX'], to: emulator.email, date: new Date().toUTCString(), ...message };
      emulator.inbox.push(full);
      return full;
    },
    expireAccessTokens() {
      for (const grant of access.values()) grant.expiresAt = 0;
    },
    close: server.close,
  };
  return emulator;
}

/** The runtime's environment for this emulator: its OAuth app and every Google endpoint. */
export function googleRuntimeEnv(emulator: Pick<GoogleEmulator, 'url'>): Record<string, string> {
  return {
    GOOGLE_CLIENT_ID: GOOGLE_CLIENT.clientId,
    GOOGLE_CLIENT_SECRET: GOOGLE_CLIENT.clientSecret,
    GOOGLE_OAUTH_URL: `${emulator.url}/o/oauth2/v2/auth`,
    GOOGLE_TOKEN_URL: `${emulator.url}/token`,
    GOOGLE_REVOKE_URL: `${emulator.url}/revoke`,
    GMAIL_API_URL: emulator.url,
    CALENDAR_API_URL: emulator.url,
  };
}
