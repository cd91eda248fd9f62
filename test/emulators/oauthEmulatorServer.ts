// What the OAuth providers' emulators (Google, GitHub) share: an HTTP server on a loopback port whose handler gets
// the parsed request (form or JSON body, query, bearer token), every request recorded for the tests to inspect,
// and authorization codes issued on an authorize redirect and redeemed once at the token endpoint.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface EmulatorRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  /** A form body's fields or a JSON body's object; {} without a body. */
  body: Record<string, unknown>;
  /** The token of `Authorization: Bearer|token <token>`, if any. */
  bearer: string | undefined;
}

export interface EmulatorResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface EmulatorServer {
  url: string;
  /** Method and path of every request, in arrival order (never a header: they hold tokens). */
  requests: { method: string; path: string }[];
  close(): Promise<void>;
}

export async function startEmulatorServer(handle: (req: EmulatorRequest) => EmulatorResponse | Promise<EmulatorResponse>): Promise<EmulatorServer> {
  const requests: { method: string; path: string }[] = [];
  const server = createServer((req, res) => {
    void respond(req, res).catch((err: Error) => send(res, { status: 500, body: { error: err.message } }));
  });
  async function respond(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://emulator');
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const type = req.headers['content-type'] ?? '';
    const body = !raw
      ? {}
      : type.includes('application/x-www-form-urlencoded')
        ? Object.fromEntries(new URLSearchParams(raw))
        : (JSON.parse(raw) as Record<string, unknown>);
    const bearer = /^(?:bearer|token)\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    requests.push({ method: req.method ?? 'GET', path: url.pathname });
    send(res, await handle({ method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, headers: req.headers, body, bearer }));
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function send(res: ServerResponse, response: EmulatorResponse): void {
  if (res.headersSent) return;
  const text = response.body === undefined ? '' : JSON.stringify(response.body);
  res.writeHead(response.status, { ...(text ? { 'content-type': 'application/json; charset=utf-8' } : {}), ...response.headers });
  res.end(text);
}

export function randomToken(prefix: string, bytes = 24): string {
  return prefix + randomBytes(bytes).toString('base64url');
}

/** A code the authorize step hands out, for one client, redirect URI and scope set, redeemable once. */
export interface AuthorizationCode {
  clientId: string;
  redirectUri: string;
  scopes: string[];
}

/**
 * The authorize step as a consenting customer's browser sees it: the provider's redirect back to the client, with a
 * code (or `error=access_denied` once `deny` is set) and the client's state. Codes are kept for the token endpoint.
 */
export function authorizeRedirect(
  req: EmulatorRequest,
  codes: Map<string, AuthorizationCode>,
  options: { clientId: string; deny: boolean; codePrefix: string },
): EmulatorResponse {
  const clientId = req.query.get('client_id');
  const redirectUri = req.query.get('redirect_uri');
  if (clientId !== options.clientId || !redirectUri) return { status: 400, body: { error: 'invalid_request', error_description: 'unknown client or no redirect_uri' } };
  const back = new URL(redirectUri);
  const state = req.query.get('state');
  if (state !== null) back.searchParams.set('state', state);
  if (options.deny) {
    back.searchParams.set('error', 'access_denied');
  } else {
    const code = randomToken(options.codePrefix, 16);
    codes.set(code, { clientId, redirectUri, scopes: (req.query.get('scope') ?? '').split(/[\s,]+/).filter(Boolean) });
    back.searchParams.set('code', code);
  }
  return { status: 302, headers: { location: back.toString() } };
}
