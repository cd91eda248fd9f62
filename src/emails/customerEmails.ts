/** Every email the customer gets from us: subject and text, in one place. */

export interface CustomerEmail {
  subject: string;
  text: string;
}

const greeting = (name: string | null) => (name ? `Hello ${name},` : 'Hello,');

/** The instance is ready: access URL, workspace id and the API key, shown this once. */
export function welcomeEmail(input: { name: string | null; accessUrl: string; workspaceId: string; apiKey: string; planTitle: string }): CustomerEmail {
  const text = [
    greeting(input.name),
    '',
    `Your Clawdbot (${input.planTitle} plan) is up and running.`,
    '',
    `  Access URL:   ${input.accessUrl}`,
    `  Workspace id: ${input.workspaceId}`,
    `  API key:      ${input.apiKey}`,
    '',
    'Keep the key secret: it is shown this once, and we keep only a fingerprint of it.',
    'Try it:',
    '',
    `  curl -H "Authorization: Bearer ${input.apiKey}" ${input.accessUrl}/status`,
    '',
    'Welcome aboard,',
    'The Clawdbot team',
    '',
  ].join('\n');
  return { subject: 'Your Clawdbot is ready', text };
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
