/**
 * The customer's account pages end to end: a sign-in link by email (once, within 15 minutes, the same answer for an
 * unknown address and no mail), the session, usage from the customer's database, key rotation (the old key refused
 * within 2 s, the new one works, an audit row), Stripe's customer portal, CSRF on every form; and the page in
 * Chromium at phone width.
 */
import { expect } from 'chai';
import type { Browser } from 'playwright-core';
import { logTo } from '../../core/logger.ts';
import { tokenHash } from '../../src/db/accountAccess.ts';
import { launchBrowser, screenshot } from '../support/browser.ts';
import { startHarness, waitUntil, type Harness } from '../support/harness.ts';
import { provision, type Provisioned } from '../support/provision.ts';

/** A visitor: cookies kept between requests, redirects not followed. */
function visitor(h: Harness) {
  const jar = new Map<string, string>();
  const request = async (path: string, init: RequestInit = {}) => {
    const response = await fetch(`${h.url}${path}`, {
      ...init,
      redirect: 'manual',
      headers: { ...(init.headers as Record<string, string>), cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') },
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const [name, value] = pair!.split('=');
      if (value) jar.set(name!, value);
      else jar.delete(name!);
    }
    return { response, text: await response.text() };
  };
  const csrfOf = (page: string) => /name="_csrf" value="([^"]+)"/.exec(page)?.[1] ?? '';
  return {
    jar,
    get: (path: string) => request(path),
    /** Posts a form with the CSRF token of the page given (or none). */
    post: (path: string, fields: Record<string, string>, page?: string) =>
      request(path, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ ...(page === undefined ? {} : { _csrf: csrfOf(page) }), ...fields }).toString(),
      }),
  };
}

const LINK = /\/account\/sign-in\?token=([A-Za-z0-9_-]{43})/;

