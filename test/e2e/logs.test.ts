/**
 * What the logs hold, over a customer's whole life on a real control plane: a provisioning that fails (and its
 * alert, which fails once too), the operator's retry, use of the runtime, a plan change, cancellation, archive and
 * purge. Every line written meanwhile (the control plane's, anything else on stdout or stderr, the runtime's log
 * file) is captured: none carries a key, password or token the test made, and the lifecycle events are there, one
 * JSON line each with the instance's ids.
 */
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { logTo } from '../../core/logger.ts';
import { DEFAULT_PRICE_IDS } from '../../core/plans.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../src/instances/secrets.ts';
import { ADMIN, startHarness, waitUntil, WEBHOOK_SECRET, type Harness } from '../support/harness.ts';
import { bullBoardHeaders } from '../support/jobWaits.ts';

type Line = Record<string, unknown>;

/** Every directory and file under `root` (itself included) with its permission bits; none when it does not exist. */
async function modesUnder(root: string): Promise<{ path: string; mode: number; file: boolean }[]> {
  const found: { path: string; mode: number; file: boolean }[] = [];
  const visit = async (at: string): Promise<void> => {
    const info = await stat(at).catch(() => undefined);
    if (!info) return;
    found.push({ path: at, mode: info.mode & 0o777, file: info.isFile() });
    if (info.isDirectory()) for (const entry of await readdir(at)) await visit(path.join(at, entry));
  };
  await visit(root);
  return found;
}

