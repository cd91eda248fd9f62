/** Mail through SMTP (SMTP_URL), or, on the embedded defaults, written to var/outbox/ as .eml files. */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import nodemailer, { type Transporter } from 'nodemailer';
import { PermanentError, TransientError } from '../errors.ts';
import type { Mailer, MailMessage } from './types.ts';
import { ensurePrivateDir, PRIVATE_FILE_MODE } from '../../core/privateFiles.ts';

export function createMailer(options: { smtpUrl: string | null; from: string; outboxDir: string }): Mailer {
  return options.smtpUrl ? new SmtpMailer(options.smtpUrl, options.from) : new OutboxMailer(options.outboxDir, options.from);
}

class SmtpMailer implements Mailer {
  private readonly transport: Transporter;

  constructor(
    url: string,
    private readonly from: string,
  ) {
    // Pooled: connections (and their TLS and login) are reused across mails instead of made per mail.
    const pooled = new URL(url);
    if (!pooled.searchParams.has('pool')) pooled.searchParams.set('pool', 'true');
    this.transport = nodemailer.createTransport(pooled.toString());
  }

  async send(message: MailMessage): Promise<void> {
    try {
      await this.transport.sendMail({ from: this.from, ...message });
    } catch (err) {
      // SMTP 5xx replies and malformed addresses (refused before any reply) are final; 4xx replies (greylisting at
      // RCPT TO included) and connection failures are worth retrying.
      const { responseCode, response, code } = err as { responseCode?: number; response?: string; code?: string };
      if (responseCode !== undefined && responseCode >= 500) throw new PermanentError(`SMTP refused the mail: ${response ?? responseCode}`);
      if (code === 'EENVELOPE' && responseCode === undefined) throw new PermanentError(`mail not sent: ${(err as Error).message}`);
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
    await ensurePrivateDir(this.dir);
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const slug = message.subject.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 40);
    await writeFile(path.join(this.dir, `${stamp}-${slug}.eml`), info.message as Buffer, { mode: PRIVATE_FILE_MODE });
  }

  close(): void {}
}
