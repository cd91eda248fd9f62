/**
 * Usage notices to the control plane, which emails the customer. Each notice is claimed once in usage_notices
 * (see usage.ts) and marked sent when the control plane takes it; one not delivered yet is sent again with the next
 * turn of the same month. The signed call itself (postToControlPlane) serves the key-rotation notices too.
 */
import type pg from 'pg';
import { NOTICE_PATH, NOTICE_SIGNATURE_HEADER, NOTICE_WORKSPACE_HEADER, signNotice } from '../../core/usageNotice.ts';
import type { RuntimeConfig } from './config.ts';
import { logger } from '../../core/logger.ts';

const log = logger('usage-notices');

export interface UsageNotice {
  month: string;
  threshold: number;
  used: number;
  limit: number;
}

export class Notifier {
  constructor(
    private readonly db: pg.Pool,
    private readonly config: Pick<RuntimeConfig, 'controlPlane' | 'workspaceId' | 'messageLimit'>,
  ) {}

  /** Sends a notice (retrying a few times); marks it sent once the control plane took it. */
  async send(notice: UsageNotice): Promise<boolean> {
    const target = this.config.controlPlane;
    if (!target) return false;
    const body = JSON.stringify({ workspaceId: this.config.workspaceId, ...notice });
    if (await postToControlPlane(target, this.config.workspaceId, NOTICE_PATH, body)) {
      await this.db.query('UPDATE usage_notices SET sent_at = now() WHERE month = $1 AND threshold = $2', [notice.month, notice.threshold]);
      return true;
    }
    log.warn('usage notice not delivered yet', { month: notice.month, threshold: notice.threshold });
    return false;
  }

  /** Sends this month's notices that were claimed but not delivered yet. */
  async sendPending(month: string): Promise<void> {
    const { rows } = await this.db.query<{ threshold: number; used: number }>(
      'SELECT threshold, used FROM usage_notices WHERE month = $1 AND sent_at IS NULL ORDER BY threshold',
      [month],
    );
    for (const row of rows) await this.send({ month, threshold: row.threshold, used: row.used, limit: this.config.messageLimit });
  }
}

/**
 * One signed call to the control plane, tried a few times over about eight seconds while it is unreachable or answers
 * 5xx or 429; true once it took the call.
 */
export async function postToControlPlane(
  target: { url: string; secret: string },
  workspaceId: string,
  path: string,
  body: string,
): Promise<boolean> {
  for (let attempt = 0; attempt < 4; attempt++) {
    try {
      const response = await fetch(`${target.url}${path}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          [NOTICE_SIGNATURE_HEADER]: signNotice(target.secret, body),
          [NOTICE_WORKSPACE_HEADER]: workspaceId,
        },
        body,
        signal: AbortSignal.timeout(10_000),
      });
      if (response.ok) return true;
      if (response.status < 500 && response.status !== 429) return false; // refused: retrying now will not help
    } catch {
      // unreachable for now: try again
    }
    await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
  }
  return false;
}
