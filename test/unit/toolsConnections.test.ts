import { expect } from 'chai';
import { connectionsSection, withConnectionsSection } from '../../core/workspace/connections.ts';

describe("TOOLS.md's connections section", () => {
  const section = connectionsSection(['chat', 'gmail', 'github'], new Map([['gmail', 'ada@example.com']]));

  it('lists the plan’s connection features only, connected ones with their account', () => {
    expect(section).to.equal(
      '## Connected now\n\n- gmail: connected (ada@example.com)\n- github: not connected; the customer connects it with POST /api/connections/github\n\n',
    );
    expect(connectionsSection(['chat', 'memory'], new Map())).to.equal('');
  });

  it('goes before the notes, replaces itself in place, and keeps what follows', () => {
    const file = '# TOOLS.md\n\n- **chat**\n\n## Notes\n\nmine\n';
    const added = withConnectionsSection(file, section);
    expect(added).to.equal(`# TOOLS.md\n\n- **chat**\n\n${section}## Notes\n\nmine\n`);
    const replaced = withConnectionsSection(added, connectionsSection(['gmail'], new Map()));
    expect(replaced).to.equal(`# TOOLS.md\n\n- **chat**\n\n${connectionsSection(['gmail'], new Map())}## Notes\n\nmine\n`);
    expect(withConnectionsSection('# TOOLS.md\n', section)).to.equal(`# TOOLS.md\n\n${section}`);
  });
});
