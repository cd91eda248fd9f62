/** The providers' HTTP client against a real local server: fetch's and axios's contracts over kept-alive connections. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import axios, { AxiosError } from 'axios';
import { expect } from 'chai';
import { isTransientNetworkError } from '../../src/errors.ts';
import { axiosAdapter, httpFetch, providerAxiosAdapter, providerFetch } from '../../src/providers/http.ts';
import { metrics } from '../../src/metrics/recorder.ts';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  socket: unknown;
}

describe('providers HTTP client', () => {
  let server: http.Server;
  let base: string;
  const seen: Seen[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, body, socket: req.socket });
        const path = new URL(req.url!, 'http://x').pathname.replace(/^\/api/, '');
        if (path === '/slow') return void setTimeout(() => res.end('late'), 2_000);
        if (path === '/empty') return void res.writeHead(204).end();
        if (path === '/busy') {
          res.writeHead(423, { 'content-type': 'application/json', 'retry-after': '3' });
          return void res.end(JSON.stringify({ code: 'LOCKED', message: 'project busy' }));
        }
        if (path === '/huge') {
          res.writeHead(200);
          const chunk = Buffer.alloc(1024 * 1024, 'x');
          for (let i = 0; i < 17; i++) res.write(chunk);
          return void res.end();
        }
        res.writeHead(201, { 'content-type': 'application/json', 'set-cookie': ['a=1', 'b=2'] });
        res.end(JSON.stringify({ echo: body, query: new URL(req.url!, 'http://x').search }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(() => (seen.length = 0));

  describe('httpFetch', () => {
    it('sends the method, headers and body, answers like fetch, and reuses the connection', async () => {
      const first = await httpFetch(`${base}/echo`, { method: 'POST', headers: new Headers({ 'x-token': 't1', 'content-type': 'application/json' }), body: '{"a":1}' });
      expect(first.status).to.equal(201);
      expect(first.ok).to.equal(true);
      expect(first.headers.get('content-type')).to.equal('application/json');
      expect(first.headers.get('set-cookie')).to.equal('a=1, b=2');
      expect(await first.json()).to.deep.equal({ echo: '{"a":1}', query: '' });
      const second = await httpFetch(new URL(`${base}/echo?x=1`));
      expect(await second.json()).to.deep.equal({ echo: '', query: '?x=1' });
      expect(seen.map((s) => [s.method, s.url, s.headers['x-token'], s.headers['content-length']])).to.deep.equal([
        ['POST', '/echo', 't1', '7'],
        ['GET', '/echo?x=1', undefined, undefined],
      ]);
      expect(seen[0]!.socket).to.equal(seen[1]!.socket);
    });

    it('gives no body for 204 and a not-ok answer for 4xx', async () => {
      const empty = await httpFetch(`${base}/empty`);
      expect([empty.status, await empty.text()]).to.deep.equal([204, '']);
      const busy = await httpFetch(`${base}/busy`);
      expect([busy.status, busy.ok, busy.headers.get('retry-after')]).to.deep.equal([423, false, '3']);
    });

    it('fails like fetch: a refused connection is a transient "fetch failed", an abort rejects with the reason', async () => {
      const closed = http.createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const port = (closed.address() as AddressInfo).port;
      await new Promise((resolve) => closed.close(resolve));
      const refused = await httpFetch(`http://127.0.0.1:${port}/`).then(() => undefined, (err: unknown) => err);
      expect(refused).to.be.instanceOf(TypeError).with.property('message', 'fetch failed');
      expect((refused as Error).cause).to.have.property('code', 'ECONNREFUSED');
      expect(isTransientNetworkError(refused)).to.equal(true);

      const timedOut = await httpFetch(`${base}/slow`, { signal: AbortSignal.timeout(100) }).then(() => undefined, (err: unknown) => err);
      expect(timedOut).to.have.property('name', 'TimeoutError');
      expect(isTransientNetworkError(timedOut)).to.equal(true);
    });

    it('refuses an answer over 16 MB, a body it cannot send and a Request', async () => {
      const huge = await httpFetch(`${base}/huge`).then(() => undefined, (err: unknown) => err);
      expect((huge as Error).cause).to.have.property('message').that.matches(/larger than/);
      const stream = new ReadableStream();
      const refused = await httpFetch(`${base}/echo`, { method: 'POST', body: stream }).then(() => undefined, (err: unknown) => err);
      expect(refused).to.be.instanceOf(TypeError).with.property('message').that.matches(/only string or byte bodies/);
      const request = await httpFetch(new Request(`${base}/echo`, { method: 'POST', body: 'x' })).then(() => undefined, (err: unknown) => err);
      expect(request).to.be.instanceOf(TypeError).with.property('message').that.matches(/a URL, not a Request/);
      expect(seen).to.have.length(1); // the huge answer's request only: neither refused one was sent
    });
  });

  describe('axiosAdapter', () => {
    const client = () =>
      axios.create({
        baseURL: `${base}/api/`,
        timeout: 300,
        adapter: axiosAdapter,
        headers: { Authorization: 'Bearer key' },
        paramsSerializer: (params) => Object.entries(params).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : v}`).join('&'),
      });

    it('joins the base URL, serializes params and the JSON body, and parses the JSON answer', async () => {
      const answer = await client().post('/branches', { name: 'ws-1' }, { params: { ids: ['a', 'b'], limit: 2 } });
      expect(answer.status).to.equal(201);
      expect(answer.data).to.deep.equal({ echo: '{"name":"ws-1"}', query: '?ids=a,b&limit=2' });
      expect(answer.headers['content-type']).to.equal('application/json');
      expect(seen[0]).to.include({ method: 'POST', url: '/api/branches?ids=a,b&limit=2' });
      expect(seen[0]!.headers).to.include({ authorization: 'Bearer key', 'content-type': 'application/json' });
    });

    it('rejects a refused status with its parsed answer, and timeouts and refused connections with their codes', async () => {
      const busy = await client().get('/busy').then(() => undefined, (err: unknown) => err);
      expect(busy).to.be.instanceOf(AxiosError).with.property('code', AxiosError.ERR_BAD_REQUEST);
      const response = (busy as AxiosError).response!;
      expect([response.status, response.data, response.headers['retry-after']]).to.deep.equal([423, { code: 'LOCKED', message: 'project busy' }, '3']);

      const slow = await client().get('/slow').then(() => undefined, (err: unknown) => err);
      expect(slow).to.be.instanceOf(AxiosError).with.property('code', AxiosError.ECONNABORTED);
      expect((slow as AxiosError).response).to.equal(undefined);

      const refused = await axios.get('http://127.0.0.1:1/', { adapter: axiosAdapter }).then(() => undefined, (err: unknown) => err);
      expect(refused).to.be.instanceOf(AxiosError).with.property('code', 'ECONNREFUSED');
    });
  });

  describe('call counting', () => {
    it('counts each call once by the provider its caller names, as what came of it (an answer or none)', async () => {
      metrics.drain();
      const railway = providerFetch('railway');
      await railway(`${base}/echo`);
      await railway(`${base}/busy`);
      await railway('http://127.0.0.1:1/').catch(() => undefined);
      await axios.get(`${base}/echo`, { adapter: providerAxiosAdapter('neon') });
      await axios.get(`${base}/huge`, { adapter: providerAxiosAdapter('neon') }).catch(() => undefined);
      await httpFetch(`${base}/empty`);
      expect(Object.fromEntries(metrics.drain().families.provider_calls)).to.deep.equal({
        'railway\tok': 1,
        'railway\tclient_error': 1,
        'railway\tnetwork_error': 1,
        'neon\tok': 1,
        'neon\tnetwork_error': 1, // refused for its size: no answer the caller could use
        'other\tok': 1,
      });
    });
  });
});
