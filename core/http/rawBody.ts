/** Reads a request body as bytes, refusing it once it passes a limit, so a signature is checked on exactly what was sent. */
import type { IncomingMessage } from 'node:http';
import { HttpError } from './httpError.ts';

export async function readRawBody(req: IncomingMessage, limitBytes: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limitBytes) throw tooLarge(limitBytes);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limitBytes) {
      req.resume(); // drain the rest without keeping it
      throw tooLarge(limitBytes);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function tooLarge(limitBytes: number): HttpError {
  return new HttpError(413, 'payload_too_large', `body is larger than ${limitBytes} bytes`);
}

/** A JSON body of at most limitBytes, parsed; a clear 4xx otherwise. */
export async function readJsonBody(req: IncomingMessage, limitBytes = 64 * 1024): Promise<unknown> {
  const raw = await readRawBody(req, limitBytes);
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
    throw new HttpError(415, 'unsupported_media_type', 'send the body as application/json');
  }
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw new HttpError(400, 'invalid_json', 'the body is not valid JSON');
  }
}
