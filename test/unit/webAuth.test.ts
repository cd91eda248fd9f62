import { expect } from 'chai';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { requireAdminToken, requireBasicAuth, requireBearerToken } from '../../src/web/auth.ts';
import { secretEquals } from '../../core/secretEquals.ts';
import { jsonErrors } from '../../core/http/httpError.ts';

const USER = 'operator';
const PASSWORD = 'pa:ss:word'; // contains ':' on purpose
const TOKEN = 'tok_0123456789abcdefABCDEF';
const OTHER_TOKEN = 'tok_metrics_0123456789abcdef';
const REALM = 'Clawdbot operators';

const basic = (credentials: string) => 'Basic ' + Buffer.from(credentials, 'utf8').toString('base64');

describe('web auth', () => {
  describe('secretEquals', () => {
    it('is true for equal strings', () => {
      expect(secretEquals('s3cret', 's3cret')).to.equal(true);
      expect(secretEquals('ünïcødé', 'ünïcødé')).to.equal(true);
    });

    it('is false for unequal strings of the same length', () => {
      expect(secretEquals('s3cret', 's3creT')).to.equal(false);
    });

    it('is false, without throwing, for different lengths', () => {
      expect(secretEquals('s3cret', 's3cret!')).to.equal(false);
      expect(secretEquals('s3cret!', 's3cret')).to.equal(false);
    });

    it('handles empty strings', () => {
      expect(secretEquals('', '')).to.equal(true);
      expect(secretEquals('', 's3cret')).to.equal(false);
      expect(secretEquals('s3cret', '')).to.equal(false);
    });
  });

  describe('middlewares in a Koa app', () => {
    let server: Server;
    let base: string;
    let reached: string[];

    before(async () => {
      const app = new Koa();
      app.use(jsonErrors);
      app.use(async (ctx, next) => {
        if (ctx.path.startsWith('/basic')) return requireBasicAuth([{ user: USER, password: PASSWORD }], REALM)(ctx, next);
        if (ctx.path.startsWith('/admin')) return requireAdminToken(TOKEN)(ctx, next);
        if (ctx.path.startsWith('/either')) return requireBearerToken([TOKEN, OTHER_TOKEN], 'send a token')(ctx, next);
        return next();
      });
      app.use(async (ctx) => {
        reached.push(ctx.path);
        ctx.body = { ok: true };
      });
      server = createServer(app.callback()).listen(0, '127.0.0.1');
      await once(server, 'listening');
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    beforeEach(() => {
      reached = [];
    });

    const get = (path: string, authorization?: string) =>
      fetch(base + path, { headers: authorization === undefined ? {} : { authorization } });

    async function expectUnauthorized(res: Response, basicRealm: boolean) {
      expect(res.status).to.equal(401);
      expect(res.headers.get('content-type')).to.match(/^application\/json/);
      const body = (await res.json()) as { error: string; reason: string };
      expect(body.error).to.equal('unauthorized');
      expect(body.reason).to.be.a('string').and.not.be.empty;
      if (basicRealm) {
        expect(res.headers.get('www-authenticate')).to.equal(`Basic realm="${REALM}", charset="UTF-8"`);
      } else {
        expect(res.headers.get('www-authenticate')).to.equal(null);
      }
      expect(reached).to.deep.equal([]);
    }

    describe('requireBasicAuth', () => {
      it('runs the next middleware for the right credentials (a password with ":" splits on the first ":")', async () => {
        const res = await get('/basic/queues', basic(`${USER}:${PASSWORD}`));
        expect(res.status).to.equal(200);
        expect(await res.json()).to.deep.equal({ ok: true });
        expect(reached).to.deep.equal(['/basic/queues']);
      });

      it('accepts a lower-case scheme', async () => {
        const res = await get('/basic', basic(`${USER}:${PASSWORD}`).replace('Basic', 'basic'));
        expect(res.status).to.equal(200);
      });

      it('answers 401 for a wrong user', async () => {
        await expectUnauthorized(await get('/basic', basic(`admin:${PASSWORD}`)), true);
      });

      it('answers 401 for a wrong password', async () => {
        await expectUnauthorized(await get('/basic', basic(`${USER}:pa:ss:wordX`)), true);
        await expectUnauthorized(await get('/basic', basic(`${USER}:pa`)), true);
        await expectUnauthorized(await get('/basic', basic(`${USER}:`)), true);
      });

      it('answers 401 when the user is empty or there is no ":"', async () => {
        await expectUnauthorized(await get('/basic', basic(`:${PASSWORD}`)), true);
        await expectUnauthorized(await get('/basic', basic(`${USER}${PASSWORD}`)), true);
      });

      it('answers 401 without an Authorization header', async () => {
        await expectUnauthorized(await get('/basic'), true);
      });

      it('answers 401 for malformed base64 and other schemes', async () => {
        await expectUnauthorized(await get('/basic', 'Basic !!!not-base64!!!'), true);
        await expectUnauthorized(await get('/basic', 'Basic'), true);
        await expectUnauthorized(await get('/basic', `Bearer ${TOKEN}`), true);
        // Right credentials, but not base64-encoded.
        await expectUnauthorized(await get('/basic', `Basic ${USER}:${PASSWORD}`), true);
      });
    });

    describe('requireAdminToken', () => {
      it('runs the next middleware for the right bearer token', async () => {
        const res = await get('/admin/instances', `Bearer ${TOKEN}`);
        expect(res.status).to.equal(200);
        expect(reached).to.deep.equal(['/admin/instances']);
      });

      it('accepts a lower-case scheme', async () => {
        expect((await get('/admin', `bearer ${TOKEN}`)).status).to.equal(200);
      });

      it('answers 401 for a wrong token, a prefix of it, or a longer one', async () => {
        await expectUnauthorized(await get('/admin', 'Bearer wrong'), false);
        await expectUnauthorized(await get('/admin', `Bearer ${TOKEN.slice(0, -1)}`), false);
        await expectUnauthorized(await get('/admin', `Bearer ${TOKEN}x`), false);
      });

      it('answers 401 without a header, without the scheme, or with basic credentials', async () => {
        await expectUnauthorized(await get('/admin'), false);
        await expectUnauthorized(await get('/admin', TOKEN), false);
        await expectUnauthorized(await get('/admin', 'Bearer '), false);
        await expectUnauthorized(await get('/admin', basic(`${USER}:${TOKEN}`)), false);
        await expectUnauthorized(await get('/admin', `Bearer ${TOKEN} extra`), false);
      });
    });

    describe('requireBearerToken', () => {
      it('takes any one of its tokens, and nothing else', async () => {
        expect((await get('/either', `Bearer ${TOKEN}`)).status).to.equal(200);
        expect((await get('/either', `Bearer ${OTHER_TOKEN}`)).status).to.equal(200);
        expect(reached).to.deep.equal(['/either', '/either']);
        reached = [];
        await expectUnauthorized(await get('/either', `Bearer ${TOKEN}${OTHER_TOKEN}`), false);
        await expectUnauthorized(await get('/either', `Bearer ${OTHER_TOKEN.slice(0, -1)}`), false);
        await expectUnauthorized(await get('/either'), false);
      });
    });

    it('leaves unprotected routes alone', async () => {
      expect((await get('/open')).status).to.equal(200);
      expect(reached).to.deep.equal(['/open']);
    });
  });
});
