/**
 * The customer's own export: `GET /api/export` with their key answers their memories, conversations, usage, skills,
 * inbound webhook deliveries and workspace as one gzip-compressed archive, in the format the control plane archives
 * a cancelled customer in (core/archiveFormat.ts). It is read from one snapshot of this runtime's own database, so
 * it holds this customer's data only and is consistent however long it streams. API-key hashes, webhook secrets and
 * connection tokens are never in it.
 */
import Router from '@koa/router';
import { exportStream } from '../../core/archiveFormat.ts';
import { logger } from '../../core/logger.ts';
import type { RuntimeContext } from './context.ts';

const log = logger('export');

export function exportRoutes(deps: Pick<RuntimeContext, 'db' | 'config'>): Router {
  const router = new Router();
  router.get('/api/export', async (ctx) => {
    const client = await deps.db.connect();
    try {
      // One snapshot for the whole archive: a turn stored while it streams is either in it whole or not at all.
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    } catch (err) {
      client.release(err as Error);
      throw err;
    }
    const { stream } = exportStream(client, { workspaceId: deps.config.workspaceId });
    let failure: Error | undefined;
    stream.once('error', (err: Error) => (failure = err));
    // Ended, failed, or the customer left early (Koa destroys the stream): the snapshot ends and the connection goes
    // back, or is dropped if it may be mid-query.
    stream.once('close', () => {
      const broken = failure ?? (stream.readableEnded ? undefined : new Error('the download was left before its end'));
      if (failure) log.warn('export broke off', { reason: failure.message });
      void client
        .query('ROLLBACK')
        .catch(() => undefined)
        .finally(() => client.release(broken));
    });
    const day = new Date().toISOString().slice(0, 10);
    ctx.set('Content-Disposition', `attachment; filename="clawdbot-export-${deps.config.workspaceId}-${day}.jsonl.gz"`);
    ctx.set('Cache-Control', 'no-store');
    ctx.type = 'application/gzip';
    ctx.body = stream;
  });
  return router;
}