describe('account pages', function () {
  this.timeout(90_000);
  let h: Harness;
  let ann: Provisioned;

  /** Every log line of the control plane: what became of a sign-in request that sends no mail is said there. */
  const lines: string[] = [];
  const notSent = (outcome: string) => lines.filter((l) => l.includes('"sign-in link not sent"') && l.includes(outcome)).length;

  before(async () => {
    logTo({ write: (line: string) => lines.push(line) });
    h = await startHarness({ LOG_LEVEL: 'debug', LOG_FORMAT: 'json' });
    ann = await provision(h, 'ann@example.com', 'Ann Lee', 'pro');
  });
  after(async () => {
    logTo(undefined);
    await h?.close();
  });
  // Each test starts with no recent link (at most five are sent to one address within a link's lifetime).
  beforeEach(async () => h && (await h.db.query('DELETE FROM sign_in_links')));

  async function signIn(v: ReturnType<typeof visitor>, email = 'ann@example.com'): Promise<string> {
    const form = await v.get('/account');
    const before = h.smtp.messages.length;
    const sent = await v.post('/account/login', { email }, form.text);
    expect(sent.response.status).to.equal(200);
    const mail = await h.smtp.waitFor((m) => h.smtp.messages.indexOf(m) >= before && m.subject === 'Your Clawdbot sign-in link');
    return LINK.exec(mail.text)![1]!;
  }

  async function redeem(v: ReturnType<typeof visitor>, token: string) {
    const confirm = await v.get(`/account/sign-in?token=${token}`);
    return v.post('/account/sign-in', { token }, confirm.text);
  }

  it('signs in through a link that works once, and shows plan, usage, the key’s last four and quick-start lines', async () => {
    const v = visitor(h);
    const token = await signIn(v);
    const signedIn = await redeem(v, token);
    expect(signedIn.response.status).to.equal(303);
    expect(signedIn.response.headers.get('location')).to.equal('/account');
    const cookie = signedIn.response.headers.getSetCookie().find((c) => c.startsWith('session='))!;
    expect(cookie).to.match(/HttpOnly/i).and.match(/SameSite=Lax/i);

    const page = await v.get('/account');
    expect(page.response.headers.get('content-security-policy')).to.match(/default-src 'none'/);
    expect(page.text).to.include('ann@example.com').and.include('Pro').and.include(ann.view.accessUrl!);
    expect(page.text).to.include(`ending in ${ann.apiKey.slice(-4)}`);
    expect(page.text).to.match(/0 of 20,000/);
    expect(page.text.replace(/&#34;/g, '"')).to.include(`${ann.view.accessUrl}/api/chat`).and.include('"stream":true');
    expect(page.text).to.not.include(ann.apiKey);

    const again = await redeem(visitor(h), token);
    expect(again.response.status, 'a used link').to.equal(400);
    expect(again.text).to.include('no longer works');
  });

  it('counts this month’s messages from the customer’s database', async () => {
    const chat = await fetch(`${ann.view.accessUrl}/api/chat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ann.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'Hello' }),
    });
    expect(chat.status).to.equal(200);
    const v = visitor(h);
    await redeem(v, await signIn(v));
    expect((await v.get('/account')).text).to.match(/1 of 20,000/);
  });

  it('refuses an expired link, and answers an unknown address the same way without sending mail', async () => {
    const v = visitor(h);
    const token = await signIn(v);
    await h.db.query(`UPDATE sign_in_links SET expires_at = now() - interval '1 second' WHERE token_hash = $1`, [tokenHash(token)]);
    expect((await redeem(v, token)).response.status).to.equal(400);

    const mailsBefore = h.smtp.messages.length;
    const known = await v.post('/account/login', { email: 'ann@example.com' }, (await v.get('/account')).text);
    // The known address's link is sent (and made) before the next test counts links.
    await h.smtp.waitFor((m) => h.smtp.messages.indexOf(m) >= mailsBefore && m.subject === 'Your Clawdbot sign-in link');
    const refusedBefore = notSent('no customer with that address');
    const unknown = await v.post('/account/login', { email: 'nobody@example.com' }, (await v.get('/account')).text);
    expect(unknown.response.status).to.equal(known.response.status);
    const bodyOf = (text: string) => text.replace(/nonce="[^"]+"/g, '');
    expect(bodyOf(unknown.text)).to.equal(bodyOf(known.text));
    await waitUntil(async () => notSent('no customer with that address') === refusedBefore + 1);
    expect(h.smtp.messages.slice(mailsBefore).filter((m) => m.to.includes('nobody@example.com'))).to.deep.equal([]);
    expect(lines.join('\n'), 'the address asked for is not logged').to.not.include('nobody@example.com');
  });

  it('sends at most five links to one address within 15 minutes, answering every request the same', async () => {
    const v = visitor(h);
    const before = h.smtp.messages.length;
    const limitedBefore = notSent('enough were sent lately');
    const answers = [];
    for (let i = 0; i < 7; i++) answers.push((await v.post('/account/login', { email: 'ann@example.com' }, (await v.get('/account')).text)).text.replace(/nonce="[^"]+"/g, ''));
    expect(new Set(answers).size, 'one answer').to.equal(1);
    await waitUntil(async () => notSent('enough were sent lately') === limitedBefore + 2);
    await waitUntil(async () => h.smtp.messages.slice(before).filter((m) => m.subject === 'Your Clawdbot sign-in link').length >= 5);
    expect(h.smtp.messages.slice(before).filter((m) => m.subject === 'Your Clawdbot sign-in link')).to.have.length(5);
  });

  it('refuses every form without its CSRF token or with a wrong one, changing nothing', async () => {
    const v = visitor(h);
    const token = await signIn(v);
    expect((await v.post('/account/sign-in', { token })).response.status, 'no token').to.equal(403);
    expect((await v.post('/account/sign-in', { token, _csrf: 'forged' })).response.status, 'wrong token').to.equal(403);
    expect((await redeem(v, token)).response.status, 'the link still works').to.equal(303);
    const page = (await v.get('/account')).text;
    const labelBefore = (await h.db.query('SELECT api_key_label FROM instances WHERE id = $1', [ann.instanceId])).rows[0].api_key_label;
    expect((await v.post('/account/rotate-key', {})).response.status).to.equal(403);
    expect((await v.post('/account/logout', { _csrf: 'forged' })).response.status).to.equal(403);
    expect((await h.db.query('SELECT api_key_label FROM instances WHERE id = $1', [ann.instanceId])).rows[0].api_key_label).to.equal(labelBefore);
    expect((await v.get('/account')).text, 'still signed in').to.include('Sign out');
    expect(page).to.include('Rotate key');
  });

  it('rotates the key from the account page: shown once, the old key refused within 2 s, audited', async () => {
    const v = visitor(h);
    await redeem(v, await signIn(v));
    const rotated = await v.post('/account/rotate-key', {}, (await v.get('/account')).text);
    expect(rotated.response.status).to.equal(200);
    expect(rotated.response.headers.get('cache-control')).to.equal('no-store');
    const key = /id="new-key">(claw_[0-9A-Za-z]{43})</.exec(rotated.text)?.[1];
    expect(key, 'the new key on the page').to.be.a('string');

    const status = (k: string) => fetch(`${ann.view.accessUrl}/status`, { headers: { authorization: `Bearer ${k}` } }).then((r) => r.status);
    expect(await status(key!)).to.equal(200);
    const rotatedAt = Date.now();
    await waitUntil(async () => (await status(ann.apiKey)) === 401, 2_500);
    expect(Date.now() - rotatedAt).to.be.lessThan(2_500);
    const later = (await v.get('/account')).text;
    expect(later).to.include(`ending in ${key!.slice(-4)}`).and.not.include(key!);
    const { rows } = await h.db.query(`SELECT actor, detail FROM audit WHERE instance_id = $1 AND action = 'api_key.rotated'`, [ann.instanceId]);
    expect(rows.map((r) => r.actor)).to.include('customer');
    expect(JSON.stringify(rows)).to.not.include(key!);
    ann.apiKey = key!;
  });

  it('opens Stripe’s customer portal for the signed-in customer, and signs out', async () => {
    const v = visitor(h);
    await redeem(v, await signIn(v));
    const page = (await v.get('/account')).text;
    const portal = await v.post('/account/billing', {}, page);
    expect(portal.response.status).to.equal(303);
    const session = h.stripe.portalSessions.at(-1)!;
    expect(portal.response.headers.get('location')).to.equal(session.url);
    expect(session.customer, 'the Stripe customer').to.equal(ann.customerId);
    expect(session.return_url).to.equal(`${h.config.publicUrl}/account`);

    expect((await v.post('/account/logout', {}, page)).response.status).to.equal(303);
    expect((await v.get('/account')).text, 'signed out').to.include('Email me a sign-in link');
    expect((await v.post('/account/billing', {}, page)).response.status, 'no session: back to sign-in').to.equal(302);
  });

  describe('in Chromium', () => {
    let browser: Browser;
    before(async () => (browser = await launchBrowser()));
    after(async () => browser?.close());

    it('signs in by the emailed link and shows the account at phone width, with no script or style refused', async () => {
      const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
      const refused: string[] = [];
      page.on('console', (m) => m.type() === 'error' && /Content Security Policy/i.test(m.text()) && refused.push(m.text()));
      page.on('response', (r) => r.status() >= 400 && !r.url().endsWith('/favicon.ico') && refused.push(`${r.status()} ${r.url()}`));
      await page.goto(`${h.url}/account`);
      await page.getByLabel('Email address').fill('ann@example.com');
      const before = h.smtp.messages.length;
      await page.getByRole('button', { name: 'Email me a sign-in link' }).click();
      await page.getByText('Check your email').waitFor();
      const mail = await h.smtp.waitFor((m) => h.smtp.messages.indexOf(m) >= before && m.subject === 'Your Clawdbot sign-in link');
      await page.goto(`${h.url}/account/sign-in?token=${LINK.exec(mail.text)![1]}`);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByText('Messages this month').waitFor();
      expect(await page.locator('#key-last-four').textContent()).to.include(ann.apiKey.slice(-4));
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      expect(width, 'no sideways scrolling at phone width').to.be.at.most(390);
      await screenshot(page, 'account-page');
      expect(refused, 'the CSP refused nothing and nothing failed to load').to.deep.equal([]);
    });
  });
});
