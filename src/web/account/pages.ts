/** What the account pages show: the sign-in form, the "check your email" answer, the account itself, a new key. */
import { keyEnding } from '../../../core/apiKey.ts';
import { html, type Html } from '../../html.ts';

type Page = { title: string; body: Html };

export function signInPage(csrf: Html, notice?: string): Page {
  return {
    title: 'Sign in',
    body: html`<div class="card">
<h1>Your Clawdbot account</h1>
${notice ? html`<p class="notice">${notice}</p>` : ''}
<p>Enter the email address you subscribed with. We send a link that signs you in.</p>
<form method="post" action="/account/login">
${csrf}
<label for="email">Email address</label>
<input id="email" name="email" type="email" autocomplete="email" required>
<button type="submit">Email me a sign-in link</button>
</form>
</div>`,
  };
}

/** The same answer whether or not the address is a customer's: it tells nobody who is one. */
export function linkSentPage(validMinutes: number): Page {
  return {
    title: 'Check your email',
    body: html`<div class="card"><h1>Check your email</h1>
<p>If this address belongs to a Clawdbot account, a sign-in link is on its way. It works once, within ${validMinutes} minutes.</p>
<p><a href="/account">Back</a></p></div>`,
  };
}

/** A sign-in link asks for one click: mail scanners that follow links must not use it up. */
export function confirmSignInPage(csrf: Html, token: string): Page {
  return {
    title: 'Sign in',
    body: html`<div class="card"><h1>Sign in to your account</h1>
<form method="post" action="/account/sign-in">
${csrf}
<input type="hidden" name="token" value="${token}">
<button type="submit">Sign in</button>
</form></div>`,
  };
}

export function linkRefusedPage(validMinutes: number): Page {
  return {
    title: 'Link expired',
    body: html`<div class="card"><h1>This sign-in link no longer works</h1>
<p>A link works once, within ${validMinutes} minutes. <a href="/account">Ask for a new one</a>.</p></div>`,
  };
}

export interface AccountView {
  email: string;
  plan: string;
  status: string;
  accessUrl: string | null;
  workspaceId: string;
  keyLabel: string | null;
  usage: { used: number; limit: number } | null;
}


function quickStart(accessUrl: string): Html {
  const curl = `curl -H "Authorization: Bearer $CLAWDBOT_KEY" -H "content-type: application/json" \\\n  -d '{"message":"Hello!"}' ${accessUrl}/api/chat`;
  const fetchJs = `const res = await fetch('${accessUrl}/api/chat', {\n  method: 'POST',\n  headers: { authorization: \`Bearer \${process.env.CLAWDBOT_KEY}\`, 'content-type': 'application/json' },\n  body: JSON.stringify({ message: 'Hello!' }),\n});\nconsole.log((await res.json()).reply);`;
  const stream = `curl -N -H "Authorization: Bearer $CLAWDBOT_KEY" -H "content-type: application/json" \\\n  -d '{"message":"Hello!","stream":true}' ${accessUrl}/api/chat`;
  return html`<h2>Quick start</h2>
<p class="muted">Set <code>CLAWDBOT_KEY</code> to your key first.</p>
<p>curl</p><pre>${curl}</pre>
<p>JavaScript (fetch)</p><pre>${fetchJs}</pre>
<p>Streaming (server-sent events)</p><pre>${stream}</pre>`;
}

export function accountPage(view: AccountView, csrf: Html, newKey?: string): Page {
  return {
    title: 'Your account',
    body: html`<div class="card">
<h1>Your Clawdbot</h1>
${newKey
  ? html`<p class="notice">Your new API key, shown this once. Your previous key stops working within seconds.</p>
<p class="key mono" id="new-key">${newKey}</p>`
  : ''}
<dl>
<dt>Signed in as</dt><dd>${view.email}</dd>
<dt>Plan</dt><dd>${view.plan}</dd>
<dt>Status</dt><dd>${view.status}</dd>
<dt>Messages this month</dt><dd id="usage">${view.usage ? `${view.usage.used.toLocaleString('en')} of ${view.usage.limit.toLocaleString('en')}` : 'not available yet'}</dd>
<dt>Access URL</dt><dd class="mono">${view.accessUrl ?? 'not ready yet'}</dd>
<dt>Workspace id</dt><dd class="mono">${view.workspaceId}</dd>
<dt>API key</dt><dd class="mono" id="key-last-four">ending in ${keyEnding(view.keyLabel) ?? '(unknown)'}</dd>
</dl>
<form method="post" action="/account/rotate-key">
${csrf}
<button type="submit">Rotate key</button>
</form>
<form method="post" action="/account/billing">
${csrf}
<button type="submit">Change plan or cancel (Stripe)</button>
</form>
${view.accessUrl ? quickStart(view.accessUrl) : ''}
<form method="post" action="/account/logout">
${csrf}
<button type="submit">Sign out</button>
</form>
</div>`,
  };
}
