/**
 * Usage of the plan: messages and tokens per UTC day in usage_tracking, the monthly message limit, and the notices
 * at 80 % and 100 % of it. A turn reserves its message before the model is asked (so concurrent turns cannot pass
 * the limit together) and gives it back if the turn fails, so a failed or retried turn is not counted.
 */
import pg from 'pg';
import { HttpError } from '../../core/http/httpError.ts';

const { escapeLiteral } = pg;

export const NOTICE_THRESHOLDS = [80, 100] as const;

export function monthOf(now: Date): { month: string; first: string; next: string } {
  const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const next = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  return { month: first.toISOString().slice(0, 7), first: first.toISOString().slice(0, 10), next: next.toISOString().slice(0, 10) };
}

export function dayOf(now: Date): string {
  return now.toISOString().slice(0, 10);
}

/** Usage for the UTC calendar month containing `now`, summed from the daily rows. */
export async function monthUsage(db: Pick<pg.Pool, 'query'>, now: Date) {
  const { month, first, next } = monthOf(now);
  const { rows } = await db.query<{ messages: string; input_tokens: string; output_tokens: string }>(
    `SELECT coalesce(sum(messages), 0) AS messages,
            coalesce(sum(input_tokens), 0) AS input_tokens,
            coalesce(sum(output_tokens), 0) AS output_tokens
       FROM usage_tracking WHERE day >= $1 AND day < $2`,
    [first, next],
  );
  const row = rows[0];
  return {
    month,
    messages: Number(row?.messages ?? 0),
    inputTokens: Number(row?.input_tokens ?? 0),
    outputTokens: Number(row?.output_tokens ?? 0),
  };
}

/**
 * Counts one message for today if the month has room; otherwise a 429 saying when the month resets. A turn in an
 * existing conversation gives its id: a conversation that does not exist is a 404 and nothing is counted.
 * Returns the month's count including this message.
 *
 * One round trip: a simple query of two statements, which Postgres runs as one transaction. The advisory lock
 * serializes reservations; the count is a statement of its own, so under READ COMMITTED its snapshot is taken after
 * the lock is held and sees every reservation committed before. (A simple query takes no parameters: the values are
 * quoted literals.)
 *
 * The reservation commits without waiting for its WAL to reach the disk (synchronous_commit off for this transaction
 * only): other turns see it at once all the same, and the turn's stored messages commit durably afterwards, which
 * flushes the reservation with them. A crash can lose only the reservation of a turn that was never stored, so
 * never answered: one a failure would have given back anyway.
 */
export async function reserveMessage(db: pg.Pool, limit: number, now: Date, conversationId?: string): Promise<number> {
  const { month, first, next } = monthOf(now);
  if (!Number.isSafeInteger(limit)) throw new TypeError(`message limit must be an integer (got ${limit})`);
  const known = conversationId === undefined ? 'true' : `EXISTS (SELECT 1 FROM conversations WHERE id = ${escapeLiteral(conversationId)}::uuid)`;
  const results = (await db.query(`
    SET LOCAL synchronous_commit = off;
    SELECT pg_advisory_xact_lock(hashtext('usage_tracking'));
    WITH conversation AS (SELECT ${known} AS known),
      month AS (SELECT coalesce(sum(messages), 0)::bigint AS used FROM usage_tracking WHERE day >= ${escapeLiteral(first)} AND day < ${escapeLiteral(next)}),
      reserved AS (
        INSERT INTO usage_tracking (day, messages) SELECT ${escapeLiteral(dayOf(now))}, 1 FROM conversation, month WHERE known AND used < ${limit}
        ON CONFLICT (day) DO UPDATE SET messages = usage_tracking.messages + 1
        RETURNING 1)
    SELECT known, used, EXISTS (SELECT 1 FROM reserved) AS reserved FROM conversation, month`)) as unknown as pg.QueryResult[];
  const { known: conversationKnown, used, reserved } = results[2]!.rows[0] as { known: boolean; used: string; reserved: boolean };
  const messages = Number(used);
  if (!conversationKnown) throw new HttpError(404, 'not_found', `no conversation ${conversationId}`);
  if (!reserved) {
    const resetsAt = `${next}T00:00:00Z`;
    throw new HttpError(
      429,
      'message_limit_reached',
      `this plan's ${limit} messages for ${month} are used up; the count resets at ${resetsAt}`,
      { limit, used: messages, resetsAt },
      { 'Retry-After': String(Math.ceil((Date.parse(resetsAt) - now.getTime()) / 1000)) },
    );
  }
  return messages + 1;
}

/** Gives back a reserved message whose turn failed. */
export async function releaseMessage(db: pg.Pool, day: string): Promise<void> {
  await db.query('UPDATE usage_tracking SET messages = greatest(messages - 1, 0) WHERE day = $1', [day]);
}

/**
 * Records each threshold this count has reached, once a month (across processes); the notifier sends them.
 * Returns how many thresholds the count has reached (claimed now or before).
 */
export async function claimNotices(db: pg.Pool, used: number, limit: number, now: Date): Promise<number> {
  const reached = NOTICE_THRESHOLDS.filter((t) => used * 100 >= t * limit);
  for (const threshold of reached) {
    await db.query('INSERT INTO usage_notices (month, threshold, used) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [
      monthOf(now).month,
      threshold,
      used,
    ]);
  }
  return reached.length;
}
