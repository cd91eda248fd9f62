/**
 * The bench suite at its smoke size: every section runs and reports each figure beside its anchor, so a change
 * that breaks a benchmark is caught here. Nothing about speed is asserted (figures at this size mean nothing; a
 * full `npm run bench` run is what docs/performance.md records).
 */
import { expect } from 'chai';
import { runBench } from '../../bench/run.ts';
import { markdownTable } from '../../bench/lib/report.ts';

describe('bench suite (smoke size, no timing asserted)', function () {
  this.timeout(600_000);

  it('runs every section and reports every figure with its anchor and goal', async () => {
    const results = await runBench({ size: 'smoke' });
    const rows = Object.values(results.sections).flatMap((s) => s.rows);
    expect(Object.keys(results.sections)).to.include.members(['provisioning']);
    expect(rows.map((r) => r.figure).join('\n')).to.match(/one provision to active/).and.match(/makespan/).and.match(/worker CPU per provision/);
    for (const row of rows) {
      expect(row.value, row.figure).to.be.a('number').and.satisfy(Number.isFinite);
      expect(row.goal, row.figure).to.be.a('string').and.not.equal('');
      if (row.anchor !== null) {
        expect(row.anchorValue, row.figure).to.be.a('number').and.satisfy((n: number) => Number.isFinite(n));
        expect(row.ratio, row.figure).to.be.a('number');
      }
    }
    const table = markdownTable(rows);
    expect(table.split('\n')).to.have.length(rows.length + 2);
  });
});