describe('logs', function () {
  this.timeout(120_000);
  let h: Harness;
  let dir: string;
  let marker: string;
  const lines: string[] = [];
  /** Whatever reached stdout or stderr other than through the logger. */
  let stray = '';
  const writes = { stdout: process.stdout.write, stderr: process.stderr.write };

  /** The umask the test ran with: this one makes every file as open as its creator asks. */
  let umask: number;

  before(async () => {
    umask = process.umask(0);
    dir = await mkdtemp(path.join(tmpdir(), 'clawdbot-logs-'));
    marker = path.join(dir, 'ready');
    logTo({ write: (line: string) => lines.push(line) });
    for (const stream of ['stdout', 'stderr'] as const) {
      const original = writes[stream];
      process[stream].write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
        stray += chunk.toString();
        return (original as (...args: unknown[]) => boolean).call(process[stream], chunk, ...rest);
      }) as typeof process.stdout.write;
    }
    h = await startHarness({
      LOG_LEVEL: 'debug',
      LOG_FORMAT: 'json',
      // The runtime does not answer until the marker exists: the first provisioning fails at the health check.
      RUNTIME_ARGS: `--import tsx ${path.resolve('test/support/lateRuntime.ts')} ${marker}`,
      HEALTH_CHECK_TIMEOUT: '1500ms',
      ARCHIVE_AFTER: '3s',
      PURGE_AFTER: '6s',
    });
  });
  after(async () => {
    process.umask(umask);
    process.stdout.write = writes.stdout;
    process.stderr.write = writes.stderr;
    logTo(undefined);
    await h?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('carry no secret through a failure, a retry, a plan change and the end of a subscription, and name each event', async () => {
    h.slack.failNext(1, 503);
    const { customerId, subscriptionId, event } = h.checkout({ email: 'lena@example.com', name: 'Lena' });
    expect((await h.deliver(event)).status).to.equal(200);
    const failed = await h.waitForStatus(customerId, ['failed', 'active']);
    expect(failed.status).to.equal('failed');
    await h.slack.waitFor((p) => (p.text ?? '').includes('lena@example.com'));
    const owner = instanceOwner(failed.instanceId);
    const databaseUrl = (await h.plane.ctx.secrets.get(owner, INSTANCE_SECRETS.databaseUrl))!;
    const runtimeSecret = (await h.plane.ctx.secrets.get(owner, INSTANCE_SECRETS.runtimeSecret))!;

    // The operator fixes the runtime and retries from Bull Board (basic auth); the flow finishes.
    await writeFile(marker, 'ready');
    await waitUntil(async () => (await fetch(`${failed.accessUrl}/health`).catch(() => undefined))?.status === 200, 30_000);
    const retry = await fetch(`${h.url}/admin/queues/api/queues/provision/${failed.workspaceId}-health-check/retry`, {
      method: 'PUT',
      headers: bullBoardHeaders(h),
    });
    expect(retry.status).to.equal(204);
    await h.waitForStatus(customerId, ['active']);
    const mail = await h.smtp.waitFor((m) => m.to.includes('lena@example.com') && m.subject === 'Your Clawdbot is ready');
    const apiKey = /claw_[0-9A-Za-z]{43}/.exec(mail.text)![0];

    // The customer talks to the runtime (which calls the model with its key); a wrong key is refused.
    const chat = await fetch(`${failed.accessUrl}/api/chat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'Hello there' }),
    });
    expect(chat.status).to.equal(200);
    const wrongKey = await fetch(`${failed.accessUrl}/status`, { headers: { authorization: `Bearer ${apiKey.slice(0, -1)}x` } });
    expect(wrongKey.status).to.equal(401);

    // What the control plane and the runtime wrote of the customer (logs, workspace) is theirs
    // alone: directories 0700 and files 0600, under a umask of 0.
    const owned = [path.join(h.config.varDir, 'logs'), h.config.runtime.workspacesDir, h.config.lifecycle.archiveDir, h.config.mail.outboxDir];
    const modes = (await Promise.all(owned.map((root) => modesUnder(root)))).flat();
    expect(modes.filter((m) => m.file).length, 'files checked').to.be.at.least(5); // the runtime's log and its workspace files
    expect(modes.filter((m) => m.mode !== (m.file ? 0o600 : 0o700)).map((m) => `${m.path} ${m.mode.toString(8)}`)).to.deep.equal([]);


    // A plan change, then the end: cancelled, archived after ARCHIVE_AFTER, purged after PURGE_AFTER.
    const upgraded = h.stripe.updateSubscription(subscriptionId, { price: DEFAULT_PRICE_IDS.pro });
    expect((await h.deliver(h.stripe.event('customer.subscription.updated', upgraded))).status).to.equal(200);
    await waitUntil(async () => (await h.waitForStatus(customerId, ['active'])).plan === 'pro', 20_000);
    const canceled = h.stripe.updateSubscription(subscriptionId, { status: 'canceled' });
    expect((await h.deliver(h.stripe.event('customer.subscription.deleted', canceled))).status).to.equal(200);
    await h.waitForStatus(customerId, ['purged'], 30_000);

    // Everything written: the control plane's lines, stray output, and the runtime's own log file.
    const logDir = path.join(h.config.varDir, 'logs');
    const runtimeLogs = await Promise.all((await readdir(logDir)).map((file) => readFile(path.join(logDir, file), 'utf8')));
    expect(runtimeLogs.join('')).to.include('"message":"listening"');
    const everything = [...lines, stray, ...runtimeLogs];

    const secrets = {
      'the customer API key': apiKey,
      ADMIN_TOKEN: ADMIN.token,
      ADMIN_PASSWORD: ADMIN.password,
      STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
      STRIPE_SECRET_KEY: h.stripe.apiKey,
      SECRETS_KEY: h.env.SECRETS_KEY!,
      'the customer database password': decodeURIComponent(new URL(databaseUrl).password),
      'the runtime secret (CONTROL_PLANE_SECRET)': runtimeSecret,
      ANTHROPIC_API_KEY: h.model.apiKey,
    };
    for (const [name, secret] of Object.entries(secrets)) {
      expect(secret.length, name).to.be.at.least(8);
      const leaks = everything.filter((text) => text.includes(secret));
      expect(leaks, `${name} appears in the logs`).to.deep.equal([]);
    }
    // Customers are named by id: their email is in the alert (Slack, email), never in a log line.
    expect(everything.filter((text) => text.includes('lena@example.com'))).to.deep.equal([]);
    for (const text of everything) {
      expect(text).to.not.match(/claw_[0-9A-Za-z]{43}/);
      expect(text).to.not.match(/postgres(ql)?:\/\/[^"\s/]*:[^"\s*]+@/);
    }

    // One JSON object a line, and the lifecycle events of the instance among them, each with its ids.
    const parsed = lines.map((line) => {
      expect(line.endsWith('\n') && !line.slice(0, -1).includes('\n'), line).to.equal(true);
      return JSON.parse(line) as Line;
    });
    const ids = { instance: failed.instanceId, workspace: failed.workspaceId };
    const events = parsed.filter((l) => l.instance === failed.instanceId && typeof l.event === 'string');
    expect(events.map((l) => l.event)).to.deep.equal(['failed', 'retried', 'provisioned', 'resized', 'cancelled', 'archived', 'purged']);
    for (const line of events) {
      expect(line, String(line.event)).to.include({ ...ids, scope: 'instances', message: `instance ${String(line.event)}` });
      expect(line.customer, String(line.event)).to.be.a('string');
      expect(line.level).to.equal(line.event === 'failed' ? 'warn' : 'info');
    }
    // A line logged inside a job carries the job's ids: the flow's last step ...
    const provisioned = events.find((l) => l.event === 'provisioned')!;
    expect(provisioned).to.include({ queue: 'provision', jobName: 'finalize', job: `${failed.workspaceId}-finalize`, flow: `${failed.workspaceId}-finalize` });
    // ... a lifecycle job, and the failed step's warning.
    expect(events.find((l) => l.event === 'archived')).to.include({ queue: 'lifecycle', jobName: 'archive' });
    const stepFailed = parsed.find((l) => l.message === 'job failed' && l.jobName === 'health-check')!;
    expect(stepFailed).to.include({ ...ids, level: 'warn', queue: 'provision', flow: `${failed.workspaceId}-finalize` });
    expect(parsed.find((l) => l.message === 'job failed' && l.jobName === 'alert-slack')).to.include({ level: 'warn', queue: 'alerts' });
  });
});
