/**
 * `docker compose up` end to end: docker-compose.yml as it is, with images built here (the control plane's and the
 * runtime's from the repository's Dockerfiles, Redis and PostgreSQL from this machine's programs: nothing pulled) and
 * ports of its own. The stack comes up, a customer is provisioned through the admin API, the emailed key works on
 * their runtime (a hardened container the worker started through the socket proxy), the customer is cancelled, and
 * everything is torn down. Skipped, with one line saying why, without a Docker engine or a compose command.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { freePort } from '../../src/providers/compute/local.ts';
import { DOCKER_LABELS } from '../../src/providers/compute/dockerLabels.ts';
import { startAnthropicEmulator, type AnthropicEmulator } from '../emulators/anthropicEmulator.ts';
import { startSmtpCapture, type SmtpCapture } from '../emulators/smtpCapture.ts';
import { bridgeGateway, buildImage, buildPostgresImage, buildRedisImage, docker, skipWithoutDocker } from '../support/dockerImages.ts';
import { KEY_IN_MAIL } from '../support/provision.ts';
import { waitUntil } from '../support/wait.ts';

const run = promisify(execFile);

/** The compose command here: the Docker CLI's plugin, or the standalone docker-compose. */
async function composeCommand(): Promise<string[] | undefined> {
  for (const command of [['docker', 'compose'], ['docker-compose']]) {
    const works = await run(command[0]!, [...command.slice(1), 'version']).then(() => true, () => false);
    if (works) return command;
  }
  return undefined;
}

