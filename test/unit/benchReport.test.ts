import { expect } from 'chai';
import { markdownTable, percentile, ratio, sized } from '../../bench/lib/report.ts';

describe('bench report', () => {
  it('takes percentiles by rank (nearest rank, no interpolation)', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 … 1, unsorted on purpose
    expect(percentile(values, 50)).to.equal(50);
    expect(percentile(values, 99)).to.equal(99);
    expect(percentile(values, 100)).to.equal(100);
    expect(percentile([7], 95)).to.equal(7);
    expect(percentile([], 50)).to.be.NaN;
  });

  it('sizes from BENCH_<NAME>, refusing what is not a positive number', () => {
    expect(sized('UNIT_X', { size: 'smoke' }, { smoke: 3, full: 1000 })).to.equal(3);
    process.env.BENCH_UNIT_X = '42';
    try {
      expect(sized('UNIT_X', { size: 'full' }, { smoke: 3, full: 1000 })).to.equal(42);
      process.env.BENCH_UNIT_X = 'lots';
      expect(() => sized('UNIT_X', { size: 'full' }, { smoke: 3, full: 1000 })).to.throw(/BENCH_UNIT_X must be a positive number/);
    } finally {
      delete process.env.BENCH_UNIT_X;
    }
  });

  it('prints each row with its anchor and ratio, and a dash where there is none', () => {
    const rows = [
      { figure: 'a', anchor: 'b', anchorValue: 4, value: 2, unit: 'ms', better: 'lower' as const, goal: '≤ 1×', met: true },
      { figure: 'rss', anchor: null, anchorValue: null, value: 150, unit: 'MB', better: 'lower' as const, goal: '≤ 200 MB', met: true },
    ];
    expect(ratio(rows[0]!)).to.equal(0.5);
    expect(ratio(rows[1]!)).to.equal(null);
    const lines = markdownTable(rows).split('\n');
    expect(lines[2]).to.equal('| a | b | 4.00 ms | 2.00 ms | 0.50× | ≤ 1× | yes |');
    expect(lines[3]).to.equal('| rss | – | – | 150 MB | – | ≤ 200 MB | yes |');
  });
});
