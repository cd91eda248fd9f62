import { expect } from 'chai';
import { PermanentError, TransientError } from '../../src/errors.ts';
import type { CheckoutSessionSnapshot } from '../../src/providers/stripe.ts';
import { cachedCheckoutSessions } from '../../src/web/welcome/sessionCache.ts';

describe('the welcome page’s cache of Checkout Sessions', () => {
  const session = (id: string, paymentStatus: string): CheckoutSessionSnapshot =>
    ({ id, mode: 'subscription', status: 'complete', paymentStatus, customerId: 'cus_1', subscriptionId: 'sub_1', created: 0 }) as CheckoutSessionSnapshot;

  function setUp(answer: (id: string) => CheckoutSessionSnapshot) {
    let clock = 0;
    const asked: string[] = [];
    const cache = cachedCheckoutSessions(
      {
        async checkoutSession(id) {
          asked.push(id);
          return answer(id);
        },
      },
      () => clock,
    );
    return { cache, asked, advance: (ms: number) => (clock += ms) };
  }

  it('asks Stripe once for a paid session, for an hour', async () => {
    const { cache, asked, advance } = setUp((id) => session(id, 'paid'));
    for (let i = 0; i < 5; i++) expect((await cache.checkoutSession('cs_a')).paymentStatus).to.equal('paid');
    expect(asked).to.deep.equal(['cs_a']);
    advance(60 * 60_000 + 1);
    await cache.checkoutSession('cs_a');
    expect(asked).to.deep.equal(['cs_a', 'cs_a']);
  });

  it('asks again each time while a session is unpaid, since its payment may still come', async () => {
    const { cache, asked } = setUp((id) => session(id, 'unpaid'));
    await cache.checkoutSession('cs_b');
    await cache.checkoutSession('cs_b');
    expect(asked).to.have.length(2);
  });

  it('keeps an unknown session for a minute, and never an outage', async () => {
    let fault: Error = new PermanentError('no such checkout session');
    const { cache, asked, advance } = setUp(() => {
      throw fault;
    });
    for (let i = 0; i < 3; i++) {
      const err = await cache.checkoutSession('cs_x').catch((e: Error) => e);
      expect(err).to.be.instanceOf(PermanentError);
    }
    expect(asked).to.have.length(1);
    advance(60_001);
    fault = new TransientError('Stripe answered 500');
    for (let i = 0; i < 2; i++) expect(await cache.checkoutSession('cs_x').catch((e: Error) => e)).to.be.instanceOf(TransientError);
    expect(asked).to.have.length(3);
  });
});
