/**
 * The welcome page after checkout, in real headless Chromium (test/support/browser.ts) against a whole control plane:
 * live progress, the key revealed once (at the press of a button, never by a page load) and working against the
 * runtime, the same 404 for every session that is not this customer's paid one, the CSP, and the welcome email's
 * HTML part. Screenshots go to test-artifacts/.
 */
import { expect } from 'chai';
import type { Browser, Page } from 'playwright-core';
import { logTo } from '../../core/logger.ts';
import { DEFAULT_PRICE_IDS } from '../../core/plans.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../src/instances/secrets.ts';
import { launchBrowser, screenshot } from '../support/browser.ts';
import { dumpKeys, startHarness, waitUntil, type Harness } from '../support/harness.ts';

const KEY = /claw_[0-9A-Za-z]{43}/;

/** The step states the page shows now; null while it navigates (a reload for the final state). */
async function stepStates(page: Page): Promise<string[] | null> {
  try {
    return await page.$$eval('ol.steps li', (items) => items.map((li) => li.getAttribute('data-state') ?? ''));
  } catch {
    return null;
  }
}

/**
 * What a visitor without a browser gets by pressing the page's "Show my API key" button: the ready page's form
 * (its CSRF cookie and field) posted back. Undefined when the page offers no such form.
 */
async function pressShowKey(url: string): Promise<string | undefined> {
  const page = await fetch(url);
  const body = await page.text();
  const form = /<form method="post" action="([^"]+)"><input type="hidden" name="_csrf" value="([^"]+)">/.exec(body);
  if (!form) return undefined;
  const cookie = page.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const action = new URL(form[1]!.replaceAll('&amp;', '&'), url);
  const posted = await fetch(action, {
    method: 'POST',
    headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ _csrf: form[2]! }).toString(),
  });
  return posted.text();
}

/** A page's body with its nonces blanked, to compare two answers. */
const withoutNonces = (body: string) => body.replace(/nonce="[^"]+"/g, 'nonce=""');

