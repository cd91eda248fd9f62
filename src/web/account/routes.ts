/**
 * The customer's account pages: GET /account (the account when signed in, else a form asking for an email), a
 * single-use sign-in link by email (the same answer for any address), a session cookie (HttpOnly, SameSite=Lax,
 * Secure and host-bound in production), key rotation, Stripe's customer portal, sign-out. Every form carries a CSRF
 * token; every page the strict CSP of the customer pages.
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import { apiKeyLabel, generateApiKey, hashApiKey } from '../../../core/apiKey.ts';
import { planByName } from '../../../core/plans.ts';
import { logger } from '../../../core/logger.ts';
import type { Config } from '../../config.ts';
import type { AccountAccess } from '../../db/accountAccess.ts';
import type { CustomerDatabases } from '../../db/customerDatabases.ts';
import type { InstanceLocks } from '../../db/instanceLocks.ts';
import type { Instances, InstanceWithCustomer } from '../../db/instances.ts';
import { signInEmail } from '../../emails/customerEmails.ts';
import { KEY_ROTATION_STATUSES } from '../../jobs/lifecycle/rotateKey.ts';
import type { StripeGateway } from '../../providers/stripe.ts';
import type { Mailer } from '../../providers/types.ts';
import { html } from '../../html.ts';
import { csrfField, requireCsrf, type CsrfOptions } from '../pages/csrf.ts';
import { pageErrors, sendPage } from '../pages/layout.ts';
import { pageSecurity } from '../pages/security.ts';
import { accountPage, confirmSignInPage, linkRefusedPage, linkSentPage, signInPage, type AccountView } from './pages.ts';

const log = logger('account');
const SIGN_IN_LINK_MS = 15 * 60_000;
const SIGN_IN_LINK_MINUTES = SIGN_IN_LINK_MS / 60_000;
/** Links sent to one customer within SIGN_IN_LINK_MS at most. */
const SIGN_IN_LINKS = 5;
const SESSION_MS = 7 * 86_400_000;
const EMAIL = /^[^@\s<>"]{1,64}@[^@\s<>"]{1,253}$/;

export interface AccountDeps {
  config: Config;
  accountAccess: AccountAccess;
  instances: Pick<Instances, 'forCustomer' | 'recordKeyRotation'>;
  customerDbs: Pick<CustomerDatabases, 'monthMessages' | 'replaceKeys' | 'exists'>;
  locks: InstanceLocks;
  mailer: Mailer;
  stripe: Pick<StripeGateway, 'billingPortalUrl'>;
}

const sessionCookie = (production: boolean) => (production ? '__Host-session' : 'session');

