/** The customer pages' framework on a tiny app: escaping, the CSP with its nonce, and CSRF on a form. */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Router from '@koa/router';
import { expect } from 'chai';
import { html, raw } from '../../src/html.ts';
import { csrfField, requireCsrf, type CsrfOptions } from '../../src/web/pages/csrf.ts';
import { sendPage } from '../../src/web/pages/layout.ts';
import { pageSecurity } from '../../src/web/pages/security.ts';
import { listen } from '../support/routerApp.ts';

const OPTIONS: CsrfOptions = { secretsKey: Buffer.alloc(32, 3), production: false };

describe('customer pages framework', () => {
  let server: Server;
  let base: string;

  before(async () => {
    const router = new Router();
    router.use(pageSecurity);
    router.get('/form', (ctx) => {
      const name = typeof ctx.query.name === 'string' ? ctx.query.name : '';
      sendPage(ctx, 200, {
        title: 'Form',
        body: html`<p id="greeting">Hello ${name}</p><form method="post" action="/form">${csrfField(ctx, OPTIONS)}<label for="email">Email</label><input id="email" name="email" type="email"><button>Send</button></form>`,
        script: 'document.body.dataset.ready = "yes";',
      });
    });
    router.post('/form', requireCsrf(OPTIONS), (ctx) => {
      const form = (ctx.state as { form: URLSearchParams }).form;
      sendPage(ctx, 200, { title: 'Sent', body: html`<p>Sent to ${form.get('email') ?? ''}</p>` });
    });
    server = await listen(router);
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('escapes every interpolated value, and only raw() markup goes in as is', () => {
    expect(html`<p title="${'"x"'}">${'<script>&'}</p>${raw('<br>')}`.text).to.equal('<p title="&#34;x&#34;">&#60;script&#62;&#38;</p><br>');
    expect(html`${['<a>', html`<b>`]}${null}${false}${7}`.text).to.equal('&#60;a&#62;<b>7');
  });

  it('serves a page under a strict CSP whose nonce is that response’s own, with its inline style and script', async () => {
    const [a, b] = await Promise.all([fetch(`${base}/form?name=%3Cimg%20src=x%3E`), fetch(`${base}/form`)]);
    const csp = a.headers.get('content-security-policy')!;
    const nonce = /script-src 'nonce-([^']+)'/.exec(csp)![1]!;
    expect(csp).to.include("default-src 'none'").and.include(`style-src 'nonce-${nonce}'`).and.not.include('unsafe');
    expect(b.headers.get('content-security-policy')).to.not.include(nonce);
    expect(a.headers.get('cache-control')).to.equal('no-store');
    expect(a.headers.get('referrer-policy')).to.equal('no-referrer');
    const body = await a.text();
    expect(body).to.include(`<script nonce="${nonce}">`).and.include(`<style nonce="${nonce}">`);
    expect(body).to.include('Hello &#60;img src=x&#62;').and.not.include('<img');
  });

  it('accepts a form with its token and refuses a missing or wrong one, or one without its cookie, with a 403 page', async () => {
    const page = await fetch(`${base}/form`);
    const cookie = page.headers.get('set-cookie')!.split(';')[0]!;
    expect(page.headers.get('set-cookie')).to.match(/httponly/i).and.match(/samesite=lax/i);
    const token = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
    const post = (body: string, withCookie = true) =>
      fetch(`${base}/form`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...(withCookie && { cookie }) },
        body,
      });

    const ok = await post(`_csrf=${encodeURIComponent(token)}&email=ann%40example.com`);
    expect(ok.status).to.equal(200);
    expect(await ok.text()).to.include('Sent to ann@example.com');
    for (const [what, response] of [
      ['missing', await post('email=ann%40example.com')],
      ['wrong', await post(`_csrf=${token.slice(0, -2)}AA&email=ann%40example.com`)],
      ['without its cookie', await post(`_csrf=${encodeURIComponent(token)}`, false)],
    ] as const) {
      expect(response.status, what).to.equal(403);
      const body = await response.text();
      expect(body, what).to.include('This form has expired');
      expect(response.headers.get('content-type'), what).to.include('text/html');
    }
  });
});