describe('the welcome page in Chromium', function () {
  this.timeout(120_000);
  let h: Harness;
  let browser: Browser;

  before(async () => {
    [h, browser] = await Promise.all([startHarness(), launchBrowser()]);
  });

  after(async () => {
    await browser?.close();
    await h?.close();
  });

  let sessionId: string;
  let subscriptionId: string;
  let apiKey: string;

  it('shows the steps advancing right after checkout, then the key once at the customer’s request, which works against the runtime', async () => {
    const paid = h.checkout({ email: 'wendy@example.com', name: 'Wendy Ortiz', plan: 'pro' });
    ({ sessionId, subscriptionId } = paid);

    // Stripe redirects at once, before its webhook arrives: the page is open first, so every step is seen live
    // however fast the provisioning runs on a loaded machine.
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } }); // a phone's width
    let loads = 0;
    page.on('load', () => loads++);
    const response = (await page.goto(`${h.url}/welcome?session_id=${sessionId}`))!;
    expect(response.status()).to.equal(200);
    const csp = response.headers()['content-security-policy']!;
    expect(csp).to.include("default-src 'none'").and.match(/script-src 'nonce-[A-Za-z0-9+/=]+'/);
    expect(csp).to.not.include('unsafe-inline');
    // Without JavaScript the page refreshes itself.
    expect(await response.text()).to.include('<noscript><meta http-equiv="refresh" content="5"></noscript>');
    const first = (await stepStates(page))!;
    expect(first).to.have.length(7);
    expect((await h.deliver(paid.event)).status).to.equal(200);

    // Live: the same page load (no refresh) shows a state between the first one and the end.
    let intermediate: string[] | null = null;
    await waitUntil(async () => {
      const states = await stepStates(page);
      if (loads > 1 || !states) return true;
      if (states.includes('completed') && states.at(-1) !== 'completed' && states.join() !== first.join()) {
        intermediate ??= states;
        if (intermediate === states) await screenshot(page, 'welcome-progress');
      }
      return false;
    }, 60_000);
    expect(intermediate, 'a step seen done while later ones were not, without a reload').to.not.equal(null);

    // Done: the page reloaded itself and offers the key; loading it used nothing up (a mail scanner's visit would not).
    await page.waitForSelector('#show-key', { timeout: 60_000 });
    await screenshot(page, 'welcome-ready');
    const ready = await h.waitForStatus(paid.customerId, ['active']);
    expect(await h.plane.ctx.secrets.get(instanceOwner(ready.instanceId), INSTANCE_SECRETS.pendingApiKey)).to.match(KEY);
    expect((await h.plane.ctx.keyHandovers.state(ready.instanceId))?.revealed).to.not.equal(true);

    // Pressed: the key, the access URL and the workspace id.
    await Promise.all([page.waitForNavigation(), page.click('#show-key')]);
    await page.waitForSelector('#api-key');
    await screenshot(page, 'welcome-done');
    apiKey = (await page.textContent('#api-key'))!.trim();
    expect(apiKey).to.match(KEY);
    const accessUrl = (await page.getAttribute('#access-url', 'href'))!;
    const workspaceId = (await page.textContent('#workspace-id'))!.trim();
    const view = await h.waitForStatus(paid.customerId, ['active']);
    expect(accessUrl).to.equal(view.accessUrl);
    expect(workspaceId).to.equal(view.workspaceId);
    const status = await fetch(`${accessUrl}/status`, { headers: { authorization: `Bearer ${apiKey}` } });
    expect(status.status).to.equal(200);

    // The same key as the email's; the sealed copy is gone now that both have had it.
    const mail = await h.smtp.waitFor((m) => m.to.includes('wendy@example.com') && m.subject === 'Your Clawdbot is ready');
    expect(KEY.exec(mail.text)?.[0]).to.equal(apiKey);
    expect(await h.plane.ctx.secrets.get(instanceOwner(view.instanceId), INSTANCE_SECRETS.pendingApiKey)).to.equal(null);

    // Stripe was asked about the paid session once, whatever the visits, reloads, stream reconnects and the press.
    expect(h.stripe.calls.filter((c) => c.path === `/v1/checkout/sessions/${sessionId}`)).to.have.length(1);

    // The page again shows only the last four, and the key is in no page source and no Redis value any more.
    await page.goto(`${h.url}/welcome?session_id=${sessionId}`);
    expect((await page.textContent('#key-ending'))!).to.include(apiKey.slice(-4));
    expect(await page.$('#show-key')).to.equal(null);
    expect(await page.content()).to.not.include(apiKey);
    expect(await (await fetch(`${h.url}/welcome?session_id=${sessionId}`)).text()).to.not.include(apiKey);
    expect((await dumpKeys(h.redis, `${h.config.queuePrefix}:*`)).join('\n')).to.not.include(apiKey);
    await page.close();
  });

  it('streams the progress as server-sent events, ending once the instance is active, never with the key', async () => {
    const response = await fetch(`${h.url}/welcome/events?session_id=${sessionId}`);
    expect(response.status).to.equal(200);
    expect(response.headers.get('content-type')).to.include('text/event-stream');
    const text = await response.text(); // the stream ends by itself: the instance is active
    expect(text).to.match(/^retry: \d+\n\n/);
    const events = text.split('\n\n').filter((e) => e.startsWith('event: progress'));
    expect(events).to.have.length(1);
    const view = JSON.parse(events[0]!.split('\ndata: ')[1]!) as { status: string; finished: boolean; steps: { state: string }[] };
    expect(view).to.include({ status: 'active', finished: true });
    expect(view.steps.every((step) => step.state === 'completed')).to.equal(true);
    expect(text).to.not.include(apiKey);
  });

  it('answers a comped customer’s welcome link from the admin API, which shows progress and then the key once', async () => {
    const created = await h.admin('/api/admin/provision', { method: 'POST', body: JSON.stringify({ email: 'carl@example.com', plan: 'starter' }) });
    expect(created.status).to.equal(202);
    const { welcomeUrl, customerId } = (await created.json()) as { welcomeUrl: string; customerId: string };
    expect(welcomeUrl.startsWith(`${h.config.publicUrl}/welcome?token=`)).to.equal(true);
    const local = welcomeUrl.replace(h.config.publicUrl, h.url);
    const early = await fetch(local);
    expect(early.status).to.equal(200);
    await h.waitForStatus(customerId, ['active']);
    // Visits show no key, however many; the first press of the button does, once.
    const visits = [await (await fetch(local)).text(), await (await fetch(local)).text()];
    expect(visits.join()).to.not.match(KEY);
    const key = KEY.exec((await pressShowKey(local)) ?? '')?.[0];
    expect(key, 'the first press shows the key').to.be.a('string');
    expect(await pressShowKey(local), 'no button once the key was shown').to.equal(undefined);
    const after = await (await fetch(local)).text();
    expect(after).to.not.include(key!);
    expect(after).to.include(`<code>${key!.slice(-4)}</code>`);
  });

  it('answers the same plain 404 for an unknown, malformed, unpaid or another customer’s session, and a forged link', async () => {
    const stranger = h.stripe.createCustomer({ email: 'eve@example.com', name: 'Eve' });
    const unpaidSub = h.stripe.createSubscription({ customer: stranger.id, price: DEFAULT_PRICE_IDS.starter });
    const unpaid = h.stripe.createCheckoutSession({ customer: stranger.id, subscription: unpaidSub.id, payment_status: 'unpaid' });
    // A session naming Wendy's subscription for someone else: not Wendy's checkout.
    const crossed = h.stripe.createCheckoutSession({ customer: stranger.id, subscription: subscriptionId });
    const queries = [
      'session_id=cs_test_' + 'a'.repeat(58),
      'session_id=not-a-session',
      `session_id=${unpaid.id}`,
      `session_id=${crossed.id}`,
      'token=00000000-0000-0000-0000-000000000000.AAAA',
      '',
    ];
    const bodies = new Set<string>();
    for (const query of queries) {
      const response = await fetch(`${h.url}/welcome?${query}`);
      expect(response.status, query).to.equal(404);
      expect(response.headers.get('content-security-policy'), query).to.include("default-src 'none'");
      bodies.add(withoutNonces(await response.text()));
    }
    expect(bodies.size).to.equal(1);
    expect([...bodies][0]).to.include('Page not found').and.not.include('Wendy');
    const events = await fetch(`${h.url}/welcome/events?session_id=${crossed.id}`);
    expect(events.status).to.equal(404);

    // A paid checkout whose webhook has not been handled yet (Stripe redirects at once) waits for it instead.
    const early = h.checkout({ email: 'early@example.com' });
    const waiting = await fetch(`${h.url}/welcome?session_id=${early.sessionId}`);
    expect(waiting.status).to.equal(200);
    expect(await waiting.text()).to.include('being set up');
  });

  it('tells calmly that operators were told when the provisioning failed, with no detail of the error', async () => {
    // A price that is none of this product's plans: the intake fails the instance with a reason for operators.
    const paid = h.checkout({ email: 'frank@example.com', price: 'price_not_ours' });
    await h.deliver(paid.event);
    expect((await h.waitForStatus(paid.customerId, ['failed', 'active'], 60_000)).status).to.equal('failed');
    const response = await fetch(`${h.url}/welcome?session_id=${paid.sessionId}`);
    expect(response.status).to.equal(200);
    const body = await response.text();
    expect(body).to.include('Our operators have been told');
    expect(body).to.not.match(/price_not_ours|resolve-plan|Error|at .*\.ts/);
    expect(body).to.not.match(KEY);
  });

  it('sends a welcome email whose HTML part shows the access URL and the account link in a browser', async () => {
    const mail = await h.smtp.waitFor((m) => m.to.includes('wendy@example.com') && m.subject === 'Your Clawdbot is ready');
    const view = await h.waitForStatus((await h.db.query('SELECT stripe_customer_id FROM customers WHERE email = $1', ['wendy@example.com'])).rows[0].stripe_customer_id, ['active']);
    expect(mail.text).to.include(view.accessUrl!);
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
    const remote: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith('data:') && request.url() !== 'about:blank') remote.push(request.url());
    });
    await page.setContent(mail.html!);
    await screenshot(page, 'welcome-email');
    expect(remote, 'no remote assets').to.deep.equal([]);
    const links = await page.$$eval('a', (as) => as.map((a) => a.getAttribute('href')));
    expect(links).to.include(view.accessUrl).and.include(`${h.config.publicUrl}/account`);
    expect(await page.textContent('body')).to.include(view.workspaceId).and.include(apiKey);
    await page.close();
  });
});

