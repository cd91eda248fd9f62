/**
 * The HTTP client the providers call Railway, Neon and the runtimes with: node:http(s) over keep-alive agents, with
 * a `fetch` of the same contract for graphql-request and the health checks, and an axios adapter for Neon's client.
 *
 * Why not the built-in fetch and axios's own adapter: measured on the development machine, a request through them
 * costs 1.2–1.4 ms of CPU against 0.4 ms over node:http, and a provision makes a dozen of them (docs/performance.md).
 * What they give that is kept: connection reuse, abort signals and timeouts, fetch's errors (a TypeError "fetch
 * failed" with the network error as its cause; the signal's reason on abort) and axios's (AxiosError with the code,
 * and the response for a status axios's validateStatus refuses).
 *
 * Every call is counted here, by the provider its caller names (src/metrics/recorder.ts: an in-memory increment).
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import { AxiosError, AxiosHeaders, type AxiosAdapter, type InternalAxiosRequestConfig } from 'axios';
import { metrics } from '../metrics/recorder.ts';

/** Answers larger than this are refused: no provider answer comes near it. */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

const agents = {
  'http:': new http.Agent({ keepAlive: true }),
  'https:': new https.Agent({ keepAlive: true }),
};

export interface HttpRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  signal?: AbortSignal;
  /** A connection for this request only (closed after it), for hosts asked once in a long while. */
  noKeepAlive?: boolean;
  /** Who is called (railway, neon, runtime, slack), for the call counters; 'other' when not named. */
  provider?: string;
}

