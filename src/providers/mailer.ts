/** Mail through SMTP (SMTP_URL), or, on the embedded defaults, written to var/outbox/ as .eml files. */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import nodemailer, { type Transporter } from 'nodemailer';
import { httpError, TransientError } from '../errors.ts';
import type { Mailer, MailMessage } from './types.ts';

export function createMailer(options: { smtpUrl: string | null; from: string; outboxDir: string }): Mailer {
  return options.smtpUrl ? new SmtpMailer(options.smtpUrl, options.from) : new OutboxMailer(options.outboxDir, options.from);
}

class SmtpMailer implements Mailer {
  private readonly transport: Transporter;

  constructor(
    url: string,
    private readonly from: string,
  ) {
    this.transport = nodemailer.createTransport(url);
  }

  async send(message: MailMessage): Promise<void> {
    try {
      await this.transport.sendMail({ from: this.from, ...message });
    } catch (err) {
      // SMTP 4xx replies and connection failures are worth retrying; 5xx replies are final.
      const code = (err as { responseCode?: number }).responseCode;
      if (code !== undefined && code >= 500) throw httpError('SMTP server', 400);
      throw new TransientError(`mail not sent: ${(err as Error).message}`);
    }
  }

  close(): void {
    this.transport.close();
  }
}

class OutboxMailer implements Mailer {
  private readonly transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });

  constructor(
    private readonly dir: string,
    private readonly from: string,
  ) {}

  async send(message: MailMessage): Promise<void> {
    const info = await this.transport.sendMail({ from: this.from, ...message });
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const slug = message.subject.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 40);
    await writeFile(path.join(this.dir, `${stamp}-${slug}.eml`), info.message as Buffer, { mode: 0o600 });
  }

  close(): void {}
}
