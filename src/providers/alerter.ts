/** Operator alerts: one Slack incoming-webhook post and one email to ALERT_EMAIL. */
import { httpError, isTransientNetworkError, TransientError } from '../errors.ts';
import { providerFetch } from './http.ts';
import type { Mailer } from './types.ts';
import { logger } from '../../core/logger.ts';

export interface Alert {
  title: string;
  /** Who, as operators read it (email, Stripe id, workspace): in the Slack post and the email, never in a log line. */
  customer: string;
  /** The customer's (or instance's) id: what a log line names them by. */
  customerRef: string | null;
  step: string;
  reason: string;
  link: string;
}

const log = logger('alerter');
const slackFetch = providerFetch('slack');

export class Alerter {
  constructor(
    private readonly slackWebhookUrl: string | null,
    private readonly email: string | null,
    private readonly mailer: Mailer,
  ) {}

  async slack(alert: Alert): Promise<void> {
    if (!this.slackWebhookUrl) {
      const { title, customerRef, step, reason, link } = alert;
      return log.warn('no SLACK_WEBHOOK_URL: alert logged only', { title, customer: customerRef, step, reason, link });
    }
    const text = `:rotating_light: ${alert.title}\n*Customer:* ${alert.customer}\n*Step:* ${alert.step}\n*Reason:* ${alert.reason}\n<${alert.link}|Open in Bull Board>`;
    let response: Response;
    try {
      response = await slackFetch(this.slackWebhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text }),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      if (isTransientNetworkError(err)) throw new TransientError(`Slack unreachable: ${(err as Error).message}`);
      throw err;
    }
    if (!response.ok) throw httpError('Slack webhook', response.status, response.headers.get('retry-after'));
  }

  async mail(alert: Alert, messageId: string): Promise<void> {
    if (!this.email) return log.warn('no ALERT_EMAIL: alert email skipped', { title: alert.title });
    await this.mailer.send({
      to: this.email,
      subject: `[Clawdbot alert] ${alert.title}: ${alert.customer}`,
      text: `${alert.title}\n\nCustomer: ${alert.customer}\nStep: ${alert.step}\nReason: ${alert.reason}\n\nBull Board: ${alert.link}\n`,
      messageId,
    });
  }
}
