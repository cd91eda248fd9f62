/**
 * Inbound deliveries: integrations POST events to /webhook/<source>, authenticated by a timed HMAC signature of the
 * delivery id and raw body (or GitHub's own signature of the body), or a bearer token with the source's own secret
 * (never a token in the query string, and no API key). Each delivery is stored once per (source, delivery id), a
 * body once within five minutes, answered 202 and handed to the processor (processor.ts).
 */
import { createHmac, randomBytes } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import { bearerKey } from '../../../core/apiKey.ts';
import { sha256Hex } from '../../../core/hash.ts';
import { HttpError } from '../../../core/http/httpError.ts';
import { readRawBody } from '../../../core/http/rawBody.ts';
import { secretEquals } from '../../../core/secretEquals.ts';
import { jsonShapeProblem } from '../../../core/http/jsonShape.ts';
import { SIGNATURE_TOLERANCE_SECONDS, timedSignatureValid } from '../../../core/timedSignature.ts';
import type { RuntimeContext } from '../context.ts';
import { SECRET_BYTES, SOURCE_PATTERN, WEBHOOK_SIGNATURE_HEADER, type SourceRow } from './sources.ts';

/** Largest inbound delivery body. */
export const MAX_WEBHOOK_BODY_BYTES = 1024 * 1024;
const GITHUB_SIGNATURE_HEADER = 'X-Hub-Signature-256';
const MAX_DELIVERY_ID_LENGTH = 200;
/** Query parameters that look like credentials: refused outright, so nobody learns to put a secret in a URL. */
const QUERY_CREDENTIALS = ['token', 'access_token', 'secret', 'key', 'api_key', 'signature', 'sig'];

/** One answer for an unknown source and for a missing or wrong signature, so callers cannot probe for sources. */
function unauthorized(): HttpError {
  return new HttpError(401, 'unauthorized', 'unknown webhook source or missing/invalid signature');
}

/** A dummy key, so an unknown source costs the same HMAC work as a known one. */
const DUMMY_SECRET = randomBytes(SECRET_BYTES).toString('hex');

/** GitHub's own scheme: `sha256=<hex HMAC-SHA256(secret, raw body)>`, with no time in it. */
function githubSignatureMatches(secret: string, raw: Buffer, header: string): boolean {
  const expected = createHmac('sha256', secret).update(raw).digest('hex');
  const match = /^sha256=([0-9a-f]{64})$/i.exec(header.trim());
  return match !== null && secretEquals(match[1]!.toLowerCase(), expected);
}

