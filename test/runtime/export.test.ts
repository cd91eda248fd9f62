/**
 * The customer's export (GET /api/export): their memories, conversations and workspace in one archive, read back
 * with the same reader that verifies the control plane's archives, and nothing of another customer or of a secret.
 */
import { Readable } from 'node:stream';
import { expect } from 'chai';
import { readArchive } from '../../core/archiveFormat.ts';
import { startAnthropicEmulator, type AnthropicEmulator } from '../emulators/anthropicEmulator.ts';
import { startRuntimeFixture, type RuntimeFixture } from '../support/runtimeFixture.ts';

describe('the customer export', function () {
  this.timeout(30_000);
  let model: AnthropicEmulator;
  let ada: RuntimeFixture;
  let bob: RuntimeFixture;

  const api = (rt: RuntimeFixture, path: string, init: RequestInit = {}) =>
    fetch(`${rt.url}${path}`, { ...init, headers: { authorization: `Bearer ${rt.key}`, 'content-type': 'application/json' } });

  before(async () => {
    model = await startAnthropicEmulator();
    const env = { ANTHROPIC_API_KEY: model.apiKey, ANTHROPIC_BASE_URL: model.url, MODEL_MAX_RETRIES: '0' };
    [ada, bob] = await Promise.all([startRuntimeFixture({ plan: 'starter', name: 'Ada', env }), startRuntimeFixture({ plan: 'starter', name: 'Bob', env })]);
  });

  after(async () => {
    await Promise.all([ada?.close(), bob?.close()]);
    await model?.close();
  });

  it('holds the customer’s memories, conversations and workspace, and nothing of another customer or of a key', async () => {
    for (const [rt, secret] of [[ada, 'Ada keeps bees on the roof'], [bob, 'Bob collects Bakelite radios']] as const) {
      expect((await api(rt, '/api/memory', { method: 'POST', body: JSON.stringify({ content: secret, tags: ['hobby'] }) })).status).to.equal(201);
      expect((await api(rt, '/api/chat', { method: 'POST', body: JSON.stringify({ message: `A note about: ${secret}` }) })).status).to.equal(200);
    }

    const response = await api(ada, '/api/export');
    expect(response.status).to.equal(200);
    expect(response.headers.get('content-type')).to.equal('application/gzip');
    expect(response.headers.get('content-disposition')).to.match(new RegExp(`^attachment; filename="clawdbot-export-${ada.workspaceId}-\\d{4}-\\d{2}-\\d{2}\\.jsonl\\.gz"$`));
    expect(response.headers.get('cache-control')).to.equal('no-store');
    const archive = Buffer.from(await response.arrayBuffer());

    const rows: { table: string; row: Record<string, unknown> }[] = [];
    const counts = await readArchive(Readable.from([archive]), async (table, row) => void rows.push({ table, row }));
    const of = (table: string) => rows.filter((r) => r.table === table).map((r) => r.row);
    expect(of('memories').map((m) => m['content'])).to.include('Ada keeps bees on the roof');
    expect(of('conversation_messages').map((m) => m['content'])).to.include('A note about: Ada keeps bees on the roof');
    expect(of('workspace_files').map((f) => f['path'])).to.include.members(['USER.md', 'MEMORY.md', 'TOOLS.md']);
    expect(counts['memories']).to.equal(of('memories').length);

    const text = JSON.stringify(rows);
    expect(text).to.not.include('Bob');
    expect(text).to.not.include(ada.key);
    expect(rows.map((r) => r.table)).to.not.include.members(['api_keys', 'connections', 'webhook_sources']);
  });

  it('gives its connection back: more exports one after another than the runtime’s pool holds', async () => {
    for (let i = 0; i < 8; i++) {
      const response = await api(ada, '/api/export');
      expect(response.status).to.equal(200);
      await response.arrayBuffer();
    }
    expect((await api(ada, '/api/memory?q=bees')).status).to.equal(200);
  });

  it('needs the customer’s key', async () => {
    expect((await fetch(`${ada.url}/api/export`)).status).to.equal(401);
    expect((await fetch(`${ada.url}/api/export`, { headers: { authorization: `Bearer ${bob.key}` } })).status).to.equal(401);
  });
});
