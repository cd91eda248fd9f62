/**
 * Webhook sources: the customer registers a source (gmail, calendar, github or any custom name) and gets its secret
 * once, then lists, rotates or deletes sources. Behind the customer's API key. Integrations use the secret to sign
 * (hmac) or present (bearer) each delivery to /webhook/<source> (inbound.ts).
 */
import { randomBytes } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import { toBase62 } from '../../../core/apiKey.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { HttpError } from '../../../core/http/httpError.ts';
import { readJsonBody } from '../../../core/http/rawBody.ts';
import type { RuntimeContext } from '../context.ts';

export type WebhookScheme = 'hmac' | 'bearer';

export const WEBHOOK_SCHEMES: readonly WebhookScheme[] = ['hmac', 'bearer'];
/** Integrations the product knows; any other name matching SOURCE_PATTERN is a custom source. */
export const KNOWN_WEBHOOK_SOURCES = ['gmail', 'calendar', 'github'] as const;
export const SOURCE_PATTERN = /^[a-z0-9][a-z0-9_-]{0,39}$/;
/**
 * Header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<delivery id header>.<raw body>")>`; GitHub's
 * X-Hub-Signature-256 (`sha256=<hex HMAC-SHA256(secret, raw body)>`) is accepted too.
 */
export const WEBHOOK_SIGNATURE_HEADER = 'X-Clawdbot-Signature';

/** How an integration signs, as the API tells it. */
export const SIGNATURE_FORMAT = 't=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<X-Delivery-Id>.<raw body>")>';

export const SECRET_BYTES = 32;
const SECRET_LENGTH = 43; // base62 digits of 32 bytes, padded so every secret has the same length
const MANAGEMENT_BODY_LIMIT = 4 * 1024;

/** A source as stored: an hmac secret as it is, a bearer secret as its SHA-256. */
export interface SourceRow {
  source: string;
  scheme: WebhookScheme;
  secret: string;
  created_at: Date;
}

/** How an integration is told to authenticate; `secret` only right after creation or rotation. */
function sourceView(row: Pick<SourceRow, 'source' | 'scheme'>) {
  return {
    source: row.source,
    scheme: row.scheme,
    url: `/webhook/${row.source}`,
    header: row.scheme === 'hmac' ? WEBHOOK_SIGNATURE_HEADER : 'Authorization',
    format: row.scheme === 'hmac' ? SIGNATURE_FORMAT : 'Bearer <secret>',
  };
}

function newSecret(scheme: WebhookScheme): { secret: string; stored: string } {
  const secret = toBase62(randomBytes(SECRET_BYTES), SECRET_LENGTH);
  return { secret, stored: scheme === 'bearer' ? sha256Hex(secret) : secret };
}


function sourceParam(ctx: Context): string {
  const source = String(ctx.params?.source ?? '');
  if (!SOURCE_PATTERN.test(source)) throw noSuchSource(source);
  return source;
}

function noSuchSource(source: string): HttpError {
  return new HttpError(404, 'not_found', `no webhook source named "${source.slice(0, 60)}"`);
}

export function webhookSourceRoutes(ctx: Pick<RuntimeContext, 'db'>): Router {
  const { db } = ctx;
  const router = new Router();

  router.post('/api/webhooks', async (koa) => {
    const body = await readJsonBody(koa.req, MANAGEMENT_BODY_LIMIT);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new HttpError(400, 'invalid_request', 'send a JSON object { source, scheme }');
    }
    const { source, scheme } = body as Record<string, unknown>;
    if (typeof source !== 'string' || !SOURCE_PATTERN.test(source)) {
      throw new HttpError(400, 'invalid_request', 'source must be 1-40 characters of a-z, 0-9, _ and -, starting with a letter or digit', {
        known: KNOWN_WEBHOOK_SOURCES,
      });
    }
    if (typeof scheme !== 'string' || !(WEBHOOK_SCHEMES as readonly string[]).includes(scheme)) {
      throw new HttpError(400, 'invalid_request', `scheme must be one of ${WEBHOOK_SCHEMES.join(', ')}`);
    }
    const { secret, stored } = newSecret(scheme as WebhookScheme);
    const { rowCount } = await db.query(
      `INSERT INTO webhook_sources (source, scheme, secret) VALUES ($1, $2, $3) ON CONFLICT (source) DO NOTHING`,
      [source, scheme, stored],
    );
    if (rowCount === 0) {
      throw new HttpError(409, 'conflict', `webhook source "${source}" already exists; rotate its secret with POST /api/webhooks/${source}/rotate`);
    }
    koa.status = 201;
    koa.set('Cache-Control', 'no-store');
    koa.body = { ...sourceView({ source, scheme: scheme as WebhookScheme }), secret };
  });

  router.get('/api/webhooks', async (koa) => {
    const { rows } = await db.query<Omit<SourceRow, 'secret'>>(
      'SELECT source, scheme, created_at FROM webhook_sources ORDER BY source COLLATE "C"',
    );
    koa.body = { webhooks: rows.map((row) => ({ ...sourceView(row), createdAt: row.created_at.toISOString() })) };
  });

  router.post('/api/webhooks/:source/rotate', async (koa) => {
    const source = sourceParam(koa);
    // The new secret depends on the scheme, which the same statement reads: generate both forms, store the right one.
    const secret = toBase62(randomBytes(SECRET_BYTES), SECRET_LENGTH);
    const { rows } = await db.query<{ scheme: WebhookScheme }>(
      `UPDATE webhook_sources SET secret = CASE scheme WHEN 'bearer' THEN $2 ELSE $3 END
       WHERE source = $1 RETURNING scheme`,
      [source, sha256Hex(secret), secret],
    );
    if (!rows[0]) throw noSuchSource(source);
    koa.set('Cache-Control', 'no-store');
    koa.body = { ...sourceView({ source, scheme: rows[0].scheme }), secret };
  });

  router.delete('/api/webhooks/:source', async (koa) => {
    const source = sourceParam(koa);
    // Deliveries already accepted stay (and are still processed): they were authenticated when they arrived.
    const { rowCount } = await db.query('DELETE FROM webhook_sources WHERE source = $1', [source]);
    if (rowCount === 0) throw noSuchSource(source);
    koa.status = 204;
  });

  return router;
}
