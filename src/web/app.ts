/**
 * The web process: Stripe intake, the customers' welcome page, the admin API, Bull Board, and a health endpoint for
 * load balancers.
 */
import Koa from 'koa';
import Router from '@koa/router';
import type { Config } from '../config.ts';
import type { Gateways } from '../db/gateways.ts';
import type { Db } from '../db/pool.ts';
import { QUEUES } from '../queues/catalogue.ts';
import type { Queues } from '../queues/connection.ts';
import type { JobQueue } from '../queues/jobQueue.ts';
import { adminApi } from './adminApi.ts';
import { rolloutsApi } from './rolloutsApi.ts';
import { backupsApi } from './backupsApi.ts';
import { bullBoard } from './bullBoard.ts';
import { jsonErrors, refuseUnreadablePaths } from '../../core/http/httpError.ts';
import { throttleFailedAuth } from '../../core/http/authFailureThrottle.ts';
import { countDeliveries, stripeWebhook } from './stripeWebhook.ts';
import { metricsRoute } from './metrics.ts';
import { metricsRegistry } from '../metrics/registry.ts';
import type { CounterStore } from '../metrics/counterStore.ts';
import { PgFleetFigures } from '../db/fleetFigures.ts';
import { runtimeApi } from './runtimeApi.ts';
import type { SecretStore } from '../secrets.ts';
import type { ComputeProvider, DatabaseProvider } from '../providers/types.ts';
import type { StripeGateway } from '../providers/stripe.ts';
import { welcomePages } from './welcome/routes.ts';
import { accountPages } from './account/routes.ts';
import type { Mailer } from '../providers/types.ts';

export interface WebDeps
  extends Pick<
    Gateways,
    'instances' | 'steps' | 'audit' | 'stripeEvents' | 'usageNotices' | 'health' | 'reconciliation' | 'customerDbs' | 'keyHandovers' | 'accountAccess' | 'locks' | 'fleet' | 'rollouts' | 'backups'
  > {
  config: Config;
  /** The admin API's reconcile dry run lists what the providers hold. */
  compute: ComputeProvider;
  database: DatabaseProvider;
  /** For the health check. */
  db: Db;
  queues: Queues;
  jobs: JobQueue;
  secrets: Pick<SecretStore, 'get' | 'delete'>;
  /** The welcome page checks Checkout Sessions with Stripe. */
  stripe: Pick<StripeGateway, 'checkoutSession' | 'billingPortalUrl'>;
  /** The account pages email sign-in links. */
  mailer: Mailer;
  /** The fleet-wide counters, and adding this process's counts to them (before a scrape). */
  metrics: { counters: Pick<CounterStore, 'read'>; flush(): Promise<void> };
}

export function createWebApp(deps: WebDeps): Koa {
  const app = new Koa({ proxy: deps.config.production });
  app.use(throttleFailedAuth(deps.config.admin.authFailureLimit));
  app.use(jsonErrors);
  app.use(refuseUnreadablePaths);

  // The Stripe intake (after its delivery count, an increment) and the health check come first: nothing else (Bull
  // Board, its auth) runs before them.
  const router = new Router();
  router.post('/webhooks/stripe', countDeliveries, stripeWebhook({ stripeEvents: deps.stripeEvents, jobs: deps.jobs, webhookSecret: deps.config.stripe.webhookSecret }));
  router.get('/health', async (ctx) => {
    const checks = await Promise.allSettled([
      deps.db.query('SELECT 1'),
      deps.queues.get(QUEUES.stripeEvents).getJobCounts('wait'),
    ]);
    const ok = checks.every((c) => c.status === 'fulfilled');
    ctx.status = ok ? 200 : 503;
    ctx.body = { status: ok ? 'ok' : 'unavailable', postgres: checks[0]!.status === 'fulfilled', redis: checks[1]!.status === 'fulfilled' };
  });
  app.use(router.routes()).use(router.allowedMethods());
  const welcome = welcomePages(deps);
  app.use(welcome.routes()).use(welcome.allowedMethods());
  const account = accountPages(deps);
  app.use(account.routes()).use(account.allowedMethods());
  const scrape = metricsRoute({
    registry: metricsRegistry({ figures: new PgFleetFigures(deps.db), queues: deps.queues, counters: deps.metrics.counters }),
    flush: deps.metrics.flush,
    tokens: [deps.config.admin.token, ...(deps.config.metricsToken ? [deps.config.metricsToken] : [])],
  });
  app.use(scrape.routes()).use(scrape.allowedMethods());
  app.use(bullBoard({ queues: deps.queues, admin: deps.config.admin, audit: deps.audit, publicUrl: deps.config.publicUrl }));

  const admin = adminApi(deps);
  const runtimes = runtimeApi(deps);
  app.use(runtimes.routes()).use(runtimes.allowedMethods());
  app.use(admin.routes()).use(admin.allowedMethods());
  const rollouts = rolloutsApi(deps);
  app.use(rollouts.routes()).use(rollouts.allowedMethods());
  app.use(backupsApi(deps).routes());
  return app;
}
