/**
 * The connections table: tokens sealed under CONNECTIONS_KEY (bound to the service and which token it is), a live
 * access token for the tools (refreshed at the provider when it is about to expire), the list the API and the
 * prompt show (never a token), and disconnection.
 */
import type pg from 'pg';
import { open, seal } from '../../../core/sealing.ts';
import type { ConnectionsConfig } from '../config.ts';
import { OAuthError, refreshGrant, type TokenGrant } from './oauth.ts';
import { connectPath, oauthAppFor, type ConnectableService } from './services.ts';

/** An access token this close to its expiry is refreshed first: a tool's calls take a while. */
const REFRESH_MARGIN_MS = 60_000;

export interface ConnectionView {
  service: string;
  account: string | null;
  scopes: string[];
  connectedAt: Date;
}

/** Why a service's tools cannot act now, in words the model can pass on (how to connect it, or that it cannot be). */
export class ConnectionUnavailable extends Error {
  constructor(readonly service: ConnectableService, reason: 'not_configured' | 'not_connected' | 'expired') {
    super(
      reason === 'not_configured'
        ? `${service.title} connections are not configured on this platform, so ${service.title} cannot be used yet.`
        : `${service.title} is ${reason === 'expired' ? 'no longer authorized (the connection expired or was revoked)' : 'not connected'}. ` +
            `The customer connects it with POST ${connectPath(service)} (with their API key) and opens the authorizationUrl it answers, ` +
            `then signs in to ${service.provider === 'google' ? 'Google' : 'GitHub'} and allows access.`,
    );
    this.name = 'ConnectionUnavailable';
  }
}

function sealToken(key: Buffer, service: string, which: 'access' | 'refresh', token: string): string {
  const s = seal(key, token, `connection/${service}/${which}`);
  return ['v1', s.iv, s.tag, s.ciphertext].map((part) => (typeof part === 'string' ? part : part.toString('base64url'))).join('.');
}

function openToken(key: Buffer, service: string, which: 'access' | 'refresh', stored: string): string {
  const [, iv, tag, ciphertext] = stored.split('.');
  const bytes = (part: string | undefined) => Buffer.from(part ?? '', 'base64url');
  return open(key, { iv: bytes(iv), tag: bytes(tag), ciphertext: bytes(ciphertext) }, `connection/${service}/${which}`);
}

export async function listConnections(db: pg.Pool): Promise<ConnectionView[]> {
  const { rows } = await db.query<{ service: string; account: string | null; scopes: string[]; connected_at: Date }>(
    'SELECT service, account, scopes, connected_at FROM connections ORDER BY service',
  );
  return rows.map((row) => ({ service: row.service, account: row.account, scopes: row.scopes, connectedAt: row.connected_at }));
}

/** Stores a new grant for the service, replacing an earlier connection (a reconnection). */
export async function saveConnection(db: pg.Pool, key: Buffer, service: ConnectableService, grant: TokenGrant, account: string | undefined): Promise<void> {
  await db.query(
    `INSERT INTO connections (service, account, scopes, access_token_sealed, refresh_token_sealed, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (service) DO UPDATE SET account = EXCLUDED.account, scopes = EXCLUDED.scopes,
       access_token_sealed = EXCLUDED.access_token_sealed, refresh_token_sealed = EXCLUDED.refresh_token_sealed,
       expires_at = EXCLUDED.expires_at, connected_at = now(), refreshed_at = NULL`,
    [
      service.name,
      account ?? null,
      grant.scopes ?? [...service.scopes],
      sealToken(key, service.name, 'access', grant.accessToken),
      grant.refreshToken === undefined ? null : sealToken(key, service.name, 'refresh', grant.refreshToken),
      grant.expiresAt ?? null,
    ],
  );
}

/** Removes the connection; answers the token to revoke at the provider (the refresh token revokes the whole grant). */
export async function deleteConnection(db: pg.Pool, key: Buffer | undefined, service: ConnectableService): Promise<{ token: string | undefined } | undefined> {
  const { rows } = await db.query<{ access_token_sealed: string; refresh_token_sealed: string | null }>(
    'DELETE FROM connections WHERE service = $1 RETURNING access_token_sealed, refresh_token_sealed',
    [service.name],
  );
  const row = rows[0];
  if (!row) return undefined;
  if (!key) return { token: undefined };
  try {
    return { token: row.refresh_token_sealed ? openToken(key, service.name, 'refresh', row.refresh_token_sealed) : openToken(key, service.name, 'access', row.access_token_sealed) };
  } catch {
    return { token: undefined }; // sealed under another key: nothing this runtime can revoke
  }
}

/**
 * A live access token for the service's API, refreshed first when it expires within REFRESH_MARGIN_MS, or at once
 * with `refresh` (the API refused the token before its time: revoked early, or a clock apart).
 */
export async function accessToken(db: pg.Pool, config: ConnectionsConfig, service: ConnectableService, now: Date, refresh = false): Promise<string> {
  const app = oauthAppFor(config, service);
  if (!app || !config.key) throw new ConnectionUnavailable(service, 'not_configured');
  const key = config.key;
  const { rows } = await db.query<{ access_token_sealed: string; refresh_token_sealed: string | null; expires_at: Date | null }>(
    'SELECT access_token_sealed, refresh_token_sealed, expires_at FROM connections WHERE service = $1',
    [service.name],
  );
  const row = rows[0];
  if (!row) throw new ConnectionUnavailable(service, 'not_connected');
  let stored: { access: string; refresh: string | null };
  try {
    stored = {
      access: openToken(key, service.name, 'access', row.access_token_sealed),
      refresh: row.refresh_token_sealed ? openToken(key, service.name, 'refresh', row.refresh_token_sealed) : null,
    };
  } catch {
    throw new ConnectionUnavailable(service, 'expired'); // sealed under a key this runtime no longer has
  }
  if (!refresh && (!row.expires_at || row.expires_at.getTime() - REFRESH_MARGIN_MS > now.getTime())) return stored.access;
  if (!stored.refresh) throw new ConnectionUnavailable(service, 'expired');
  let grant: TokenGrant;
  try {
    grant = await refreshGrant(config, app, service, stored.refresh, now);
  } catch (err) {
    if (err instanceof OAuthError && err.revoked) throw new ConnectionUnavailable(service, 'expired');
    throw err;
  }
  // A provider that rotates refresh tokens sends a new one; one that does not keeps the old one valid.
  await db.query(
    `UPDATE connections SET access_token_sealed = $2, refresh_token_sealed = COALESCE($3, refresh_token_sealed), expires_at = $4, refreshed_at = now()
     WHERE service = $1`,
    [
      service.name,
      sealToken(key, service.name, 'access', grant.accessToken),
      grant.refreshToken === undefined ? null : sealToken(key, service.name, 'refresh', grant.refreshToken),
      grant.expiresAt ?? null,
    ],
  );
  return grant.accessToken;
}
