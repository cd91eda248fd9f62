/**
 * The Redis and PostgreSQL images docker-compose.yml runs where no registry answers (REDIS_IMAGE, POSTGRES_IMAGE),
 * made from this machine's servers, started as the compose file starts them and reached from the host through a
 * published loopback port, as the control plane reaches them: Postgres asks for the password it was given and has
 * made POSTGRES_DB, Redis answers. Skipped, with one line saying why, where no Docker engine answers.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import pg from 'pg';
import { freePort } from '../../src/providers/compute/local.ts';
import { buildPostgresImage, buildRedisImage, docker, skipWithoutDocker } from '../support/dockerImages.ts';
import { waitUntil } from '../support/wait.ts';

/** Answers the query's first row, or the error the server sent (a refused login). */
async function queryAs(url: string, sql: string): Promise<Record<string, unknown> | Error> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    return (await client.query(sql)).rows[0] as Record<string, unknown>;
  } catch (err) {
    return err as Error;
  } finally {
    await client.end().catch(() => undefined);
  }
}

describe('the Redis and Postgres images for docker-compose.yml', function () {
  this.timeout(180_000);
  const containers: string[] = [];

  before(skipWithoutDocker);
  after(async () => {
    for (const container of containers) await docker(['rm', '-f', container]).catch(() => undefined);
  });

  /** Runs a container with its server's port published on a free loopback port of the host. */
  async function start(serverPort: number, args: string[]): Promise<{ container: string; port: number }> {
    const port = await freePort();
    const container = await docker(['run', '-d', '-p', `127.0.0.1:${port}:${serverPort}`, ...args]);
    containers.push(container);
    return { container, port };
  }

  it('Postgres: refuses a wrong password, lets the right one in, has made POSTGRES_DB, runs as postgres', async () => {
    const image = await buildPostgresImage();
    const password = randomBytes(9).toString('hex');
    const { container, port } = await start(5432, ['-e', `POSTGRES_PASSWORD=${password}`, '-e', 'POSTGRES_DB=clawdbot', image]);
    const url = (secret: string) => `postgres://postgres:${secret}@127.0.0.1:${port}/clawdbot`;
    let answer: Awaited<ReturnType<typeof queryAs>> = new Error('not asked yet');
    await waitUntil(async () => !((answer = await queryAs(url(password), 'SELECT current_database() AS db, current_user AS who')) instanceof Error), 60_000);
    expect(answer).to.deep.equal({ db: 'clawdbot', who: 'postgres' });

    const refused = await queryAs(url('wrong'), 'SELECT 1');
    expect(refused).to.be.instanceOf(Error);
    expect((refused as Error & { code?: string }).code).to.equal('28P01'); // invalid_password

    // What the compose healthcheck runs, and the server's owner: not root.
    expect(await docker(['exec', container, 'pg_isready', '-h', '127.0.0.1', '-U', 'postgres'])).to.include('accepting connections');
    expect(await queryAs(url(password), `SELECT pg_read_file('/proc/self/status') ~ 'Uid:\\s+999\\s' AS nonroot`)).to.deep.equal({ nonroot: true });
  });

  it('Redis: answers PING through its published port with the compose file’s command, as user redis', async () => {
    const image = await buildRedisImage();
    const { container, port } = await start(6379, [image, 'redis-server', '--appendonly', 'yes', '--maxmemory-policy', 'noeviction']);
    // What the compose healthcheck runs, inside the container; then from the host, as the control plane asks.
    await waitUntil(async () => (await docker(['exec', container, 'redis-cli', 'ping']).catch(() => '')) === 'PONG', 30_000);
    const redis = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      expect(await redis.ping()).to.equal('PONG');
      expect(await redis.config('GET', 'appendonly')).to.deep.equal(['appendonly', 'yes']);
    } finally {
      redis.disconnect();
    }
    expect(await docker(['inspect', '--format', '{{.Config.User}}', container])).to.equal('redis');
  });
});
