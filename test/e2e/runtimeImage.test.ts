/**
 * The runtime's image, built with the real Docker engine from runtime/Dockerfile on a base image of this machine's
 * Node (nothing pulled), run as a customer's container is meant to run: every capability dropped, no new privileges,
 * a read-only root filesystem with a small tmpfs, its image's non-root user, pids and memory limited. It answers
 * /health and the customer's key. Skipped, with one line saying why, where no Docker engine can start (CI starts one).
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { apiKeyLabel, generateApiKey, hashApiKey } from '../../core/apiKey.ts';
import { quoteIdent } from '../../core/postgres.ts';
import { freePort } from '../../src/providers/compute/local.ts';
import { buildImage, docker, skipWithoutDocker } from '../support/dockerImages.ts';
import { createRuntimeDatabase, PG_SERVER } from '../support/runtimeDatabase.ts';
import { waitUntil } from '../support/wait.ts';

describe('the runtime image on Docker', function () {
  this.timeout(600_000);
  const name = `rt_image_${randomBytes(5).toString('hex')}`;
  let container: string | undefined;
  let database: Awaited<ReturnType<typeof createRuntimeDatabase>> | undefined;

  before(skipWithoutDocker);
  after(async () => {
    if (container) await docker(['rm', '-f', container]).catch(() => undefined);
    await database?.pool.end();
    if (database) {
      const { default: pg } = await import('pg');
      const admin = new pg.Client({ connectionString: `${PG_SERVER}/postgres` });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
      await admin.end();
    }
  });

  it('builds without pulling, runs hardened, and answers its health and the customer’s key', async () => {
    const image = await buildImage('runtime/Dockerfile', 'clawdbot-runtime:test');
    database = await createRuntimeDatabase(name, 2);
    const key = generateApiKey();
    await database.pool.query('INSERT INTO api_keys (key_hash, label) VALUES ($1, $2)', [hashApiKey(key), apiKeyLabel(key)]);
    const port = await freePort();
    container = await docker([
      'run', '-d', '--network', 'host',
      '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', '--read-only', '--tmpfs', '/tmp:size=16m',
      '--pids-limit', '64', '--memory', '256m', '--cpus', '0.5',
      '-e', `DATABASE_URL=${database.url}`, '-e', 'WORKSPACE_ID=ws-image-test', '-e', 'PLAN=starter', '-e', 'MESSAGE_LIMIT=100',
      '-e', `PORT=${port}`, '-e', 'HOST=127.0.0.1',
      image,
    ]);
    const base = `http://127.0.0.1:${port}`;
    await waitUntil(async () => (await fetch(`${base}/health`).catch(() => undefined))?.status === 200, 60_000);
    expect((await fetch(`${base}/status`, { headers: { authorization: `Bearer ${key}` } })).status).to.equal(200);
    expect((await fetch(`${base}/status`, { headers: { authorization: `Bearer ${generateApiKey()}` } })).status).to.equal(401);

    const [inspected] = JSON.parse(await docker(['inspect', container])) as {
      Config: { User: string };
      HostConfig: { CapDrop: string[]; ReadonlyRootfs: boolean; SecurityOpt: string[]; PidsLimit: number; Memory: number; NanoCpus: number };
    }[];
    expect(inspected!.HostConfig).to.deep.include({ CapDrop: ['ALL'], ReadonlyRootfs: true, PidsLimit: 64, Memory: 256 * 1024 * 1024, NanoCpus: 500_000_000 });
    expect(inspected!.HostConfig.SecurityOpt).to.include('no-new-privileges');
    expect(inspected!.Config.User).to.equal('node');
    // Nothing in the container runs as root, and its root filesystem refuses writes.
    expect(await docker(['exec', container, '/usr/local/bin/node', '-e', 'console.log(process.getuid())'])).to.equal('1000');
    const write = await docker(['exec', container, '/bin/sh', '-c', 'echo x > /app/x 2>&1 || echo refused']);
    expect(write).to.include('refused');
  });
});
