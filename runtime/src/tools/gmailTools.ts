/** Gmail through the customer's connection: search, read, draft, and send (once the customer confirms). */
import type { gmail_v1 } from '@googleapis/gmail';
import { gmailClient } from '../connections/clients.ts';
import { countField, EMAIL_ADDRESS, jsonOutcome, missingOrLong, serviceTool, textField, type ServiceToolSpec } from './serviceTool.ts';
import type { ClientTool, ToolInputSchema } from './types.ts';

const SEARCH_DEFAULT = 10;
const SEARCH_MAX = 25;
/** A message's text past this is cut: the model needs the gist, not a whole newsletter. */
const READ_MAX_CHARS = 20_000;
const LIMITS = { to: 1_000, cc: 1_000, subject: 300, body: 50_000 };

const MESSAGE_SCHEMA: ToolInputSchema = {
  type: 'object',
  properties: {
    to: { type: 'string', description: 'Recipient addresses, comma-separated.' },
    cc: { type: 'string', description: 'Copy addresses, comma-separated (optional).' },
    subject: { type: 'string' },
    body: { type: 'string', description: 'Plain text.' },
  },
  required: ['to', 'subject', 'body'],
  additionalProperties: false,
};

function addresses(text: string | undefined): string[] {
  return (text ?? '').split(',').map((a) => a.trim()).filter(Boolean);
}

/** A message's fields, checked so nothing can add a header (no line breaks) or address no one. */
function invalidMessage(input: Record<string, unknown>): string | undefined {
  const problem = missingOrLong(input, LIMITS, ['to', 'subject', 'body']);
  if (problem) return problem;
  for (const name of ['to', 'cc', 'subject'] as const) {
    if (/[\r\n]/.test(String(input[name] ?? ''))) return `${name} must be one line`;
  }
  const bad = [...addresses(textField(input, 'to')), ...addresses(textField(input, 'cc'))].find((a) => !EMAIL_ADDRESS.test(a));
  return bad ? `"${bad.slice(0, 80)}" is not an email address` : undefined;
}

