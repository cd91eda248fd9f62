/** The welcome page in each of its states: provisioning under way, ready (the key once), failed, ended. */
import { keyEnding } from '../../../core/apiKey.ts';
import { planByName } from '../../../core/plans.ts';
import type { InstanceWithCustomer } from '../../db/instances.ts';
import { html, type Html } from '../../html.ts';
import type { ProgressView } from './progress.ts';

export interface Page {
  title: string;
  body: Html;
  head?: Html;
  script?: string;
}

// Follows the event stream and reloads for the final state; without JavaScript the page refreshes itself instead.
const FOLLOW_PROGRESS = `
(function () {
  var source = document.body.querySelector('[data-events]');
  if (!source || !window.EventSource) return;
  var events = new EventSource(source.getAttribute('data-events'));
  events.addEventListener('progress', function (e) {
    var view = JSON.parse(e.data);
    view.steps.forEach(function (step) {
      var item = document.getElementById('step-' + step.name);
      if (!item) return;
      item.setAttribute('data-state', step.state);
      item.querySelector('.state').textContent = step.stateText;
    });
    if (view.finished) { events.close(); window.location.reload(); }
  });
})();
`;

export function progressPage(view: ProgressView, eventsUrl: string): Page {
  return {
    title: 'Setting up your assistant',
    head: html`<noscript><meta http-equiv="refresh" content="5"></noscript>`,
    script: FOLLOW_PROGRESS,
    body: html`<div class="card" data-events="${eventsUrl}">
<h1>Thank you! Your assistant is being set up</h1>
<p class="muted">This usually takes a minute or two. Keep this page open: your API key is shown here once, when everything is ready.</p>
<ol class="steps" aria-live="polite">
${view.steps.map((step) => html`<li id="step-${step.name}" data-state="${step.state}"><span>${step.title}</span><span class="state">${step.stateText}</span></li>\n`)}
</ol>
</div>`,
  };
}

/** The key part of the ready page: the key itself (the one reveal), or a form to reveal it, or neither (shown before). */
export type KeyView = { key: string | null } | { offer: { action: string; csrf: Html } | null };

export function readyPage(instance: InstanceWithCustomer, view: KeyView, accountUrl: string): Page {
  const accessUrl = instance.access_url ?? '';
  const ending = keyEnding(instance.api_key_label);
  const plan = planByName(instance.plan ?? '')?.title ?? instance.plan;
  const key = 'key' in view ? view.key : null;
  const offer = 'offer' in view ? view.offer : null;
  const keyPart = key
    ? html`<h2>Your API key</h2>
<p class="key mono" id="api-key">${key}</p>
<p class="notice"><strong>Copy it now.</strong> This is the only time it is shown: we keep only a fingerprint of it. Reloading this page will not show it again.</p>`
    : offer
      ? html`<h2>Your API key</h2>
<p>Your key is ready to be shown, once. Have somewhere safe to keep it before you press the button: it is not shown again.</p>
<form method="post" action="${offer.action}">${offer.csrf}<button id="show-key" type="submit">Show my API key</button></form>`
      : html`<h2>Your API key</h2>
<p id="key-ending">${ending ? html`Your key ends in <code>${ending}</code>.` : html`Your key starts with <code>${instance.api_key_label ?? 'claw_'}</code>.`} It was shown once and is not shown again.</p>
<p>Lost it? Make a new one on <a href="${accountUrl}">your account page</a>, or with the current key:</p>
<pre>curl -X POST -H "Authorization: Bearer $CLAWDBOT_KEY" ${accessUrl}/api/keys/rotate</pre>`;
  return {
    title: 'Your assistant is ready',
    body: html`<div class="card">
<h1>Your assistant is ready</h1>
${instance.status === 'suspended' ? html`<p class="notice">It is paused until the latest payment goes through.</p>` : ''}
<dl>
<dt>Access URL</dt><dd class="mono"><a id="access-url" href="${accessUrl}">${accessUrl}</a></dd>
<dt>Workspace id</dt><dd class="mono" id="workspace-id">${instance.workspace_id}</dd>
${plan ? html`<dt>Plan</dt><dd>${plan}</dd>` : ''}
</dl>
${keyPart}
<h2>Try it</h2>
<pre>curl -H "Authorization: Bearer $CLAWDBOT_KEY" ${accessUrl}/status</pre>
<p>Plan, usage and keys: <a href="${accountUrl}">your account</a>.</p>
</div>`,
  };
}

export function failedPage(): Page {
  return {
    title: 'Setup paused',
    body: html`<div class="card">
<h1>Setting up your assistant is taking longer</h1>
<p>Something went wrong while we set up your assistant. Our operators have been told and are looking into it; you do not need to do anything.</p>
<p>We will email you as soon as it is ready. Your payment is safe.</p>
</div>`,
  };
}

export function endedPage(): Page {
  return {
    title: 'Subscription ended',
    body: html`<div class="card"><h1>This subscription has ended</h1><p>Subscribe again any time to get a new assistant.</p></div>`,
  };
}
