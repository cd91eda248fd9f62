/** Every email the customer gets from us: subject and text (and HTML where there is one), in one place. */
import { html, type Html } from '../html.ts';

export interface CustomerEmail {
  subject: string;
  text: string;
}

const greeting = (name: string | null) => (name ? `Hello ${name},` : 'Hello,');

/**
 * The instance is ready: access URL, workspace id and the API key, shown this once; or, without the key (apiKey null,
 * KEY_IN_EMAIL=false), a link to the welcome page that reveals it once. Text and HTML parts say the same.
 */
export function welcomeEmail(input: {
  name: string | null;
  accessUrl: string;
  workspaceId: string;
  apiKey: string | null;
  planTitle: string;
  welcomeUrl: string;
  accountUrl: string;
}): CustomerEmail & { html: string } {
  const key = input.apiKey ?? '$CLAWDBOT_KEY';
  const tryIt = `curl -H "Authorization: Bearer ${key}" ${input.accessUrl}/status`;
  const keyLines = input.apiKey
    ? [`  API key:      ${input.apiKey}`, '', 'Keep the key secret: it is shown this once, and we keep only a fingerprint of it.']
    : ['', 'Your API key is shown once, on this page (open it soon: the link shows it a single time):', '', `  ${input.welcomeUrl}`];
  const text = [
    greeting(input.name),
    '',
    `Your Clawdbot (${input.planTitle} plan) is up and running.`,
    '',
    `  Access URL:   ${input.accessUrl}`,
    `  Workspace id: ${input.workspaceId}`,
    ...keyLines,
    '',
    'Try it:',
    '',
    `  ${tryIt}`,
    '',
    `Your account (plan, usage, a new key): ${input.accountUrl}`,
    '',
    'Welcome aboard,',
    'The Clawdbot team',
    '',
  ].join('\n');
  return { subject: 'Your Clawdbot is ready', text, html: welcomeEmailHtml(input, tryIt).text };
}

// Inline styles only and no remote assets: mail clients drop style sheets and block remote images.
const STYLE = {
  body: 'margin:0;padding:24px;background:#f4f4f5;font-family:Arial,Helvetica,sans-serif;color:#18181b;',
  card: 'max-width:560px;margin:0 auto;background:#ffffff;border-radius:8px;padding:24px;',
  label: 'padding:4px 12px 4px 0;color:#3f3f46;white-space:nowrap;vertical-align:top;',
  value: 'padding:4px 0;font-family:Menlo,Consolas,monospace;word-break:break-all;',
  code: 'display:block;background:#18181b;color:#fafafa;padding:12px;border-radius:6px;font-family:Menlo,Consolas,monospace;font-size:13px;word-break:break-all;',
  link: 'color:#1d4ed8;',
};

