/**
 * The customer pages' layout: one HTML document with the page's own small style sheet (inline, under the response's
 * nonce), readable at phone width and in high contrast, and the plain error pages every customer page shares.
 */
import type { Context, Next } from 'koa';
import { logger } from '../../../core/logger.ts';
import { html, raw, type Html } from '../../html.ts';
import type { PageState } from './security.ts';

const log = logger('web');

// Contrast: body text #1f2937 on #ffffff (14:1), muted #4b5563 (7:1), links #1d4ed8 (6.7:1).
const STYLE = `
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1f2937;background:#f3f4f6}
main{max-width:40rem;margin:0 auto;padding:1.5rem 1rem}
.card{background:#fff;border-radius:.5rem;padding:1.25rem;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h1{font-size:1.5rem;margin:0 0 .75rem}
h2{font-size:1.125rem;margin:1.25rem 0 .5rem}
p{margin:.5rem 0}
.muted{color:#4b5563}
a{color:#1d4ed8}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
pre{background:#111827;color:#f9fafb;padding:.75rem;border-radius:.375rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:.75rem 0}
dt{font-weight:600}
dd{margin:0}
@media (max-width:30rem){dl{grid-template-columns:1fr}dd{margin-bottom:.5rem}}
ol.steps{list-style:none;padding:0;margin:1rem 0}
ol.steps li{display:flex;justify-content:space-between;gap:1rem;padding:.5rem 0;border-bottom:1px solid #e5e7eb}
ol.steps .state{font-weight:600;white-space:nowrap}
li[data-state=completed] .state{color:#047857}
li[data-state=running] .state,li[data-state=waiting] .state{color:#1d4ed8}
li[data-state=failed] .state{color:#b91c1c}
li[data-state=pending] .state{color:#4b5563}
.key{background:#fef3c7;border:2px solid #92400e;border-radius:.375rem;padding:.75rem;font-size:1.05rem}
.notice{border-left:4px solid #1d4ed8;padding:.25rem .75rem;background:#eff6ff}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input[type=email],input[type=text]{width:100%;padding:.5rem;font:inherit;border:1px solid #6b7280;border-radius:.25rem}
button{margin-top:.75rem;padding:.5rem 1rem;font:inherit;color:#fff;background:#1d4ed8;border:0;border-radius:.25rem;cursor:pointer}
:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
`;

export function layout(nonce: string, page: { title: string; body: Html; head?: Html; script?: string }): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>${page.title} · Clawdbot</title>
<style nonce="${nonce}">${raw(STYLE)}</style>
${page.head}
</head>
<body>
<main>
${page.body}
</main>
${page.script ? html`<script nonce="${nonce}">${raw(page.script)}</script>` : ''}
</body>
</html>
`;
}

/** Answers a page made with the layout under this response's nonce. */
export function sendPage(ctx: Context, status: number, page: { title: string; body: Html; head?: Html; script?: string }): void {
  ctx.status = status;
  ctx.type = 'text/html; charset=utf-8';
  ctx.body = layout((ctx.state as PageState).nonce, page).text;
}

/** The one plain "not found": the same for anything a visitor may not see, so it tells nothing. */
export function sendNotFound(ctx: Context): void {
  sendPage(ctx, 404, {
    title: 'Page not found',
    body: html`<div class="card"><h1>Page not found</h1><p>This link is not valid. If you just paid, check the link in your confirmation email.</p></div>`,
  });
}

export function sendForbidden(ctx: Context): void {
  sendPage(ctx, 403, {
    title: 'Form expired',
    body: html`<div class="card"><h1>This form has expired</h1><p>Go back, reload the page and try again.</p></div>`,
  });
}

/** Anything that went wrong while making a page: a plain page with its status; what went wrong goes to the log only. */
export async function pageErrors(ctx: Context, next: Next): Promise<void> {
  try {
    await next();
  } catch (err) {
    const status = (err as { status?: unknown }).status;
    const known = typeof status === 'number' && status >= 400 && status < 500;
    if (!known) log.error('page failed', { method: ctx.method, path: ctx.path, error: (err as Error).message });
    sendPage(ctx, known ? status : 500, {
      title: 'Something went wrong',
      body: html`<div class="card"><h1>Something went wrong</h1><p>${known ? 'This request could not be handled.' : 'We have been told. Please try again in a moment.'}</p></div>`,
    });
  }
}

export function sendUnavailable(ctx: Context): void {
  ctx.set('Retry-After', '10');
  sendPage(ctx, 503, {
    title: 'Try again shortly',
    head: html`<meta http-equiv="refresh" content="10">`,
    body: html`<div class="card"><h1>One moment</h1><p>We could not check your payment just now. This page tries again in a few seconds.</p></div>`,
  });
}