export function accountPages(deps: AccountDeps): Router {
  const router = new Router({ prefix: '/account' });
  router.use(pageSecurity, pageErrors);
  const csrf: CsrfOptions = { secretsKey: deps.config.secretsKey, production: deps.config.production };
  const form = (ctx: Context) => (ctx.state as { form: URLSearchParams }).form;
  const cookie = sessionCookie(deps.config.production);

  /** The signed-in customer's newest instance, or null (not signed in, or nothing to show). */
  async function signedIn(ctx: Context): Promise<InstanceWithCustomer | null> {
    const token = ctx.cookies.get(cookie);
    const customerId = token ? await deps.accountAccess.sessionCustomer(token) : undefined;
    return customerId ? ((await deps.instances.forCustomer(customerId)) ?? null) : null;
  }

  async function view(instance: InstanceWithCustomer): Promise<AccountView> {
    const plan = planByName(instance.plan ?? '');
    const usage = plan && (await deps.customerDbs.exists(instance.id))
      ? { used: await deps.customerDbs.monthMessages(instance.id, new Date()).catch(() => NaN), limit: plan.messageLimit }
      : null;
    return {
      email: instance.email ?? '',
      plan: plan?.title ?? instance.plan ?? 'none',
      status: instance.status,
      accessUrl: instance.access_url,
      workspaceId: instance.workspace_id,
      keyLabel: instance.api_key_label,
      usage: usage && Number.isFinite(usage.used) ? usage : null,
    };
  }

  router.get('/', async (ctx) => {
    const instance = await signedIn(ctx);
    if (!instance) return sendPage(ctx, 200, signInPage(csrfField(ctx, csrf)));
    sendPage(ctx, 200, accountPage(await view(instance), csrfField(ctx, csrf)));
  });

  router.post('/login', requireCsrf(csrf), async (ctx) => {
    const email = (form(ctx).get('email') ?? '').trim();
    if (!EMAIL.test(email)) return sendPage(ctx, 400, signInPage(csrfField(ctx, csrf), 'That does not look like an email address.'));
    // Sent after answering, and the same answer for anyone: neither the page nor its timing tells who is a customer.
    void sendSignInLink(deps, email).catch((err: Error) => log.warn('sign-in link not sent', { error: err.message }));
    sendPage(ctx, 200, linkSentPage(SIGN_IN_LINK_MINUTES));
  });

  router.get('/sign-in', async (ctx) => {
    const token = typeof ctx.query.token === 'string' ? ctx.query.token : '';
    sendPage(ctx, 200, confirmSignInPage(csrfField(ctx, csrf), token));
  });

  router.post('/sign-in', requireCsrf(csrf), async (ctx) => {
    const customerId = await deps.accountAccess.redeemSignInLink(form(ctx).get('token') ?? '');
    if (!customerId) return sendPage(ctx, 400, linkRefusedPage(SIGN_IN_LINK_MINUTES));
    const session = await deps.accountAccess.createSession(customerId, SESSION_MS);
    ctx.cookies.set(cookie, session, { httpOnly: true, sameSite: 'lax', secure: deps.config.production, path: '/', maxAge: SESSION_MS, overwrite: true });
    ctx.redirect('/account');
    ctx.status = 303;
  });

  router.post('/rotate-key', requireCsrf(csrf), async (ctx) => {
    const signedInAs = await signedIn(ctx);
    if (!signedInAs) return ctx.redirect('/account');
    const key = generateApiKey();
    const rotated = { hash: hashApiKey(key), label: apiKeyLabel(key) };
    // Under the instance's lifecycle lock, as a cancellation, a suspension or an operator's rotation: never crossed.
    const locked = await deps.locks.withLock(signedInAs.id, async () => {
      const instance = await deps.instances.forCustomer(signedInAs.customer_id);
      if (!instance || instance.id !== signedInAs.id || !KEY_ROTATION_STATUSES.includes(instance.status)) return instance?.status ?? 'gone';
      await deps.customerDbs.replaceKeys(instance.id, rotated);
      // The new key is live from here on: the customer sees it even if recording it fails (then logged).
      await deps.instances
        .recordKeyRotation(instance.id, rotated, { actor: 'customer', detail: { via: 'account page' } })
        .catch((err: Error) => log.error('a rotated key was not recorded', { instance: instance.id, error: err.message }));
      return instance;
    });
    const instance = locked.ran ? locked.value : 'busy';
    if (typeof instance === 'string') {
      const why = instance === 'busy' ? 'Something else is changing your Clawdbot right now; try again in a minute.' : `Your Clawdbot is ${instance}.`;
      return sendPage(ctx, 409, { title: 'Not now', body: html`<div class="card"><h1>Your key cannot be rotated now</h1><p>${why}</p><p><a href="/account">Back</a></p></div>` });
    }
    sendPage(ctx, 200, accountPage({ ...(await view(instance)), keyLabel: rotated.label }, csrfField(ctx, csrf), key));
  });

  router.post('/billing', requireCsrf(csrf), async (ctx) => {
    const instance = await signedIn(ctx);
    if (!instance) return ctx.redirect('/account');
    if (!instance.stripe_customer_id) {
      return sendPage(ctx, 409, { title: 'No billing', body: html`<div class="card"><h1>Nothing to bill</h1><p>Your account is complimentary: there is no subscription to change.</p><p><a href="/account">Back</a></p></div>` });
    }
    ctx.redirect(await deps.stripe.billingPortalUrl(instance.stripe_customer_id, `${deps.config.publicUrl}/account`));
    ctx.status = 303;
  });

  router.post('/logout', requireCsrf(csrf), async (ctx) => {
    const token = ctx.cookies.get(cookie);
    if (token) await deps.accountAccess.endSession(token);
    ctx.cookies.set(cookie, '', { httpOnly: true, sameSite: 'lax', secure: deps.config.production, path: '/', maxAge: 0, overwrite: true });
    ctx.redirect('/account');
    ctx.status = 303;
  });

  return router;
}

/** Sends a sign-in link if the address is a customer's; says at debug what became of the request (never the address). */
async function sendSignInLink(deps: AccountDeps, email: string): Promise<void> {
  const customer = await deps.accountAccess.customerByEmail(email);
  if (!customer) return log.debug('sign-in link not sent', { outcome: 'no customer with that address' });
  const instance = await deps.instances.forCustomer(customer.id);
  const token = await deps.accountAccess.createSignInLink(customer.id, SIGN_IN_LINK_MS, SIGN_IN_LINKS);
  if (!token) return log.info('sign-in link not sent', { outcome: 'enough were sent lately', customer: customer.id });
  const { subject, text } = signInEmail({ name: instance?.customer_name ?? null, link: `${deps.config.publicUrl}/account/sign-in?token=${token}`, validMinutes: SIGN_IN_LINK_MINUTES });
  await deps.mailer.send({ to: customer.email, subject, text });
}
