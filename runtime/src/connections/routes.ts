/**
 * The connections API. Behind the customer's API key: `GET /api/connections` (what is connected, never a token),
 * `POST /api/connections/:service` (the provider's authorization URL, with a one-time state kept here) and
 * `DELETE /api/connections/:service`. Not behind it: the callback the provider sends the customer's browser to,
 * which the state authenticates (bound to the service, used once, expiring).
 */
import { randomBytes } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import { HttpError } from '../../../core/http/httpError.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { logger } from '../../../core/logger.ts';
import type { RuntimeContext } from '../context.ts';
import { githubAccount } from './clients.ts';
import { authorizationUrl, exchangeCode, OAuthError, revokeGrant } from './oauth.ts';
import { connectPath, notInPlan, oauthAppFor, SERVICE_NAMES, serviceNamed, SERVICES, type ConnectableService } from './services.ts';
import { deleteConnection, listConnections, saveConnection } from './store.ts';
import { noteConnections } from './toolsFile.ts';

const log = logger('connections');

/** How long the customer has to sign in at the provider and come back. */
const STATE_TTL_MS = 10 * 60_000;

type Deps = Pick<RuntimeContext, 'db' | 'config' | 'workspace'>;

function serviceParam(ctx: Context): ConnectableService {
  const name = String(ctx.params?.service ?? '');
  const service = serviceNamed(name);
  if (!service) throw new HttpError(404, 'not_found', `no service named "${name.slice(0, 40)}" can be connected`, { services: SERVICE_NAMES });
  return service;
}

/** The service, if the plan includes it and the platform is set up for it; the OAuth app to authorize. */
function usableService(deps: Deps, ctx: Context) {
  const service = serviceParam(ctx);
  if (!deps.config.features.includes(service.feature)) {
    const { reason, requiredPlan } = notInPlan(service, deps.config.plan);
    throw new HttpError(403, 'plan_required', reason, { requiredPlan });
  }
  const app = oauthAppFor(deps.config.connections, service);
  if (!app) throw new HttpError(503, 'not_configured', `${service.title} connections are not configured on this platform`);
  return { service, app };
}

function redirectUri(deps: Deps, ctx: Context, service: ConnectableService): string {
  return `${deps.config.connections.publicUrl ?? `${ctx.protocol}://${ctx.host}`}${connectPath(service)}/callback`;
}

export function connectionRoutes(deps: Deps): Router {
  const router = new Router();

  router.get('/api/connections', async (ctx) => {
    const connected = new Map((await listConnections(deps.db)).map((c) => [c.service, c]));
    ctx.body = {
      connections: SERVICE_NAMES.map((name) => {
        const service = SERVICES[name];
        const connection = connected.get(name);
        return {
          service: name,
          included: deps.config.features.includes(service.feature),
          configured: oauthAppFor(deps.config.connections, service) !== undefined,
          connected: connection !== undefined,
          account: connection?.account ?? null,
          scopes: connection?.scopes ?? [],
          connectedAt: connection?.connectedAt.toISOString() ?? null,
        };
      }),
    };
  });

  router.post('/api/connections/:service', async (ctx) => {
    const { service, app } = usableService(deps, ctx);
    const state = randomBytes(32).toString('base64url');
    const uri = redirectUri(deps, ctx, service);
    const expiresAt = new Date(Date.now() + STATE_TTL_MS);
    // Stale states go as new ones come: the table stays as small as the authorizations under way.
    await deps.db.query('DELETE FROM connection_states WHERE expires_at < now()');
    await deps.db.query('INSERT INTO connection_states (state_hash, service, redirect_uri, expires_at) VALUES ($1, $2, $3, $4)', [
      sha256Hex(state),
      service.name,
      uri,
      expiresAt,
    ]);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { service: service.name, authorizationUrl: authorizationUrl(deps.config.connections, app, service, uri, state), expiresAt: expiresAt.toISOString() };
  });

  router.delete('/api/connections/:service', async (ctx) => {
    const service = serviceParam(ctx);
    const removed = await deleteConnection(deps.db, deps.config.connections.key, service);
    if (!removed) throw new HttpError(404, 'not_found', `${service.title} is not connected`);
    await noteConnections(deps);
    const app = oauthAppFor(deps.config.connections, service);
    // The connection is gone here whatever the provider says; revoking there is a courtesy that may fail.
    const revoked = app && removed.token ? await revokeGrant(deps.config.connections, app, service, removed.token) : false;
    if (!revoked) log.warn('connection removed without revoking it at the provider', { service: service.name });
    ctx.body = { service: service.name, connected: false, revokedAtProvider: revoked };
  });

  return router;
}

/** The provider's redirect back: authenticated by the state alone, as the customer's browser holds no API key. */
export function connectionCallbackRoutes(deps: Deps): Router {
  const router = new Router();
  router.get('/api/connections/:service/callback', async (ctx) => {
    const service = serviceParam(ctx);
    const state = typeof ctx.query.state === 'string' ? ctx.query.state : '';
    // Used once whatever follows: a state that came back is spent, even when the provider reports a refusal.
    const { rows } = state
      ? await deps.db.query<{ redirect_uri: string }>(
          'DELETE FROM connection_states WHERE state_hash = $1 AND service = $2 AND expires_at > now() RETURNING redirect_uri',
          [sha256Hex(state), service.name],
        )
      : { rows: [] };
    const pending = rows[0];
    ctx.set('Cache-Control', 'no-store');
    if (!pending) throw new HttpError(400, 'invalid_state', 'unknown, used or expired state: start again with POST ' + connectPath(service));
    if (typeof ctx.query.error === 'string') {
      throw new HttpError(400, 'authorization_denied', `${service.title} did not authorize the connection (${ctx.query.error.slice(0, 60)})`);
    }
    const code = typeof ctx.query.code === 'string' ? ctx.query.code : '';
    if (!code) throw new HttpError(400, 'invalid_request', 'the provider sent no code');
    const { app } = usableService(deps, ctx);
    const now = new Date();
    try {
      const grant = await exchangeCode(deps.config.connections, app, service, code, pending.redirect_uri, now);
      const account = service.provider === 'github' ? await githubAccount(deps.config.connections, grant.accessToken) : grant.email;
      await saveConnection(deps.db, deps.config.connections.key!, service, grant, account);
      await noteConnections(deps);
      log.info('service connected', { service: service.name });
      ctx.body = { service: service.name, connected: true, account: account ?? null };
    } catch (err) {
      if (!(err instanceof OAuthError)) throw err;
      throw new HttpError(502, 'provider_refused', `${service.title} did not complete the connection: ${err.message}`);
    }
  });
  return router;
}
