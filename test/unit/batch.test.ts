/** The batcher: calls made together go out as few batches, never more at once than allowed, each settled alone. */
import { expect } from 'chai';
import { Batcher } from '../../src/db/batch.ts';
import { rejection } from '../support/rejection.ts';

/** A batch runner that holds every batch until the test releases it, and keeps what it was given. */
function heldRunner() {
  const batches: number[][] = [];
  const held: (() => void)[] = [];
  let inFlight = 0;
  let mostInFlight = 0;
  const run = (items: number[]): Promise<PromiseSettledResult<number>[]> => {
    batches.push(items);
    inFlight++;
    mostInFlight = Math.max(mostInFlight, inFlight);
    return new Promise((resolve) =>
      held.push(() => {
        inFlight--;
        resolve(items.map((n) => (n < 0 ? { status: 'rejected', reason: new Error(`bad ${n}`) } : { status: 'fulfilled', value: n * 10 })));
      }),
    );
  };
  const releaseAll = async () => {
    while (held.length) {
      held.shift()!();
      await new Promise((r) => setImmediate(r));
    }
  };
  return { run, batches, releaseAll, mostInFlight: () => mostInFlight };
}

describe('Batcher', () => {
  it('sends calls at once up to its concurrency, gathers the rest, and answers each call with its own result', async () => {
    const runner = heldRunner();
    const batcher = new Batcher(runner.run, { concurrency: 2, maxItems: 100, maxWeight: 1e9, weight: () => 1 });
    const calls = Array.from({ length: 10 }, (_, i) => batcher.call(i + 1));
    expect(runner.batches).to.deep.equal([[1], [2]]); // the first two alone, without waiting
    await runner.releaseAll();
    expect(await Promise.all(calls)).to.deep.equal([10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    expect(runner.batches).to.deep.equal([[1], [2], [3, 4, 5, 6, 7, 8, 9, 10]]);
    expect(runner.mostInFlight()).to.equal(2);
  });

  it('keeps batches within maxItems and maxWeight, and sends an item heavier than maxWeight alone', async () => {
    const runner = heldRunner();
    const batcher = new Batcher(runner.run, { concurrency: 1, maxItems: 3, maxWeight: 10, weight: (n) => n });
    const calls = [1, 2, 3, 4, 5, 50, 1].map((n) => batcher.call(n));
    await runner.releaseAll();
    await Promise.all(calls);
    expect(runner.batches).to.deep.equal([[1], [2, 3, 4], [5], [50], [1]]);
  });

  it('fails only the call whose item failed', async () => {
    const runner = heldRunner();
    const batcher = new Batcher(runner.run, { concurrency: 1, maxItems: 100, maxWeight: 1e9, weight: () => 1 });
    const calls = Promise.allSettled([1, 2, -3, 4].map((n) => batcher.call(n)));
    await runner.releaseAll();
    expect(runner.batches).to.deep.equal([[1], [2, -3, 4]]);
    const [one, two, three, four] = await calls;
    expect([one, two, four]).to.deep.equal([10, 20, 40].map((value) => ({ status: 'fulfilled', value })));
    expect(three).to.have.property('status', 'rejected');
    expect((three as PromiseRejectedResult).reason.message).to.equal('bad -3');
  });

  it('fails every call of a batch whose run throws, and goes on with the next batch', async () => {
    let runs = 0;
    const batcher = new Batcher<number, number>(
      async (items) => {
        runs++;
        if (runs === 1) throw new Error('connection lost');
        return items.map((n) => ({ status: 'fulfilled', value: n }));
      },
      { concurrency: 1, maxItems: 100, maxWeight: 1e9, weight: () => 1 },
    );
    expect((await rejection(batcher.call(1))).message).to.equal('connection lost');
    expect(await batcher.call(2)).to.equal(2);
  });
});
