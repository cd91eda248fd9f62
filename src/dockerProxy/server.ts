/**
 * The Docker socket proxy: an HTTP endpoint a worker talks to instead of the engine's socket (which is root on the
 * host). Each request is read whole, judged by policy.ts, confirmed against the engine for the proxy's scope (the
 * target container's label, the networks a new container joins), then forwarded to the socket byte for byte and
 * its answer streamed back. Refusals answer 403 `{ message }`, as the engine's own errors do, so clients show them.
 * Bodies are never logged: a container's create body holds its environment, secrets included.
 */
import { Agent, createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpError } from '../../core/http/httpError.ts';
import { readRawBody } from '../../core/http/rawBody.ts';
import { logger } from '../../core/logger.ts';
import { secretEquals } from '../../core/secretEquals.ts';
import { decide, scopeCheck } from './policy.ts';
import { parseStrictJson } from './strictJson.ts';

export interface DockerProxyOptions {
  /** The engine's socket, /var/run/docker.sock. */
  upstreamSocket: string;
  host: string;
  port: number;
  /** The label key that marks what belongs to a scope (ai.clawdbot.scope). */
  label: string;
  /** This proxy's value of the label: what its client may make, see and act on. */
  scope: string;
  /** When set, every request must carry `Authorization: Bearer <token>`. */
  token?: string;
  /** Lets a container publish a port on an address other than loopback (see PolicyOptions); off by default. */
  allowPublicPorts?: boolean;
}

export interface DockerProxy {
  url: string;
  close(): Promise<void>;
}

const BODY_LIMIT = 1024 * 1024;
/** Headers of one connection, not of the request: never passed from one side to the other. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host', 'authorization', 'expect']);
const FULL_ID = /^[0-9a-f]{64}$/;

const log = logger('docker.proxy');

/** A request the proxy answers itself, with the engine's error shape: a refusal, or the engine's own answer. */
class Answer extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly fromEngine = false,
  ) {
    super(message);
  }
}

export async function startDockerProxy(options: DockerProxyOptions): Promise<DockerProxy> {
  // Its own agent, so close() ends the engine connections it keeps (a followed log holds one open).
  const agent = new Agent({ keepAlive: true });
  const engine = (method: string, path: string, headers: IncomingHttpHeaders = {}): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => {
      const upstream = httpRequest({ socketPath: options.upstreamSocket, agent, method, path, headers }, resolve);
      upstream.on('error', reject);
      upstream.end();
    });

  /** An object's labels as the engine has them, or its own answer (404 and the like) passed on. */
  const labelsOf = async (kind: 'containers' | 'networks', name: string): Promise<{ id: string; labels: Record<string, string> }> => {
    const answer = await engine('GET', `/${kind}/${name}${kind === 'containers' ? '/json' : ''}`);
    const text = await readText(answer);
    if (answer.statusCode !== 200) throw new Answer(answer.statusCode ?? 502, engineMessage(text), true);
    const inspected = JSON.parse(text) as { Id: string; Labels?: Record<string, string> | null; Config?: { Labels?: Record<string, string> | null } };
    return { id: inspected.Id, labels: (kind === 'containers' ? inspected.Config?.Labels : inspected.Labels) ?? {} };
  };

  const confirmScope = async (method: string, path: string, body: unknown): Promise<string> => {
    const check = scopeCheck({ method, path, body }, options);
    switch (check.kind) {
      case 'refuse':
        throw new Answer(403, check.reason);
      case 'forward':
        return check.path;
      case 'container': {
        const container = await labelsOf('containers', check.id);
        if (container.labels[options.label] !== options.scope) throw new Answer(403, `the container "${check.id}" is not in this proxy's scope`);
        if (!FULL_ID.test(container.id)) throw new Answer(502, 'the engine answered an unexpected container id');
        return check.pathFor(container.id);
      }
      case 'networks':
        for (const name of check.names) {
          const network = await labelsOf('networks', name).catch((err: unknown) => {
            if (err instanceof Answer && err.status === 404) throw new Answer(403, `the network "${name}" is not in this proxy's scope`);
            throw err;
          });
          if (network.labels[options.label] !== options.scope) throw new Answer(403, `the network "${name}" is not in this proxy's scope`);
        }
        return path;
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    try {
      if (options.token !== undefined && !bearerMatches(req.headers.authorization, options.token)) throw new Answer(401, 'a bearer token is required');
      const raw = await readRawBody(req, BODY_LIMIT).catch((err: unknown) => {
        throw err instanceof HttpError ? new Answer(err.status, err.reason) : err;
      });
      const body = parseBody(raw, req.headers['content-type']);
      const decision = decide({ method, path, body }, options);
      if (!decision.allow) throw new Answer(403, decision.reason);
      const forwardPath = await confirmScope(method, path, body);
      await forward(req, res, forwardPath, raw);
    } catch (err) {
      if (!(err instanceof Answer)) {
        log.error('request failed', { method, path: pathOnly(path), error: (err as Error).message });
        err = new Answer(502, 'the Docker engine did not answer as expected');
      }
      const { status, message, fromEngine } = err as Answer;
      if (status < 500 && !fromEngine) log.warn('refused', { method, path: pathOnly(path), status, reason: message });
      if (res.headersSent) res.destroy();
      else respond(res, status, message);
    }
  };

  /** Sends the request on to the engine and streams its answer back as it comes (logs may be long or followed). */
  const forward = (req: IncomingMessage, res: ServerResponse, path: string, raw: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      // The body was read whole (maybe chunked): it goes on with its length.
      const headers = passable(req.headers);
      delete headers['content-length'];
      if (raw.length > 0) headers['content-length'] = String(raw.length);
      let answered = false;
      const upstream = httpRequest({ socketPath: options.upstreamSocket, agent, method: req.method, path, headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, passable(answer.headers));
        answer.pipe(res);
        answer.on('end', () => {
          answered = true;
          resolve();
        });
        answer.on('error', reject);
      });
      // A client gone before the whole answer (a followed log left): the engine's side is ended too, and that is no error.
      res.on('close', () => {
        if (answered) return;
        answered = true;
        upstream.destroy();
        resolve();
      });
      upstream.on('error', reject);
      upstream.end(raw);
    });

  const server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host}:${port}`,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      agent.destroy();
      await closed;
    },
  };
}

function bearerMatches(header: string | undefined, token: string): boolean {
  const presented = /^Bearer +(.+)$/i.exec(header ?? '')?.[1];
  return presented !== undefined && secretEquals(presented, token);
}

/** The body as JSON, undefined when empty: the proxy reads nothing else (no tar archives, no raw streams). */
function parseBody(raw: Buffer, contentType: string | undefined): unknown {
  if (raw.length === 0) return undefined;
  if (!/^application\/json\b/i.test(contentType ?? '')) throw new Answer(415, 'only JSON bodies are accepted');
  const parsed = parseStrictJson(raw.toString('utf8'));
  if ('problem' in parsed) throw new Answer(400, parsed.problem);
  return parsed.value;
}

function passable(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP_BY_HOP.has(name.toLowerCase())));
}

function respond(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ message: `docker proxy: ${message}` }));
}

async function readText(answer: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of answer) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The engine's error message from its JSON answer, or the text itself. */
function engineMessage(text: string): string {
  try {
    return String((JSON.parse(text) as { message?: unknown }).message ?? text);
  } catch {
    return text;
  }
}

/** A path without its query, for logs (a query is the client's to read, not the log's). */
function pathOnly(path: string): string {
  return path.split('?')[0]!;
}
