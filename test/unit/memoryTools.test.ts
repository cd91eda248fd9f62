import { expect } from 'chai';
import { memoryLine, withoutMemoryLine } from '../../runtime/src/tools/memoryTools.ts';

describe('MEMORY.md lines of the memory tools', () => {
  it('writes a fact on one line, marked with its id, and cuts a long one', () => {
    expect(memoryLine('Mia lives\nin  Oslo', '7')).to.equal('- Mia lives in Oslo (memory #7)');
    const long = memoryLine('x'.repeat(600), '8');
    expect(long).to.match(/^- x{499}… \(memory #8\)$/);
  });

  it('takes out the lines of one memory only, leaving the customer’s own lines', () => {
    const file = '# MEMORY.md\n\n- Likes tea (memory #1)\n- Own note about memory #1\n- Lives in Lyon (memory #12)\n';
    expect(withoutMemoryLine(file, '1')).to.equal('# MEMORY.md\n\n- Own note about memory #1\n- Lives in Lyon (memory #12)\n');
    expect(withoutMemoryLine(file, '2')).to.equal(file);
  });
});
