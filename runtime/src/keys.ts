/**
 * Key rotation from code: `POST /api/keys/rotate` with the current key answers a new key, once. The new key's hash
 * is added and the presented key revoked in one transaction (only that key: another the customer holds keeps
 * working); the control plane is told afterwards, and a notice it does not take does not undo the rotation.
 */
import Router from '@koa/router';
import type pg from 'pg';
import { apiKeyLabel, bearerKey, generateApiKey, hashApiKey } from '../../core/apiKey.ts';
import { HttpError } from '../../core/http/httpError.ts';
import { logger } from '../../core/logger.ts';
import { inTransaction } from '../../core/postgres.ts';
import { KEY_ROTATED_PATH } from '../../core/usageNotice.ts';
import type { ApiKeyAuth } from './auth.ts';
import type { RuntimeContext } from './context.ts';
import { postToControlPlane } from './notifier.ts';

const log = logger('keys');

/** Revokes the presented key and adds a new one; undefined when the presented key was revoked meanwhile (a race). */
export async function rotateKey(db: pg.Pool, presentedHash: string): Promise<{ key: string; hash: string; label: string } | undefined> {
  const key = generateApiKey();
  const hash = hashApiKey(key);
  const label = apiKeyLabel(key);
  return inTransaction(db, async (tx) => {
    const revoked = await tx.query('UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1 AND revoked_at IS NULL', [presentedHash]);
    if (revoked.rowCount !== 1) return undefined;
    await tx.query('INSERT INTO api_keys (key_hash, label) VALUES ($1, $2)', [hash, label]);
    return { key, hash, label };
  });
}

export function keyRoutes(deps: Pick<RuntimeContext, 'db' | 'config'>, auth: ApiKeyAuth): Router {
  const router = new Router();
  // Notices go one after another, so the control plane learns of two quick rotations in their order.
  let notices: Promise<unknown> = Promise.resolve();

  router.post('/api/keys/rotate', async (ctx) => {
    // The auth middleware has checked the key already.
    const presentedHash = hashApiKey(bearerKey(ctx.get('authorization'))!);
    const rotated = await rotateKey(deps.db, presentedHash);
    auth.forget(presentedHash);
    if (!rotated) throw new HttpError(401, 'unauthorized', 'unknown or revoked api key', {}, { 'WWW-Authenticate': 'Bearer' });
    ctx.set('Cache-Control', 'no-store');
    ctx.status = 201;
    ctx.body = { key: rotated.key, label: rotated.label };
    log.info('api key rotated', { label: rotated.label });

    const target = deps.config.controlPlane;
    if (!target) return;
    const { workspaceId } = deps.config;
    const body = JSON.stringify({ workspaceId, hash: rotated.hash, label: rotated.label });
    notices = notices.then(async () => {
      if (!(await postToControlPlane(target, workspaceId, KEY_ROTATED_PATH, body))) {
        log.warn('key rotation notice not delivered', { label: rotated.label });
      }
    });
  });
  return router;
}
