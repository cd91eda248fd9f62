/**
 * GET /metrics: the Prometheus text of the fleet and of this process (src/metrics/registry.ts), for a bearer of
 * ADMIN_TOKEN or METRICS_TOKEN. This process's own counts are added to Redis first, so they are never behind.
 */
import Router from '@koa/router';
import type { Registry } from 'prom-client';
import { requireBearerToken } from './auth.ts';

export function metricsRoute(deps: { registry: Registry; flush: () => Promise<void>; tokens: string[] }): Router {
  const router = new Router();
  router.get('/metrics', requireBearerToken(deps.tokens, 'send Authorization: Bearer <ADMIN_TOKEN or METRICS_TOKEN>'), async (ctx) => {
    await deps.flush();
    const text = await deps.registry.metrics();
    ctx.set('Content-Type', deps.registry.contentType);
    ctx.body = text;
  });
  return router;
}