describe('the welcome page with KEY_IN_EMAIL=false', function () {
  this.timeout(120_000);
  let h: Harness;
  let browser: Browser;

  /** Every log line of the control plane meanwhile, debug ones included. */
  const lines: string[] = [];

  before(async () => {
    logTo({ write: (line: string) => lines.push(line) });
    [h, browser] = await Promise.all([startHarness({ KEY_IN_EMAIL: 'false', LOG_LEVEL: 'debug', LOG_FORMAT: 'json' }), launchBrowser()]);
  });

  after(async () => {
    logTo(undefined);
    await browser?.close();
    await h?.close();
  });

  it('emails a link instead of the key, and the page it opens reveals the key to one of two concurrent visits, never logged', async () => {
    const { customerId, event } = h.checkout({ email: 'omar@example.com', name: 'Omar Haddad' });
    await h.deliver(event);
    const view = await h.waitForStatus(customerId, ['active', 'failed']);
    expect(view.status).to.equal('active');
    const mail = await h.smtp.waitFor((m) => m.to.includes('omar@example.com') && m.subject === 'Your Clawdbot is ready');
    expect(mail.text).to.not.match(KEY);
    expect(mail.html).to.not.match(KEY);

    // Not revealed yet: the key stays sealed (for KEY_REVEAL_WINDOW after the email) for the page to show.
    expect(await h.plane.ctx.secrets.get(instanceOwner(view.instanceId), INSTANCE_SECRETS.pendingApiKey)).to.match(KEY);

    // The final state needs no JavaScript.
    const page = await browser.newPage({ viewport: { width: 390, height: 844 }, javaScriptEnabled: false });
    await page.setContent(mail.html!);
    await screenshot(page, 'welcome-email-without-key');
    const link = (await page.getAttribute('a:has-text("Show my key")', 'href'))!;
    expect(link.startsWith(`${h.config.publicUrl}/welcome?token=`)).to.equal(true);
    const local = link.replace(h.config.publicUrl, h.url);

    // The browser's press and another client's at once: exactly one of them gets the key.
    await page.goto(local);
    const [, other] = await Promise.all([Promise.all([page.waitForNavigation(), page.click('#show-key')]), pressShowKey(local)]);
    const shown = [await page.content(), other ?? ''].map((body) => KEY.exec(body)?.[0]).filter(Boolean);
    expect(shown).to.have.length(1);
    const status = await fetch(`${view.accessUrl}/status`, { headers: { authorization: `Bearer ${shown[0]}` } });
    expect(status.status).to.equal(200);
    expect(await h.plane.ctx.secrets.get(instanceOwner(view.instanceId), INSTANCE_SECRETS.pendingApiKey)).to.equal(null);
    await page.goto(local);
    expect(await page.content()).to.not.include(shown[0]!);
    expect((await page.textContent('#key-ending'))!).to.include(shown[0]!.slice(-4));
    await page.close();
    expect(lines.length).to.be.above(0);
    expect(lines.join('\n')).to.not.include(shown[0]!);
    expect((await dumpKeys(h.redis, `${h.config.queuePrefix}:*`)).join('\n')).to.not.include(shown[0]!);
  });
});
