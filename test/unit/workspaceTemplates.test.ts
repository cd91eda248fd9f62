import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { PLANS, type PlanName } from '../../core/plans.ts';
import { renderWorkspace, type WorkspaceInput } from '../../src/workspace/render.ts';
import type { WorkspaceFile } from '../../core/workspace/files.ts';

/**
 * The rendered workspaces, pinned byte for byte. The digests were computed from the renderer as it was before its
 * prose moved into template files (src/workspace/templates/), so a template that drifts by one byte fails here.
 * Two inputs cover both sides of every branch: a customer with a name (holding backticks), an email and a timezone,
 * and one with neither.
 */
const INPUTS: Record<string, Omit<WorkspaceInput, 'plan'>> = {
  named: {
    workspaceId: 'ws_3f9a2c',
    customer: { name: 'Ada `Lovelace`', email: 'ada@example.com' },
    createdAt: new Date('2025-03-10T04:30:00.000Z'),
    timezone: 'Europe/London',
  },
  anonymous: { workspaceId: 'ws_anon-1', customer: { name: null, email: '' }, createdAt: new Date('2024-12-31T23:59:59.000Z') },
};

const PINNED: Record<string, Record<PlanName, string>> = {
  named: {
    starter: '36793fb0c178c84d887e1d7b89abc8e76d3fd1eb3f8191c66818e343003b2291',
    pro: '15a74f47f2b6a76c2e311d61db5bc87a3b5fc87fb658de6ed77f2b2b52563e52',
    team: 'f99946e6d78b62136babf341992748625bb1b794ddfd7d073456f2f7964bb31e',
  },
  anonymous: {
    starter: '72eb9418f0bb67996c7fea7fe7662433faa7c4bd299338f14dbbec8c11dec928',
    pro: '992b1941fd0d06ba914a6f9a1c5cb93f76c9baa348d4e136f6eab0633879ab58',
    team: 'b5cd78b9cd4a61b68d34183ff6cf6d53291be96cf01b8224b2815ea3919d87da',
  },
};

/** Paths and contents, NUL-separated (neither ever holds a NUL). */
function digest(files: WorkspaceFile[]): string {
  const hash = createHash('sha256');
  for (const { path, content } of files) hash.update(`${path}\0${content}\0`);
  return hash.digest('hex');
}

describe('workspace rendering, pinned', () => {
  for (const [name, input] of Object.entries(INPUTS)) {
    for (const plan of ['starter', 'pro', 'team'] as const) {
      it(`${name} customer, ${plan} plan: byte-identical to the renderer before templates`, () => {
        expect(digest(renderWorkspace({ ...input, plan: PLANS[plan] }))).to.equal(PINNED[name]![plan]);
      });
    }
  }

  it('renders the same from any working directory', async () => {
    const render = new URL('../../src/workspace/render.ts', import.meta.url).href;
    const plans = new URL('../../core/plans.ts', import.meta.url).href;
    const script = `
      const { renderWorkspace } = await import(${JSON.stringify(render)});
      const { PLANS } = await import(${JSON.stringify(plans)});
      const input = ${JSON.stringify(INPUTS.named)};
      const files = renderWorkspace({ ...input, createdAt: new Date(input.createdAt), plan: PLANS.team });
      process.stdout.write(JSON.stringify(files));`;
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', tsx, '--input-type=module', '-e', script], { cwd: tmpdir() });
    expect(digest(JSON.parse(stdout) as WorkspaceFile[])).to.equal(PINNED.named!.team);
  });
});
