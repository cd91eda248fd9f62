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
 * prose moved into template files (src/workspace/templates/), and computed again when TOOLS.md, AGENTS.md and the
 * memory skill came to name the assistant's tools, when the connection skills named theirs, and when TOOLS.md came to say which services are connected, so a template that drifts by one byte fails here.
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
    starter: '29dc101d02e2b3c45c9795f99db3cf6a8738279bee216ad9ede2fa66edd1a28c',
    pro: 'fd1a5f3eaae2c3021ef55ee1145afc142d9592d9d8da80a58ebd8488bac2e1c7',
    team: '5ed8a6867705eefb7a1af44d99fa544d74199e4b9b9138de34f6fa88920c52fa',
  },
  anonymous: {
    starter: '214fbdf399477847cdaf4322ab5c23efaa08a400e320594ea4a1175f5f203abd',
    pro: '777833159d6531c11d91511012359f70cae3661db7c96b76cc544fe144d2128b',
    team: 'bb3bd3d99fab41c4e998b421b935ab6385f9e257213d556e5790f5de31a176b2',
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