describe('docker compose up, end to end', function () {
  this.timeout(900_000);
  const id = randomBytes(4).toString('hex');
  const project = `clawdbot-compose-${id}`;
  const adminToken = randomBytes(24).toString('base64url');
  let command: string[];
  let env: Record<string, string>;
  let smtp: SmtpCapture | undefined;
  let model: AnthropicEmulator | undefined;
  let up = false;

  const compose = async (...args: string[]) =>
    (await run(command[0]!, [...command.slice(1), '-p', project, ...args], { env: { ...process.env, ...env }, timeout: 600_000, maxBuffer: 64 << 20 })).stdout;
  const web = () => `http://127.0.0.1:${env.WEB_PORT}`;
  const admin = (pathname: string, init: RequestInit = {}) =>
    fetch(`${web()}${pathname}`, { ...init, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' } });

  before(async function () {
    await skipWithoutDocker.call(this);
    const found = await composeCommand();
    if (!found) {
      console.log('      skipped: neither `docker compose` nor `docker-compose` is installed');
      this.skip();
    }
    command = found!;
    const gateway = await bridgeGateway();
    // One after the other: the two Dockerfiles share their build stage and installed modules, which the second
    // build then takes from the engine's cache (the runtime's image is also what dockerProvisioning builds).
    const runtimeImage = await buildImage('runtime/Dockerfile', 'clawdbot-runtime:e2e');
    const controlPlaneImage = await buildImage('Dockerfile', 'clawdbot-control-plane:e2e');
    const [redisImage, postgresImage] = await Promise.all([buildRedisImage(), buildPostgresImage()]);
    [smtp, model] = await Promise.all([startSmtpCapture(), startAnthropicEmulator({ listen: '0.0.0.0' })]);
    const [webPort, redisPort, postgresPort, customerPort, proxyPort] = await Promise.all(Array.from({ length: 5 }, () => freePort()));
    env = {
      CONTROL_PLANE_IMAGE: controlPlaneImage,
      RUNTIME_IMAGE: runtimeImage,
      REDIS_IMAGE: redisImage,
      POSTGRES_IMAGE: postgresImage,
      WEB_PORT: String(webPort),
      REDIS_PORT: String(redisPort),
      POSTGRES_PORT: String(postgresPort),
      CUSTOMER_DATABASE_PORT: String(customerPort),
      CUSTOMER_DATABASE_BIND: gateway,
      DOCKER_PROXY_PORT: String(proxyPort),
      DOCKER_PROXY_SCOPE: `compose-${id}`,
      DOCKER_PROXY_TOKEN: randomBytes(24).toString('base64url'),
      CUSTOMER_POSTGRES_PASSWORD: randomBytes(24).toString('hex'),
      DOCKER_NETWORK: `clawdbot-compose-${id}`,
      ADMIN_TOKEN: adminToken,
      SMTP_URL: smtp.url,
      ANTHROPIC_BASE_URL: model.url,
      ANTHROPIC_API_KEY: model.apiKey,
    };
    up = true;
    await compose('up', '-d', '--no-build');
    await waitUntil(async () => (await fetch(`${web()}/health`).catch(() => undefined))?.status === 200, 180_000);
  });

  after(async () => {
    if (up) {
      await compose('down', '-v', '--timeout', '5').catch((err: Error) => console.log(`      compose down failed: ${err.message}`));
      const left = await docker(['ps', '-aq', '--filter', `label=${DOCKER_LABELS.scope}=${env.DOCKER_PROXY_SCOPE}`]);
      if (left) await docker(['rm', '-f', ...left.split('\n')]);
      await docker(['network', 'rm', env.DOCKER_NETWORK!]).catch(() => undefined);
    }
    await Promise.all([smtp?.close(), model?.close()]);
  });

  it('provisions a customer through the admin API; the emailed key works on their runtime; cancelling stops it', async () => {
    const provisioned = await admin('/api/admin/provision', { method: 'POST', body: JSON.stringify({ email: 'cleo@example.com', name: 'Cleo', plan: 'starter' }) });
    expect(provisioned.status).to.equal(202);
    const { customerId } = (await provisioned.json()) as { customerId: string };
    let view: { status: string; accessUrl: string | null; failure: unknown } | undefined;
    await waitUntil(async () => {
      view = (await (await admin(`/api/customers/${customerId}/instance`)).json()) as typeof view;
      return view!.status === 'active' || view!.status === 'failed';
    }, 300_000);
    expect(view!.failure, JSON.stringify(view)).to.equal(null);
    expect(view!.status).to.equal('active');

    const mail = await smtp!.waitFor((m) => m.to.includes('cleo@example.com') && m.subject === 'Your Clawdbot is ready');
    const key = KEY_IN_MAIL.exec(mail.text)?.[0];
    expect(key, 'the welcome email carries the key').to.be.a('string');
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    expect((await fetch(`${view!.accessUrl}/status`, { headers })).status).to.equal(200);
    const chat = await fetch(`${view!.accessUrl}/api/chat`, { method: 'POST', headers, body: JSON.stringify({ message: 'Hello from compose' }) });
    expect(chat.status).to.equal(200);

    // The runtime is a hardened container of the runtime image, started through the proxy, with the stack's scope.
    const containers = (await docker(['ps', '-q', '--filter', `label=${DOCKER_LABELS.scope}=${env.DOCKER_PROXY_SCOPE}`])).split('\n').filter(Boolean);
    expect(containers).to.have.length(1);
    const [inspected] = JSON.parse(await docker(['inspect', containers[0]!])) as { Config: { Image: string }; HostConfig: { CapDrop: string[]; ReadonlyRootfs: boolean } }[];
    expect(inspected!.Config.Image).to.equal(env.RUNTIME_IMAGE);
    expect(inspected!.HostConfig).to.deep.include({ CapDrop: ['ALL'], ReadonlyRootfs: true });

    expect((await admin(`/api/admin/customers/${customerId}/deprovision`, { method: 'POST' })).status).to.equal(202);
    await waitUntil(async () => ((await (await admin(`/api/customers/${customerId}/instance`)).json()) as { status: string }).status === 'cancelled', 60_000);
    expect(await docker(['ps', '-q', '--filter', `label=${DOCKER_LABELS.scope}=${env.DOCKER_PROXY_SCOPE}`])).to.equal('');
    expect(await fetch(`${view!.accessUrl}/status`, { headers }).then((r) => r.status, () => 'refused')).to.equal('refused');
  });
});
