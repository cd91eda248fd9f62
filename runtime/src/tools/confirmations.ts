/**
 * Confirmation of acting tools (send, create, comment). The first call records the action as pending and answers
 * what to ask the customer; the action runs only on a later call carrying the pending action's id, and only when:
 * it was recorded in an earlier turn of this conversation (the customer has written since), the input is the one
 * recorded, it has neither expired nor been used, and the customer's message of this turn reads as a plain yes.
 * So neither the model alone, nor a tool result or webhook payload carrying instructions, can make it act.
 */
import { randomBytes } from 'node:crypto';
import { sha256Hex } from '../../../core/hash.ts';
import type { ToolContext, ToolInputSchema, ToolOutcome } from './types.ts';

export const CONFIRMATION_TTL_MS = 15 * 60_000;
/** The input field that carries a pending action's id on the confirming call. */
export const CONFIRMATION_FIELD = 'confirmation_id';
/** Only the customer's own chat can confirm: a webhook's or the heartbeat's "message" is not the customer speaking. */
const CONFIRMING_SOURCE = 'api';
const MAX_CONFIRMATION_CHARS = 120;

const AFFIRMATIVE = /^(yes|yep|yeah|yup|sure|ok|okay|confirm|confirmed|approve|approved|correct|go ahead|do it|send it|please do|please send|please go ahead|absolutely|definitely)\b/;
/** Anything hedging, refusing, asking or changing the action makes the message no confirmation. */
const HEDGED = /\b(no|not|nope|don'?t|dont|never|cancel|stop|wait|hold|change|instead|but|however|later|unless|edit|except|first|before|only if)\b|\?/;

/** A conservative reading: a short message that starts with a yes and hedges nothing. */
export function readsAsConfirmation(message: string): boolean {
  const text = message.toLowerCase().replace(/[’`]/g, "'").replace(/\s+/g, ' ').trim().replace(/^[^a-z]+/, '');
  return text.length > 0 && text.length <= MAX_CONFIRMATION_CHARS && AFFIRMATIVE.test(text) && !HEDGED.test(text);
}

/** The input as compared: every field but the confirmation id, keys sorted, so field order does not matter. */
function canonical(input: Record<string, unknown>): string {
  const sorted = (value: unknown): unknown =>
    Array.isArray(value)
      ? value.map(sorted)
      : value && typeof value === 'object'
        ? Object.fromEntries(Object.keys(value).sort().map((k) => [k, sorted((value as Record<string, unknown>)[k])]))
        : value;
  const { [CONFIRMATION_FIELD]: _id, ...rest } = input;
  return JSON.stringify(sorted(rest));
}

interface PendingRow {
  input_hash: string;
  user_messages: number;
  expires_at: Date;
  used_at: Date | null;
}

async function conversationState(ctx: ToolContext): Promise<{ source: string; userMessages: number } | undefined> {
  const { rows } = await ctx.db.query<{ source: string; user_messages: number }>(
    `SELECT c.source, (SELECT count(*)::int FROM conversation_messages m WHERE m.conversation_id = c.id AND m.role = 'user') AS user_messages
     FROM conversations c WHERE c.id = $1`,
    [ctx.conversationId],
  );
  return rows[0] ? { source: rows[0].source, userMessages: rows[0].user_messages } : undefined;
}

const refused = (content: string, summary: string): ToolOutcome => ({ content, summary, isError: true });

/**
 * Whether the action may run now. Answers undefined when it may (the pending action is then spent), or the outcome
 * to return instead: the request for the customer's confirmation, or why a confirming call is refused.
 */
export async function confirmationGate(tool: string, input: Record<string, unknown>, ctx: ToolContext, action: string): Promise<ToolOutcome | undefined> {
  const conversation = await conversationState(ctx);
  if (!conversation || conversation.source !== CONFIRMING_SOURCE) {
    return refused(
      `Not done: ${action} needs the customer's confirmation in their chat, and this turn is not a chat with the customer. Do not act; report what you would do instead.`,
      'refused: no customer to confirm',
    );
  }
  const hash = sha256Hex(canonical(input));
  const id = input[CONFIRMATION_FIELD];
  if (id === undefined) {
    const pendingId = `act_${randomBytes(12).toString('base64url')}`;
    // Requests long past their expiry are of no use to anyone: they go as new ones come.
    await ctx.db.query("DELETE FROM pending_actions WHERE expires_at < now() - interval '1 day'");
    await ctx.db.query(
      `INSERT INTO pending_actions (id, conversation_id, tool, input, input_hash, user_messages, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [pendingId, ctx.conversationId, tool, canonical(input), hash, conversation.userMessages, new Date(ctx.now.getTime() + CONFIRMATION_TTL_MS)],
    );
    return {
      content:
        `Not done yet: this needs the customer's confirmation first. Ask the customer to confirm exactly this: ${action}. ` +
        `Only if they confirm in their next message, call ${tool} again with the same input and "${CONFIRMATION_FIELD}": "${pendingId}". ` +
        `This request expires in ${CONFIRMATION_TTL_MS / 60_000} minutes.`,
      summary: 'waiting for the customer to confirm',
    };
  }

  const { rows } = await ctx.db.query<PendingRow>(
    'SELECT input_hash, user_messages, expires_at, used_at FROM pending_actions WHERE id = $1 AND conversation_id = $2 AND tool = $3',
    [typeof id === 'string' ? id : '', ctx.conversationId, tool],
  );
  const pending = rows[0];
  const askAgain = `Call ${tool} without ${CONFIRMATION_FIELD} to ask the customer again.`;
  if (!pending) return refused(`Not done: there is no pending ${tool} action with that ${CONFIRMATION_FIELD} in this conversation. ${askAgain}`, 'refused: unknown confirmation');
  if (pending.used_at) return refused(`Not done again: that confirmation was already used (the action ran once). ${askAgain}`, 'refused: confirmation already used');
  if (pending.expires_at.getTime() <= ctx.now.getTime()) return refused(`Not done: the confirmation request expired. ${askAgain}`, 'refused: confirmation expired');
  if (pending.input_hash !== hash) {
    return refused(`Not done: the input differs from what the customer was asked to confirm. ${askAgain}`, 'refused: input changed since confirmation was asked');
  }
  if (conversation.userMessages <= pending.user_messages) {
    return refused(`Not done: the customer has not answered yet. Ask them to confirm and wait for their reply.`, 'refused: not confirmed yet');
  }
  if (!readsAsConfirmation(ctx.message)) {
    return refused(`Not done: the customer's latest message is not a clear confirmation. Ask them plainly whether to go ahead.`, 'refused: no clear confirmation');
  }
  // Spent before acting: at most once, even if the action fails half way (a mail that might have gone is not re-sent).
  const claimed = await ctx.db.query('UPDATE pending_actions SET used_at = now() WHERE id = $1 AND used_at IS NULL', [id]);
  if (claimed.rowCount !== 1) return refused(`Not done again: that confirmation was already used. ${askAgain}`, 'refused: confirmation already used');
  return undefined;
}

/** An acting tool's input schema: its own fields and the confirmation id the confirming call carries. */
export function confirmableSchema(schema: ToolInputSchema): ToolInputSchema {
  return {
    ...schema,
    properties: {
      ...schema.properties,
      [CONFIRMATION_FIELD]: {
        type: 'string',
        description: 'Leave out at first. Once the customer has confirmed in a new message, the id the first call answered.',
      },
    },
  };
}
