/** Stripe's signature header and the shape of a JSON body that can be kept: pure checks on raw text. */
import { createHmac } from 'node:crypto';
import { expect } from 'chai';
import { jsonShapeProblem } from '../../core/http/jsonShape.ts';
import { HttpError } from '../../core/http/httpError.ts';
import { verifyStripeSignature } from '../../src/web/stripeSignature.ts';

const SECRET = 'whsec_unit';
const BODY = Buffer.from('{"id":"evt_1"}');
const NOW = 1_800_000_000;
const sign = (t: number, secret = SECRET, body = BODY) => createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex');

function refusal(header: string, now = NOW): string | undefined {
  try {
    verifyStripeSignature(BODY, header, SECRET, now);
    return undefined;
  } catch (err) {
    expect(err).to.be.instanceOf(HttpError);
    expect((err as HttpError).code).to.equal('invalid_signature');
    return (err as HttpError).reason;
  }
}

describe('Stripe signature', () => {
  it('accepts the body signed now, and any v1 of a secret being rolled', () => {
    expect(refusal(`t=${NOW},v1=${sign(NOW)}`)).to.equal(undefined);
    expect(refusal(`t=${NOW},v1=${sign(NOW, 'whsec_old')},v1=${sign(NOW)},v0=abc`)).to.equal(undefined);
    expect(refusal(`t=${NOW - 299},v1=${sign(NOW - 299)}`)).to.equal(undefined);
  });

  it('refuses another secret or body, and a time more than five minutes away either way', () => {
    expect(refusal(`t=${NOW},v1=${sign(NOW, 'whsec_other')}`)).to.match(/does not match/);
    expect(refusal(`t=${NOW},v1=${sign(NOW, SECRET, Buffer.from('{}'))}`)).to.match(/does not match/);
    expect(refusal(`t=${NOW - 301},v1=${sign(NOW - 301)}`)).to.match(/5 minutes/);
    expect(refusal(`t=${NOW + 600},v1=${sign(NOW + 600)}`)).to.match(/5 minutes/);
  });

  it('calls every malformed header an invalid signature', () => {
    for (const header of ['', 't=', `t=${NOW},v1=`, `v1=${sign(NOW)}`, `t=abc,v1=${sign(NOW)}`, `t=${NOW},t=${NOW},v1=${sign(NOW)}`, `t=${NOW},v1=${sign(NOW).slice(2)}`, ',,,', '=']) {
      expect(refusal(header), header).to.match(/malformed/);
    }
  });
});

describe('JSON shape', () => {
  it('keeps ordinary JSON, brackets and escapes inside strings included', () => {
    expect(jsonShapeProblem('{"a":[1,{"b":"[[[{{{"}],"c":"say \\"hi\\" \\\\u0000 literally"}')).to.equal(undefined);
    expect(jsonShapeProblem(`${'['.repeat(64)}${']'.repeat(64)}`)).to.equal(undefined);
  });

  it('refuses a NUL, raw or escaped, and nesting past the limit', () => {
    expect(jsonShapeProblem('{"a":"x\\u0000y"}')).to.match(/NUL/);
    expect(jsonShapeProblem('{"a":"x\u0000y"}')).to.match(/NUL/);
    expect(jsonShapeProblem(`${'['.repeat(65)}${']'.repeat(65)}`)).to.match(/deeper than 64/);
    expect(jsonShapeProblem(`{"a":${'{"b":'.repeat(100)}1${'}'.repeat(100)}}`)).to.match(/deeper/);
  });
});
