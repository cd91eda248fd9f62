/**
 * The welcome page after checkout (GET /welcome?session_id=… or ?token=…), its live progress (GET /welcome/events?…:
 * server-sent events fed by the steps ledger, polled every half second, so any web process serves them whatever
 * worker runs the steps) and the one reveal of the key (POST /welcome/key?…, a form of the ready page: a GET never
 * uses the reveal up, so a mail scanner opening the welcome link leaves it to the customer).
 */
import { PassThrough } from 'node:stream';
import Router from '@koa/router';
import type { Context } from 'koa';
import type { Config } from '../../config.ts';
import type { Instances } from '../../db/instances.ts';
import type { KeyHandovers } from '../../db/keyHandovers.ts';
import type { StepLedger } from '../../db/steps.ts';
import { TransientError } from '../../errors.ts';
import { isEnded } from '../../instances/stateMachine.ts';
import type { StripeGateway } from '../../providers/stripe.ts';
import type { SecretStore } from '../../secrets.ts';
import { pageErrors, sendNotFound, sendPage, sendUnavailable } from '../pages/layout.ts';
import { csrfField, requireCsrf, type CsrfOptions } from '../pages/csrf.ts';
import { pageSecurity } from '../pages/security.ts';
import { endedPage, failedPage, progressPage, readyPage } from './pages.ts';
import { progressView } from './progress.ts';
import { cachedCheckoutSessions } from './sessionCache.ts';
import { keyRevealable, revealKeyOnce } from './reveal.ts';
import { findVisit, refreshVisit, type Visit } from './visit.ts';

const POLL_MS = 500;
/**
 * A stream ends after this long and the browser reconnects (after RETRY_MS) if it still waits: no connection is held
 * for long, so a web process that stops drains within its grace.
 */
const STREAM_MAX_MS = 25_000;
const RETRY_MS = 1_000;
/** A comment this often keeps proxies from closing a quiet stream. */
const KEEPALIVE_MS = 15_000;

export interface WelcomeDeps {
  config: Config;
  instances: Pick<Instances, 'byId' | 'forSubscription'>;
  steps: Pick<StepLedger, 'list'>;
  keyHandovers: Pick<KeyHandovers, 'claimReveal' | 'state'>;
  secrets: Pick<SecretStore, 'get' | 'delete'>;
  stripe: Pick<StripeGateway, 'checkoutSession'>;
}

export function welcomePages(deps: WelcomeDeps): Router {
  const router = new Router();
  router.use('/welcome', pageSecurity, pageErrors); // a prefix: /welcome/events too
  const visitDeps = { secretsKey: deps.config.secretsKey, instances: deps.instances, stripe: cachedCheckoutSessions(deps.stripe) };
  const csrf: CsrfOptions = { secretsKey: deps.config.secretsKey, production: deps.config.production };
  const accountUrl = `${deps.config.publicUrl}/account`;

  /** The visit, or an answer already sent (404, or 503 while Stripe cannot be asked). */
  async function visitOf(ctx: Context): Promise<Visit | null> {
    try {
      const visit = await findVisit(visitDeps, ctx.query);
      if (!visit) sendNotFound(ctx);
      return visit;
    } catch (err) {
      if (!(err instanceof TransientError)) throw err;
      sendUnavailable(ctx);
      return null;
    }
  }

  router.get('/welcome', async (ctx) => {
    const visit = await visitOf(ctx);
    if (!visit) return;
    const { instance } = visit;
    if (!instance || instance.status === 'provisioning') {
      return sendPage(ctx, 200, progressPage(await progressView(deps.steps, visit), `/welcome/events?${visit.query}`));
    }
    if (instance.status === 'failed' || instance.status === 'abandoned') return sendPage(ctx, 200, failedPage());
    if (isEnded(instance.status)) return sendPage(ctx, 200, endedPage());
    const offer = (await keyRevealable(deps, instance)) ? { action: `/welcome/key?${visit.query}`, csrf: csrfField(ctx, csrf) } : null;
    sendPage(ctx, 200, readyPage(instance, { offer }, accountUrl));
  });

  router.post('/welcome/key', requireCsrf(csrf), async (ctx) => {
    const visit = await visitOf(ctx);
    if (!visit) return;
    // Not ready (or no longer): the page as it is now says why.
    if (visit.instance?.status !== 'active') return ctx.redirect(`/welcome?${visit.query}`);
    sendPage(ctx, 200, readyPage(visit.instance, { key: await revealKeyOnce(deps, visit.instance) }, accountUrl));
  });

  router.get('/welcome/events', async (ctx) => {
    const first = await visitOf(ctx);
    if (!first) return;
    const stream = new PassThrough();
    ctx.status = 200;
    ctx.type = 'text/event-stream';
    ctx.set('X-Accel-Buffering', 'no');
    ctx.body = stream;

    let visit: Visit | null = first;
    let last = '';
    let quietSince = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const startedAt = Date.now();
    const stop = () => {
      clearTimeout(timer);
      stream.end();
    };
    ctx.req.once('close', stop);
    stream.write(`retry: ${RETRY_MS}\n\n`);
    const tick = async () => {
      try {
        visit = visit && (await refreshVisit(deps, visit));
        if (!visit) return stop();
        const view = await progressView(deps.steps, visit);
        if (stream.writableEnded) return; // the browser left while the ledger was read
        const data = JSON.stringify(view);
        if (data !== last) {
          stream.write(`event: progress\ndata: ${data}\n\n`);
          last = data;
          quietSince = Date.now();
        } else if (Date.now() - quietSince > KEEPALIVE_MS) {
          stream.write(': still working\n\n');
          quietSince = Date.now();
        }
        if (view.finished || Date.now() - startedAt > STREAM_MAX_MS) return stop();
        if (!stream.writableEnded) timer = setTimeout(tick, POLL_MS);
      } catch {
        stop(); // the browser reconnects, and the page still refreshes without it
      }
    };
    await tick();
  });

  return router;
}
