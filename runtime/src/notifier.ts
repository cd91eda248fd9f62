/**
 * Usage notices to the control plane, which emails the customer: a POST signed like Stripe signs webhooks
 * (`X-Clawdbot-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`). A notice not yet
 * delivered stays unsent in usage_notices and is sent again at the next start.
 */
import { createHmac } from 'node:crypto';
import type pg from 'pg';
import type { RuntimeConfig } from './config.ts';

export const SIGNATURE_HEADER = 'x-clawdbot-signature';
export const WORKSPACE_HEADER = 'x-clawdbot-workspace';

export function signNotice(secret: string, body: string, timestamp = Math.floor(Date.now() / 1000)): string {
  const mac = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
  return `t=${timestamp},v1=${mac}`;
}

export interface UsageNotice {
  month: string;
  threshold: number;
  used: number;
  limit: number;
}

export class Notifier {
  constructor(
    private readonly db: pg.Pool,
    private readonly config: Pick<RuntimeConfig, 'controlPlane' | 'workspaceId'>,
  ) {}

  /** Sends a notice (retrying a few times); marks it sent once the control plane took it. */
  async send(notice: UsageNotice): Promise<boolean> {
    const target = this.config.controlPlane;
    if (!target) return false;
    const body = JSON.stringify({ workspaceId: this.config.workspaceId, ...notice });
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        const response = await fetch(`${target.url}/api/runtime/usage`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            [SIGNATURE_HEADER]: signNotice(target.secret, body),
            [WORKSPACE_HEADER]: this.config.workspaceId,
          },
          body,
          signal: AbortSignal.timeout(10_000),
        });
        if (response.ok) {
          await this.db.query('UPDATE usage_notices SET sent_at = now() WHERE month = $1 AND threshold = $2', [
            notice.month,
            notice.threshold,
          ]);
          return true;
        }
        if (response.status < 500 && response.status !== 429) break; // refused: retrying will not help
      } catch {
        // unreachable for now: try again
      }
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
    }
    console.error(`runtime ${this.config.workspaceId}: usage notice ${notice.month} ${notice.threshold}% not delivered yet`);
    return false;
  }

  /** Sends the notices an earlier run claimed but could not deliver. */
  async resendPending(limit: number): Promise<void> {
    const { rows } = await this.db.query<{ month: string; threshold: number }>(
      'SELECT month, threshold FROM usage_notices WHERE sent_at IS NULL ORDER BY month, threshold',
    );
    for (const row of rows) {
      await this.send({ month: row.month, threshold: row.threshold, used: Math.ceil((row.threshold * limit) / 100), limit });
    }
  }
}
