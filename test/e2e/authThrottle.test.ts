/**
 * Failed authentication is throttled per client address: past AUTH_FAILURE_LIMIT 401s a minute, that address's
 * requests with credentials answer 429 with Retry-After, even with the right ones; on the control plane (admin API,
 * Bull Board and /metrics share the count) and on a customer's runtime (its API keys).
 */
import { expect } from 'chai';
import { ADMIN, startHarness, type Harness } from '../support/harness.ts';
import { startRuntimeFixture, type RuntimeFixture } from '../support/runtimeFixture.ts';

describe('failed authentication is throttled per address', function () {
  this.timeout(60_000);

  describe('control plane', () => {
    let h: Harness;
    before(async () => {
      h = await startHarness({ AUTH_FAILURE_LIMIT: '4' }, { webOnly: true });
    });
    after(async () => h?.close());

    const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    const get = (pathname: string, authorization?: string) => fetch(`${h.url}${pathname}`, { headers: authorization ? { authorization } : {} });

    it('answers 429 with Retry-After past the limit, to the right credentials too, on every operator door', async () => {
      expect((await get('/api/admin/instances', `Bearer ${ADMIN.token}`)).status).to.equal(200);
      const wrong = [
        await get('/api/admin/instances', 'Bearer wrong-token-0123456789'),
        await get('/admin/queues', basic(ADMIN.user, 'guess-1')),
        await get('/metrics', 'Bearer wrong-token-0123456789'),
        await get('/admin/queues', basic(ADMIN.user, 'guess-2')),
      ];
      expect(wrong.map((r) => r.status)).to.deep.equal([401, 401, 401, 401]);

      for (const [pathname, authorization] of [
        ['/api/admin/instances', `Bearer ${ADMIN.token}`],
        ['/admin/queues', basic(ADMIN.user, ADMIN.password)],
        ['/metrics', `Bearer ${ADMIN.token}`],
      ] as const) {
        const refused = await get(pathname, authorization);
        expect(refused.status, pathname).to.equal(429);
        expect(Number(refused.headers.get('retry-after')), pathname).to.be.within(1, 60);
        expect(((await refused.json()) as { error: string }).error).to.equal('too_many_failures');
      }
      // What needs no credentials is still answered.
      expect((await get('/health')).status).to.equal(200);
    });
  });

  describe('runtime', () => {
    let runtime: RuntimeFixture;
    before(async () => {
      runtime = await startRuntimeFixture({ env: { AUTH_FAILURE_LIMIT: '3' } });
    });
    after(async () => runtime?.close());

    const status = (key: string) => fetch(`${runtime.url}/status`, { headers: { authorization: `Bearer ${key}` } });

    it('answers 429 to the address that guessed keys, the real key included, until the minute is over', async () => {
      expect((await status(runtime.key)).status).to.equal(200);
      const guesses = await Promise.all([1, 2, 3].map((n) => status(`claw_${'x'.repeat(42)}${n}`)));
      expect(guesses.map((r) => r.status)).to.deep.equal([401, 401, 401]);
      const refused = await status(runtime.key);
      expect(refused.status).to.equal(429);
      expect(Number(refused.headers.get('retry-after'))).to.be.within(1, 60);
      expect((await fetch(`${runtime.url}/health`)).status).to.equal(200);
    });
  });
});
