/** Key rotation on a real runtime and its database: the new key works, the old one is refused, the control plane is told. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { apiKeyLabel, hashApiKey } from '../../core/apiKey.ts';
import { KEY_ROTATED_PATH, NOTICE_SIGNATURE_HEADER, NOTICE_WORKSPACE_HEADER, noticeSignatureValid } from '../../core/usageNotice.ts';
import { startRuntimeFixture, type RuntimeFixture } from '../support/runtimeFixture.ts';
import { waitUntil } from '../support/wait.ts';

const SECRET = 'runtime-callback-secret-for-keys';

interface Received {
  path: string;
  workspace: string;
  signed: boolean;
  body: string;
}

describe('runtime: key rotation (POST /api/keys/rotate)', function () {
  this.timeout(30_000);
  let rt: RuntimeFixture;
  let plane: Server;
  /** The customer's live key: each rotation replaces it. */
  let current: string;
  const received: Received[] = [];
  /** While set, the control plane answers 503. */
  let planeDown = false;

  const call = (key: string, path = '/status', method = 'GET') =>
    fetch(`${rt.url}${path}`, { method, headers: { authorization: `Bearer ${key}` } });

  before(async () => {
    // The control plane's side of the notice: records what arrived and whether it was signed with the secret.
    plane = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        const signed = noticeSignatureValid(String(req.headers[NOTICE_SIGNATURE_HEADER] ?? ''), body, SECRET);
        received.push({ path: req.url ?? '', workspace: String(req.headers[NOTICE_WORKSPACE_HEADER] ?? ''), signed, body });
        if (planeDown) res.writeHead(503).end();
        else res.writeHead(200, { 'content-type': 'application/json' }).end('{"received":true}');
      });
    });
    await new Promise<void>((resolve) => plane.listen(0, '127.0.0.1', resolve));
    const { port } = plane.address() as AddressInfo;
    rt = await startRuntimeFixture({ env: { CONTROL_PLANE_URL: `http://127.0.0.1:${port}`, CONTROL_PLANE_SECRET: SECRET } });
  });
  after(async () => {
    await rt?.close();
    await new Promise((resolve) => plane?.close(resolve));
  });

  it('answers a new key once; the new key works, the old one is refused at once and cannot rotate again', async () => {
    const old = rt.key;
    expect((await call(old)).status).to.equal(200); // its "valid" answer is cached now

    const rotated = await call(old, '/api/keys/rotate', 'POST');
    expect(rotated.status).to.equal(201);
    expect(rotated.headers.get('cache-control')).to.equal('no-store');
    const { key, label } = (await rotated.json()) as { key: string; label: string };
    expect(key).to.match(/^claw_[0-9A-Za-z]{43}$/).and.not.equal(old);
    expect(label).to.equal(apiKeyLabel(key));

    expect((await call(key)).status).to.equal(200);
    expect((await call(old)).status).to.equal(401);
    expect((await call(old, '/api/keys/rotate', 'POST')).status).to.equal(401);

    const { rows } = await rt.db.query<{ key_hash: string; label: string; revoked: boolean }>(
      'SELECT key_hash, label, revoked_at IS NOT NULL AS revoked FROM api_keys ORDER BY created_at',
    );
    expect(rows).to.deep.equal([
      { key_hash: hashApiKey(old), label: 'fixture', revoked: true },
      { key_hash: hashApiKey(key), label, revoked: false },
    ]);
    current = key;
  });

  it('tells the control plane the new hash and label, signed, and never the key', async () => {
    const before = received.length;
    const rotated = await call(current, '/api/keys/rotate', 'POST');
    const { key, label } = (await rotated.json()) as { key: string; label: string };
    current = key;
    const arrived = () => received.slice(before).find((r) => r.path === KEY_ROTATED_PATH);
    await waitUntil(async () => arrived() !== undefined, 10_000);
    const notice = arrived()!;
    expect(notice).to.include({ workspace: rt.workspaceId, signed: true });
    expect(JSON.parse(notice.body)).to.deep.equal({ workspaceId: rt.workspaceId, hash: hashApiKey(key), label });
    expect(received.map((r) => r.body).join('\n')).not.to.match(/claw_[0-9A-Za-z]{43}/);
  });

  it('keeps the rotation when the control plane does not take the notice, and tries the notice again', async () => {
    planeDown = true;
    try {
      const before = received.length;
      const rotated = await call(current, '/api/keys/rotate', 'POST');
      expect(rotated.status).to.equal(201);
      const { key } = (await rotated.json()) as { key: string };
      const old = current;
      current = key;
      expect((await call(key)).status).to.equal(200);
      expect((await call(old)).status).to.equal(401);
      const tries = () => received.slice(before).filter((r) => JSON.parse(r.body).hash === hashApiKey(key)).length;
      await waitUntil(async () => tries() >= 2, 10_000);
    } finally {
      planeDown = false;
    }
  });

  it('revokes only the presented key: another live key keeps working', async () => {
    const other = 'claw_' + 'b'.repeat(43);
    await rt.db.query('INSERT INTO api_keys (key_hash, label) VALUES ($1, $2)', [hashApiKey(other), 'other']);
    const rotated = await call(current, '/api/keys/rotate', 'POST');
    expect(rotated.status).to.equal(201);
    current = ((await rotated.json()) as { key: string }).key;
    expect((await call(other)).status).to.equal(200);
    expect((await call(current)).status).to.equal(200);
  });

  it('refuses a wrong or missing key with 401 and rotates nothing', async () => {
    const { rows: before } = await rt.db.query('SELECT count(*)::int AS n FROM api_keys');
    expect((await call('claw_' + 'z'.repeat(43), '/api/keys/rotate', 'POST')).status).to.equal(401);
    expect((await fetch(`${rt.url}/api/keys/rotate`, { method: 'POST' })).status).to.equal(401);
    const { rows: after } = await rt.db.query('SELECT count(*)::int AS n FROM api_keys');
    expect(after).to.deep.equal(before);
  });

  it('lets one of two rotations racing with the same key win', async () => {
    const results = await Promise.all([call(current, '/api/keys/rotate', 'POST'), call(current, '/api/keys/rotate', 'POST')]);
    expect(results.map((r) => r.status).sort()).to.deep.equal([201, 401]);
    current = ((await results.find((r) => r.status === 201)!.json()) as { key: string }).key;
    expect((await call(current)).status).to.equal(200);
  });
});