export interface HttpAnswer {
  status: number;
  statusText: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** One request over a kept-alive connection. Rejects with the network error, or with the signal's reason on abort. */
export function httpRequest(url: URL, request: HttpRequest = {}): Promise<HttpAnswer> {
  const agent = agents[url.protocol as keyof typeof agents];
  if (!agent) return Promise.reject(new TypeError(`unsupported protocol ${url.protocol}`));
  const { signal, body } = request;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const headers = { ...request.headers };
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    const req = (url.protocol === 'https:' ? https : http).request(url, { method: request.method ?? 'GET', headers, agent: request.noKeepAlive ? false : agent });
    const onAbort = () => req.destroy(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    let settled = false;
    const settle = (err: unknown, answer?: HttpAnswer) => {
      signal?.removeEventListener('abort', onAbort);
      if (settled) return; // a late error of a request already answered: counted once
      settled = true;
      metrics.providerCall(request.provider ?? 'other', answer?.status);
      if (answer) resolve(answer);
      else reject(signal?.aborted ? signal.reason : err);
    };
    req.on('error', (err) => settle(err));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) res.destroy(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes from ${url.host}`));
        else chunks.push(chunk);
      });
      res.on('error', (err) => settle(err));
      res.on('end', () =>
        settle(undefined, { status: res.statusCode!, statusText: res.statusMessage ?? '', headers: res.headers, body: Buffer.concat(chunks) }),
      );
    });
    req.end(body);
  });
}

const NO_BODY = new Set([101, 204, 205, 304]);

/**
 * `fetch` for a URL, its method, headers, a string or byte body and a signal: what graphql-request and the checks use.
 * Its calls are counted as calls to `provider`.
 */
export function providerFetch(provider: string): (input: string | URL | Request, init?: RequestInit) => Promise<Response> {
  return (input, init) => fetchVia(provider, input, init);
}

/** `fetch` for calls that name no provider. */
export const httpFetch = providerFetch('other');

async function fetchVia(provider: string, input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
  // A Request would carry its own method, headers and body: nothing here sends one, so it is refused, not half-read.
  if (input instanceof Request) throw new TypeError('httpFetch takes a URL, not a Request');
  if (init.body !== undefined && init.body !== null && typeof init.body !== 'string' && !(init.body instanceof Uint8Array)) {
    throw new TypeError('httpFetch sends only string or byte bodies');
  }
  let answer: HttpAnswer;
  try {
    answer = await httpRequest(new URL(input), {
      method: init.method ?? 'GET',
      headers: Object.fromEntries(new Headers(init.headers)),
      body: init.body ?? undefined,
      signal: init.signal ?? undefined,
      provider,
    });
  } catch (err) {
    if (init.signal?.aborted && err === init.signal.reason) throw err;
    throw new TypeError('fetch failed', { cause: err });
  }
  const headers = new Headers();
  for (const [name, value] of Object.entries(answer.headers)) {
    for (const one of Array.isArray(value) ? value : [value ?? '']) headers.append(name, one);
  }
  const body = NO_BODY.has(answer.status) ? null : new Uint8Array(answer.body.buffer as ArrayBuffer, answer.body.byteOffset, answer.body.length);
  return new Response(body, { status: answer.status, statusText: answer.statusText, headers });
}

/** The request's URL with its query, as axios builds it (a paramsSerializer function or object, else plain params). */
function axiosUrl(config: InternalAxiosRequestConfig): URL {
  const path = config.url ?? '';
  const absolute = /^([a-z][a-z\d+.-]*:)?\/\//i.test(path);
  const base = config.baseURL?.replace(/\/?\/$/, '');
  const url = new URL(base && !absolute ? (path ? `${base}/${path.replace(/^\/+/, '')}` : base) : path);
  if (config.params) {
    const serializer = config.paramsSerializer;
    const serialize = typeof serializer === 'function' ? serializer : serializer?.serialize;
    const query = serialize
      ? serialize(config.params, serializer as never)
      : new URLSearchParams(Object.entries(config.params as Record<string, unknown>).filter(([, v]) => v !== undefined && v !== null).map(([k, v]) => [k, String(v)])).toString();
    if (query) url.search = url.search ? `${url.search}&${query}` : query;
  }
  return url;
}

/**
 * axios's transport over httpRequest: axios still serializes the body, parses the answer and builds its errors. Its
 * calls are counted as calls to `provider`.
 */
export function providerAxiosAdapter(provider: string): AxiosAdapter {
  return (config) => axiosVia(provider, config);
}

/** The axios transport for calls that name no provider. */
export const axiosAdapter = providerAxiosAdapter('other');

async function axiosVia(provider: string, config: InternalAxiosRequestConfig): ReturnType<AxiosAdapter> {
  const timeout = config.timeout ? AbortSignal.timeout(config.timeout) : undefined;
  const own = config.signal as AbortSignal | undefined;
  const signal = timeout && own ? AbortSignal.any([timeout, own]) : (timeout ?? own);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(AxiosHeaders.from(config.headers).toJSON())) {
    if (value !== undefined && value !== null) headers[name] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  const data = config.data as unknown;
  if (data !== undefined && data !== null && typeof data !== 'string' && !(data instanceof Uint8Array)) {
    throw new AxiosError('axiosAdapter sends only string or byte bodies', AxiosError.ERR_BAD_REQUEST, config);
  }
  let answer: HttpAnswer;
  try {
    answer = await httpRequest(axiosUrl(config), { method: (config.method ?? 'get').toUpperCase(), headers, body: data ?? undefined, signal, provider });
  } catch (err) {
    if (timeout?.aborted) throw new AxiosError(`timeout of ${config.timeout}ms exceeded`, AxiosError.ECONNABORTED, config);
    if (own?.aborted) throw new AxiosError('canceled', AxiosError.ERR_CANCELED, config);
    const code = (err as { code?: string }).code;
    throw AxiosError.from(err as Error, code, config);
  }
  const response = {
    data: config.responseType === 'arraybuffer' ? answer.body : answer.body.toString('utf8'),
    status: answer.status,
    statusText: answer.statusText,
    headers: AxiosHeaders.from(answer.headers as Record<string, string>),
    config,
    request: undefined,
  };
  if (config.validateStatus && !config.validateStatus(answer.status)) {
    const code = answer.status >= 500 ? AxiosError.ERR_BAD_RESPONSE : AxiosError.ERR_BAD_REQUEST;
    throw new AxiosError(`Request failed with status code ${answer.status}`, code, config, undefined, response);
  }
  return response;
}