/** What our own scheme signs: the delivery id from the header (empty when the body carries it) and the raw body. */
function signedContent(koa: Context, raw: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${deliveryIdHeader(koa)}.`), raw]);
}

function authenticated(koa: Context, row: SourceRow | undefined, raw: Buffer): boolean {
  if (row === undefined) {
    timedSignatureValid('t=0,v1=0', raw, DUMMY_SECRET);
    return false;
  }
  if (row.scheme === 'hmac') {
    const own = koa.get(WEBHOOK_SIGNATURE_HEADER);
    if (own) return timedSignatureValid(own, signedContent(koa, raw), row.secret);
    return githubSignatureMatches(row.secret, raw, koa.get(GITHUB_SIGNATURE_HEADER));
  }
  const token = bearerKey(koa.get('authorization') || undefined);
  // The stored value is the token's SHA-256; hashing what was presented and comparing in constant time.
  return token !== undefined && secretEquals(sha256Hex(token), row.secret);
}

function deliveryIdHeader(koa: Context): string {
  return koa.get('x-delivery-id') || koa.get('x-github-delivery');
}

function deliveryIdOf(koa: Context, payload: unknown): string {
  const fromHeader = deliveryIdHeader(koa);
  const fromBody =
    typeof payload === 'object' && payload !== null && !Array.isArray(payload)
      ? (payload as Record<string, unknown>).id
      : undefined;
  const id = (fromHeader || (typeof fromBody === 'string' ? fromBody : '')).trim();
  if (!id) {
    throw new HttpError(400, 'missing_delivery_id', 'send a delivery id: X-Delivery-Id or X-GitHub-Delivery header, or a top-level string "id" in the body');
  }
  // The id is not covered by the signature and is quoted to the agent: only id-like characters get through.
  if (id.length > MAX_DELIVERY_ID_LENGTH || !/^[A-Za-z0-9._:@-]+$/.test(id)) {
    throw new HttpError(
      400,
      'invalid_delivery_id',
      `the delivery id must be at most ${MAX_DELIVERY_ID_LENGTH} characters of letters, digits and . _ : @ -`,
    );
  }
  return id;
}

/**
 * Stores the delivery once per id. The same body under another id within the replay window is refused: without
 * that, anyone who saw one delivery could send it again as new by changing only its id (GitHub's and bearer
 * signatures cover no time, and a timed one stays valid for five minutes).
 */
async function storeDelivery(db: RuntimeContext['db'], source: string, deliveryId: string, payload: unknown, bodySha256: string): Promise<boolean> {
  const unstorable = jsonShapeProblem(JSON.stringify(payload));
  if (unstorable) throw new HttpError(400, 'invalid_json', `the body is JSON the database cannot store: ${unstorable}`);
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    // Deliveries of one body are taken one at a time, so two copies arriving together cannot both pass the check.
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`webhook-body/${source}/${bodySha256}`]);
    const { rows } = await client.query<{ delivery_id: string }>(
      `SELECT delivery_id FROM webhook_deliveries
       WHERE source = $1 AND body_sha256 = $2 AND received_at > now() - make_interval(secs => $3) AND delivery_id <> $4 LIMIT 1`,
      [source, bodySha256, SIGNATURE_TOLERANCE_SECONDS, deliveryId],
    );
    if (rows[0]) {
      throw new HttpError(409, 'replayed_delivery', `this body was accepted as another delivery within the last ${SIGNATURE_TOLERANCE_SECONDS / 60} minutes`);
    }
    const { rowCount } = await client.query(
      `INSERT INTO webhook_deliveries (source, delivery_id, payload, body_sha256) VALUES ($1, $2, $3::jsonb, $4)
       ON CONFLICT (source, delivery_id) DO NOTHING`,
      [source, deliveryId, JSON.stringify(payload), bodySha256],
    );
    await client.query('COMMIT');
    return rowCount === 1;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    // JSON that JavaScript parses but jsonb refuses (a lone surrogate): class 22, data exception.
    if (String((err as { code?: unknown }).code ?? '').startsWith('22')) {
      throw new HttpError(400, 'invalid_json', 'the body is JSON the database cannot store (for example a lone surrogate)');
    }
    throw err;
  } finally {
    client.release();
  }
}

export function inboundWebhookRoutes(ctx: Pick<RuntimeContext, 'db'>, processor: { notify(): void }): Router {
  const { db } = ctx;
  const router = new Router();

  router.post('/webhook/:source', async (koa) => {
    const inQuery = QUERY_CREDENTIALS.filter((name) => Object.prototype.hasOwnProperty.call(koa.query, name));
    if (inQuery.length > 0) {
      throw new HttpError(
        400,
        'credentials_in_query',
        `credentials are never accepted in the query string (found ?${inQuery[0]}=); ` +
          `send ${WEBHOOK_SIGNATURE_HEADER}: sha256=<hex> or Authorization: Bearer <secret> instead, and rotate a secret that was put in a URL`,
      );
    }
    const raw = await readRawBody(koa.req, MAX_WEBHOOK_BODY_BYTES);

    const source = String(koa.params.source ?? '');
    let row: SourceRow | undefined;
    if (SOURCE_PATTERN.test(source)) {
      const result = await db.query<SourceRow>('SELECT source, scheme, secret, created_at FROM webhook_sources WHERE source = $1', [source]);
      row = result.rows[0];
    }
    if (!authenticated(koa, row, raw)) throw unauthorized();

    let payload: unknown;
    try {
      payload = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new HttpError(400, 'invalid_json', 'the body must be JSON');
    }
    const deliveryId = deliveryIdOf(koa, payload);

    const inserted = await storeDelivery(db, source, deliveryId, payload, sha256Hex(raw));
    koa.status = 202;
    koa.body = { accepted: true, duplicate: !inserted, deliveryId };
    if (inserted) processor.notify();
  });

  return router;
}