function welcomeEmailHtml(
  input: { name: string | null; accessUrl: string; workspaceId: string; apiKey: string | null; planTitle: string; welcomeUrl: string; accountUrl: string },
  tryIt: string,
): Html {
  const keyRow = input.apiKey
    ? html`<tr><td style="${STYLE.label}">API key</td><td style="${STYLE.value}">${input.apiKey}</td></tr>`
    : html`<tr><td style="${STYLE.label}">API key</td><td style="padding:4px 0;"><a style="${STYLE.link}" href="${input.welcomeUrl}">Show my key (once)</a></td></tr>`;
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>Your Clawdbot is ready</title></head>
<body style="${STYLE.body}"><div style="${STYLE.card}">
<h1 style="font-size:20px;margin:0 0 12px;">Your Clawdbot is ready</h1>
<p>${input.name ? `Hello ${input.name},` : 'Hello,'}</p>
<p>Your Clawdbot (${input.planTitle} plan) is up and running.</p>
<table role="presentation" style="border-collapse:collapse;margin:12px 0;">
<tr><td style="${STYLE.label}">Access URL</td><td style="${STYLE.value}"><a style="${STYLE.link}" href="${input.accessUrl}">${input.accessUrl}</a></td></tr>
<tr><td style="${STYLE.label}">Workspace id</td><td style="${STYLE.value}">${input.workspaceId}</td></tr>
${keyRow}
</table>
<p>${input.apiKey ? 'Keep the key secret: it is shown this once, and we keep only a fingerprint of it.' : 'The page shows your key a single time: keep it somewhere safe.'}</p>
<p style="margin-bottom:4px;">Try it:</p>
<code style="${STYLE.code}">${tryIt}</code>
<p>Your plan, usage and a new key when you need one: <a style="${STYLE.link}" href="${input.accountUrl}">your account</a>.</p>
<p>Welcome aboard,<br>The Clawdbot team</p>
</div></body></html>
`;
}

/** The assistant used 80 % or all of the month's messages. */
export function usageEmail(input: { name: string | null; month: string; threshold: number; used: number; limit: number; resetsOn: string }): CustomerEmail {
  const limit = input.limit.toLocaleString('en-US');
  const lines =
    input.threshold >= 100
      ? [
          `Your Clawdbot has used all ${limit} messages of your plan for ${input.month}.`,
          `It will answer again when the count resets on ${input.resetsOn}, or as soon as you move to a larger plan.`,
        ]
      : [
          `Your Clawdbot has used ${input.used.toLocaleString('en-US')} of the ${limit} messages of your plan for ${input.month} (${input.threshold} %).`,
          `The count resets on ${input.resetsOn}. A larger plan raises the limit at once.`,
        ];
  return {
    subject: input.threshold >= 100 ? 'Your Clawdbot has reached its monthly limit' : 'Your Clawdbot has used 80 % of its messages',
    text: [greeting(input.name), '', ...lines, '', 'The Clawdbot team', ''].join('\n'),
  };
}

/** A payment failed: the grace before the assistant pauses. */
export function dunningEmail(input: { attempt: number; graceDays: number }): CustomerEmail {
  const days = input.graceDays;
  return {
    subject: 'Your Clawdbot payment did not go through',
    text: `Hello,\n\nThe latest payment for your Clawdbot subscription failed (attempt ${input.attempt}). Please update your payment method.\nYour assistant keeps running for now; if the payment is still overdue after about ${days} day${days === 1 ? '' : 's'}, it is paused until the payment goes through. Your data is kept either way.\n\nThe Clawdbot team\n`,
  };
}

/** The payment stayed overdue past the grace: the assistant is paused, the data kept. */
export function suspendedEmail(): CustomerEmail {
  return {
    subject: 'Your Clawdbot is paused',
    text: `Hello,\n\nWe could not collect the payment for your Clawdbot subscription, so your assistant is paused. Your data is kept.\nUpdate your payment method and it resumes right away.\n\nThe Clawdbot team\n`,
  };
}

/** An operator replaced the API key: the new one, shown this once; the old one no longer works. */
export function keyRotatedEmail(input: { name: string | null; accessUrl: string | null; workspaceId: string; apiKey: string }): CustomerEmail {
  const text = [
    greeting(input.name),
    '',
    `The API key of your Clawdbot (workspace ${input.workspaceId}) was replaced at your request or for your safety.`,
    'The old key no longer works. Your new key:',
    '',
    `  API key:      ${input.apiKey}`,
    ...(input.accessUrl ? [`  Access URL:   ${input.accessUrl}`] : []),
    '',
    'Keep it secret: it is shown this once, and we keep only a fingerprint of it.',
    'If you did not expect this, reply to this email.',
    '',
    'The Clawdbot team',
    '',
  ].join('\n');
  return { subject: 'Your Clawdbot API key was replaced', text };
}

/** A single-use link to the account page (asked for on the account page; valid minutes). */
export function signInEmail(input: { name: string | null; link: string; validMinutes: number }): CustomerEmail {
  const text = [
    greeting(input.name),
    '',
    'Here is your link to sign in to your Clawdbot account:',
    '',
    `  ${input.link}`,
    '',
    `It works once, within ${input.validMinutes} minutes. If you did not ask for it, you can ignore this email.`,
    '',
    'The Clawdbot team',
    '',
  ].join('\n');
  return { subject: 'Your Clawdbot sign-in link', text };
}
