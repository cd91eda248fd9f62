// A real SMTP server (smtp-server) that parses every message it accepts (mailparser), for tests that send mail.
import type { Socket } from 'node:net';
import { Arrivals } from '../support/arrivals.ts';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';

export interface CapturedMail {
  from: string; // the From header, e.g. '"Clawdbot" <noreply@example.com>'
  to: string[]; // envelope recipients (RCPT TO), so Bcc recipients are included
  subject: string;
  text: string;
  html: string | undefined;
  messageId: string | undefined;
  headers: Record<string, string>; // lower-cased names, unfolded values; the last occurrence wins
}

export interface SmtpCapture {
  readonly url: string;
  readonly messages: CapturedMail[];
  waitFor(predicate: (mail: CapturedMail) => boolean, timeoutMs?: number): Promise<CapturedMail>;
  close(): Promise<void>;
}

export async function startSmtpCapture(): Promise<SmtpCapture> {
  const arrivals = new Arrivals<CapturedMail>(
    (mails) => mails.map((mail) => `"${mail.subject}" to ${mail.to.join(', ')}`).join('; ') || 'none',
  );
  const messages = arrivals.items;
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    // No reverse DNS of the client: on a closed network each lookup waits for its timeout.
    disableReverseLookup: true,
    name: 'smtp.clawdbot.test',
    logger: false,
    closeTimeout: 500,
    onData(stream, session, callback) {
      simpleParser(stream).then((mail) => {
        const captured: CapturedMail = {
          from: mail.from?.text ?? '',
          to: session.envelope.rcptTo.map((recipient) => recipient.address),
          subject: mail.subject ?? '',
          text: mail.text ?? '',
          html: mail.html === false ? undefined : mail.html,
          messageId: mail.messageId,
          headers: Object.fromEntries(mail.headerLines.map(({ key, line }) =>
            [key, line.slice(line.indexOf(':') + 1).replace(/\r?\n[ \t]+/g, ' ').trim()])),
        };
        arrivals.add(captured);
        callback();
      }, callback);
    },
  });
  // Replies go out at once (no Nagle delay waiting for the client's delayed ACK on loopback).
  server.server.on('connection', (socket: Socket) => socket.setNoDelay(true));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;

  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,
    waitFor: (predicate, timeoutMs = 10_000) => arrivals.waitFor(predicate, timeoutMs),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
