import { expect } from 'chai';
import { buildSystemPrompt, estimateTokens, type PromptInput } from '../../runtime/src/prompt.ts';

const now = new Date('2026-11-26T09:30:00Z');
const input = (over: Partial<PromptInput> = {}): PromptInput => ({
  workspace: {
    soul: 'SOUL: be kind and brief.',
    user: 'USER: Ann, prefers metric units.',
    agents: 'AGENTS: use memory.',
    tools: 'TOOLS: chat, memory.',
    memory: 'MEMORY: Ann lives in Lyon.',
    today: '# 2026-11-26\n\n- 08:00 UTC — early note\n- 09:00 UTC — latest note\n',
    yesterday: '# 2026-11-25\n\n- 10:00 UTC — yesterday note\n',
  },
  capabilities: 'CAPABILITIES: memory_search.',
  skills: [{ name: 'web_search', description: 'Search the web.' }],
  memories: [{ content: "Ann's dog is Biscuit", tags: ['pets'] }],
  now,
  budgetTokens: 8_000,
  ...over,
});

describe('system prompt', () => {
  it('holds every part, most important first', () => {
    const prompt = buildSystemPrompt(input());
    const order = ['SOUL: be kind', 'USER: Ann', 'AGENTS:', 'CAPABILITIES:', 'TOOLS:', 'web_search: Search the web.', 'MEMORY: Ann lives', 'latest note', 'yesterday note', "Ann's dog is Biscuit [pets]"];
    const positions = order.map((part) => prompt.indexOf(part));
    expect(positions.every((p) => p >= 0), JSON.stringify(positions)).to.equal(true);
    expect([...positions].sort((a, b) => a - b)).to.deep.equal(positions);
    expect(prompt).to.include('2026-11-26 09:30 UTC');
  });

  it('is deterministic', () => {
    expect(buildSystemPrompt(input())).to.equal(buildSystemPrompt(input()));
  });

  it('stays within the token budget, cutting documents at the end and daily logs at the start', () => {
    const long = (label: string) => `${label} ` + 'word '.repeat(4_000);
    const prompt = buildSystemPrompt(
      input({
        budgetTokens: 1_200,
        workspace: { soul: long('SOUL-START'), user: 'USER: Ann', today: 'OLD-ENTRY ' + 'x '.repeat(4_000) + ' NEWEST-ENTRY' },
      }),
    );
    expect(estimateTokens(prompt)).to.be.at.most(1_200);
    expect(prompt).to.include('SOUL-START').and.include('[…]');
    expect(prompt).to.not.include('USER: Ann'); // SOUL.md took the whole budget
  });

  it('keeps the newest end of a daily log when it is cut', () => {
    const prompt = buildSystemPrompt(
      input({ budgetTokens: 700, workspace: { soul: 'S', today: 'OLD-ENTRY ' + 'x '.repeat(3_000) + ' NEWEST-ENTRY' } }),
    );
    expect(prompt).to.include('NEWEST-ENTRY').and.not.include('OLD-ENTRY');
  });

  it('leaves out empty sections', () => {
    const prompt = buildSystemPrompt(input({ workspace: { soul: 'S' }, skills: [], memories: [] }));
    expect(prompt).to.not.include('## Enabled skills').and.not.include('## Stored memories');
  });
});