/** An RFC 5322 message as Gmail's raw field takes it (base64url): UTF-8 text, the body base64-encoded. */
function rawMessage(input: Record<string, unknown>): string {
  const subject = textField(input, 'subject')!;
  const encodedSubject = /^[\x20-\x7e]*$/.test(subject) ? subject : `=?UTF-8?B?${Buffer.from(subject).toString('base64')}?=`;
  const cc = addresses(textField(input, 'cc'));
  const lines = [
    `To: ${addresses(textField(input, 'to')).join(', ')}`,
    ...(cc.length ? [`Cc: ${cc.join(', ')}`] : []),
    `Subject: ${encodedSubject}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset="UTF-8"',
    'Content-Transfer-Encoding: base64',
    '',
    ...(Buffer.from(String(input.body)).toString('base64').match(/.{1,76}/g) ?? []),
  ];
  return Buffer.from(lines.join('\r\n')).toString('base64url');
}

function header(message: gmail_v1.Schema$Message, name: string): string | undefined {
  return message.payload?.headers?.find((h) => h.name?.toLowerCase() === name.toLowerCase())?.value ?? undefined;
}

/** The message's text: its text/plain part, else its HTML without tags. */
function bodyText(part: gmail_v1.Schema$MessagePart | undefined): string {
  const find = (p: gmail_v1.Schema$MessagePart | undefined, type: string): string | undefined => {
    if (!p) return undefined;
    if (p.mimeType === type && p.body?.data) return Buffer.from(p.body.data, 'base64url').toString('utf8');
    for (const child of p.parts ?? []) {
      const found = find(child, type);
      if (found !== undefined) return found;
    }
    return undefined;
  };
  const plain = find(part, 'text/plain');
  if (plain !== undefined) return plain;
  const html = find(part, 'text/html');
  return html === undefined ? '' : html.replace(/<(script|style)[\s\S]*?<\/\1>/gi, ' ').replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
}

function describeMessage(input: Record<string, unknown>): string {
  return `to ${addresses(textField(input, 'to')).length} recipient(s): "${String(input.subject ?? '').slice(0, 60)}"`;
}

const specs: ServiceToolSpec[] = [
  {
    name: 'gmail_search',
    service: 'gmail',
    description:
      "Searches the customer's Gmail with Gmail's search syntax (from:, to:, subject:, newer_than:7d, is:unread, ...). " +
      'Answers id, sender, subject, date and snippet of each match; read one whole with gmail_read.',
    input_schema: {
      type: 'object',
      properties: {
        query: { type: 'string', description: 'A Gmail search query.' },
        max_results: { type: 'integer', minimum: 1, maximum: SEARCH_MAX, description: `Default ${SEARCH_DEFAULT}.` },
      },
      required: ['query'],
      additionalProperties: false,
    },
    describe: (input) => `searching Gmail for "${String(input.query ?? '').slice(0, 60)}"`,
    invalid: (input) => missingOrLong(input, { query: 500 }, ['query']),
    async call(input, ctx, token) {
      const gmail = gmailClient(ctx.config.connections, token);
      const { data } = await gmail.users.messages.list({ userId: 'me', q: textField(input, 'query'), maxResults: countField(input, 'max_results', SEARCH_DEFAULT, SEARCH_MAX) });
      const messages = await Promise.all(
        (data.messages ?? []).map(async ({ id }) => {
          const { data: message } = await gmail.users.messages.get({ userId: 'me', id: id!, format: 'metadata', metadataHeaders: ['From', 'To', 'Subject', 'Date'] });
          return { id: message.id, threadId: message.threadId, from: header(message, 'From'), subject: header(message, 'Subject'), date: header(message, 'Date'), snippet: message.snippet };
        }),
      );
      return jsonOutcome({ messages }, `${messages.length} message(s) found`);
    },
  },
  {
    name: 'gmail_read',
    service: 'gmail',
    description: "Reads one message of the customer's Gmail by its id (from gmail_search): headers and text.",
    input_schema: { type: 'object', properties: { message_id: { type: 'string' } }, required: ['message_id'], additionalProperties: false },
    describe: () => 'reading a Gmail message',
    invalid: (input) => missingOrLong(input, { message_id: 200 }, ['message_id']),
    async call(input, ctx, token) {
      const { data: message } = await gmailClient(ctx.config.connections, token).users.messages.get({ userId: 'me', id: textField(input, 'message_id')!, format: 'full' });
      const text = bodyText(message.payload);
      return jsonOutcome(
        {
          id: message.id,
          threadId: message.threadId,
          from: header(message, 'From'),
          to: header(message, 'To'),
          cc: header(message, 'Cc'),
          subject: header(message, 'Subject'),
          date: header(message, 'Date'),
          labels: message.labelIds,
          text: text.length > READ_MAX_CHARS ? `${text.slice(0, READ_MAX_CHARS)} [… cut at ${READ_MAX_CHARS} characters]` : text,
        },
        'message read',
      );
    },
  },
  {
    name: 'gmail_draft',
    service: 'gmail',
    description: "Saves an email as a draft in the customer's Gmail (nothing is sent); they can review and send it there.",
    input_schema: MESSAGE_SCHEMA,
    describe: (input) => `drafting an email ${describeMessage(input)}`,
    invalid: invalidMessage,
    async call(input, ctx, token) {
      const { data } = await gmailClient(ctx.config.connections, token).users.drafts.create({ userId: 'me', requestBody: { message: { raw: rawMessage(input) } } });
      return jsonOutcome({ draftId: data.id, messageId: data.message?.id }, 'draft saved');
    },
  },
  {
    name: 'gmail_send',
    service: 'gmail',
    description:
      "Sends an email from the customer's Gmail. Needs the customer's confirmation: the first call only records the email " +
      'and answers what to ask them; it is sent by a later call after they confirmed in a new message.',
    input_schema: MESSAGE_SCHEMA,
    describe: (input) => `sending an email ${describeMessage(input)}`,
    invalid: invalidMessage,
    action: (input) => {
      const cc = addresses(textField(input, 'cc'));
      return (
        `send an email from their Gmail to ${addresses(textField(input, 'to')).join(', ')}${cc.length ? ` (cc ${cc.join(', ')})` : ''} ` +
        `with the subject "${textField(input, 'subject')}" and the body as written`
      );
    },
    async call(input, ctx, token) {
      const { data } = await gmailClient(ctx.config.connections, token).users.messages.send({ userId: 'me', requestBody: { raw: rawMessage(input) } });
      return jsonOutcome({ sent: true, messageId: data.id, threadId: data.threadId }, 'email sent');
    },
  },
];

export const gmailTools: ClientTool[] = specs.map(serviceTool);
