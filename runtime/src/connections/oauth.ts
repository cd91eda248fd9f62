/**
 * OAuth 2.0 with the providers: the authorization URL the customer opens, the code exchange and refresh at the token
 * endpoint, and revocation. Plain form posts (RFC 6749), the same for Google and GitHub but for their endpoints;
 * tokens travel only in request bodies, never in a URL or a log line.
 */
import type { ConnectionsConfig, OAuthApp } from '../config.ts';
import type { ConnectableService } from './services.ts';

const TOKEN_TIMEOUT_MS = 15_000;

/** What a token endpoint answers, reduced to what is stored. */
export interface TokenGrant {
  accessToken: string;
  refreshToken: string | undefined;
  expiresAt: Date | undefined;
  scopes: string[] | undefined;
  /** Google's id token's email claim (the account's name); GitHub's comes from its API instead. */
  email: string | undefined;
}

/** The provider refused (a bad or used code, a revoked refresh token) or could not be reached. */
export class OAuthError extends Error {
  constructor(
    message: string,
    /** The grant is no longer valid: the customer must connect again. */
    readonly revoked = false,
  ) {
    super(message);
    this.name = 'OAuthError';
  }
}

export function authorizationUrl(config: ConnectionsConfig, app: OAuthApp, service: ConnectableService, redirectUri: string, state: string): string {
  const google = service.provider === 'google';
  const url = new URL(google ? config.google.authUrl : `${config.github.oauthUrl}/authorize`);
  const params: Record<string, string> = {
    client_id: app.clientId,
    redirect_uri: redirectUri,
    scope: service.scopes.join(' '),
    state,
  };
  // Offline access is what gives Google's refresh token; consent makes Google send one on a reconnection too.
  if (google) Object.assign(params, { response_type: 'code', access_type: 'offline', prompt: 'consent', include_granted_scopes: 'true' });
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  return url.toString();
}

function tokenUrl(config: ConnectionsConfig, service: ConnectableService): string {
  return service.provider === 'google' ? config.google.tokenUrl : `${config.github.oauthUrl}/access_token`;
}

export function exchangeCode(config: ConnectionsConfig, app: OAuthApp, service: ConnectableService, code: string, redirectUri: string, now: Date): Promise<TokenGrant> {
  return requestToken(tokenUrl(config, service), { grant_type: 'authorization_code', code, redirect_uri: redirectUri, client_id: app.clientId, client_secret: app.clientSecret }, now);
}

export function refreshGrant(config: ConnectionsConfig, app: OAuthApp, service: ConnectableService, refreshToken: string, now: Date): Promise<TokenGrant> {
  return requestToken(tokenUrl(config, service), { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: app.clientId, client_secret: app.clientSecret }, now);
}

async function requestToken(url: string, form: Record<string, string>, now: Date): Promise<TokenGrant> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
      body: new URLSearchParams(form),
      signal: AbortSignal.timeout(TOKEN_TIMEOUT_MS),
    });
  } catch (err) {
    throw new OAuthError(`the provider's token endpoint could not be reached (${(err as Error).name})`);
  }
  const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
  // GitHub answers a refused code with 200 and an error field.
  if (!response.ok || typeof body.error === 'string' || typeof body.access_token !== 'string') {
    const error = typeof body.error === 'string' ? body.error : `HTTP ${response.status}`;
    throw new OAuthError(`the provider refused the grant (${error.slice(0, 80)})`, error === 'invalid_grant' || error === 'bad_refresh_token' || error === 'bad_verification_code');
  }
  const expiresIn = Number(body.expires_in);
  return {
    accessToken: body.access_token,
    refreshToken: typeof body.refresh_token === 'string' ? body.refresh_token : undefined,
    expiresAt: Number.isFinite(expiresIn) && expiresIn > 0 ? new Date(now.getTime() + expiresIn * 1000) : undefined,
    scopes: typeof body.scope === 'string' ? body.scope.split(/[\s,]+/).filter(Boolean) : undefined,
    email: typeof body.id_token === 'string' ? idTokenEmail(body.id_token) : undefined,
  };
}

/**
 * The email claim of an id token. Its signature is not checked: it came straight from the token endpoint over the
 * connection this runtime opened (OpenID Connect Core 3.1.3.7), and it only labels the account for the customer.
 */
function idTokenEmail(idToken: string): string | undefined {
  try {
    const claims = JSON.parse(Buffer.from(idToken.split('.')[1] ?? '', 'base64url').toString('utf8')) as { email?: unknown };
    return typeof claims.email === 'string' ? claims.email : undefined;
  } catch {
    return undefined;
  }
}

/** Withdraws the grant at the provider, so a disconnection leaves no live token behind; false when it did not answer ok. */
export async function revokeGrant(config: ConnectionsConfig, app: OAuthApp, service: ConnectableService, token: string): Promise<boolean> {
  const request: [string, RequestInit] =
    service.provider === 'google'
      ? [config.google.revokeUrl, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token }) }]
      : [
          `${config.github.apiUrl}/applications/${encodeURIComponent(app.clientId)}/grant`,
          {
            method: 'DELETE',
            headers: {
              Authorization: `Basic ${Buffer.from(`${app.clientId}:${app.clientSecret}`).toString('base64')}`,
              Accept: 'application/vnd.github+json',
              'Content-Type': 'application/json',
            },
            body: JSON.stringify({ access_token: token }),
          },
        ];
  try {
    const response = await fetch(request[0], { ...request[1], signal: AbortSignal.timeout(TOKEN_TIMEOUT_MS) });
    return response.ok;
  } catch {
    return false;
  }
}
