/**
 * A generated corpus of malformed, forged, oversized and type-confused requests against every endpoint of the control
 * plane and of a customer's runtime: none answers 5xx, and none stores anything (the control plane's tables and the
 * customer's database hold the same rows before and after).
 */
import { expect } from 'chai';
import { ADMIN, startHarness, WEBHOOK_SECRET, type Harness } from '../support/harness.ts';
import { provision, type Provisioned } from '../support/provision.ts';
import { startRuntimeFixture, type RuntimeFixture } from '../support/runtimeFixture.ts';
import { signedWebhook } from '../emulators/stripeEmulator.ts';
import { signTimed } from '../../core/timedSignature.ts';

interface Attempt {
  method: string;
  target: 'plane' | 'runtime';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

const CONTROL_TABLES = ['customers', 'subscriptions', 'instances', 'stripe_events', 'audit', 'secrets', 'backups', 'restores', 'rollouts', 'key_handovers'];
const CUSTOMER_TABLES = ['memories', 'conversations', 'conversation_messages', 'skills', 'webhook_sources', 'webhook_deliveries', 'api_keys', 'connections', 'pending_actions', 'workspace_files'];

/** Bodies no endpoint takes: not JSON, the wrong JSON type, unstorable text, nesting, sizes past every limit. */
function badBodies(): string[] {
  return [
    '',
    'not json',
    '{',
    '{"a":',
    'null',
    '[]',
    '"a string"',
    '12345',
    'true',
    '{"__proto__":{"admin":true}}',
    JSON.stringify({ x: 'a\u0000b' }),
    '{"x":"\\ud800"}',
    `${'['.repeat(5_000)}${']'.repeat(5_000)}`,
    JSON.stringify({ x: 'y'.repeat(70 * 1024) }),
    JSON.stringify({ x: 1e400 }).replace('null', '1e400'),
  ];
}

/**
 * Objects with one of the fields an endpoint reads, of a wrong type or value for it (or too big for any body): each
 * is refused whatever the field, as none of these is a valid value of it, and every other field is missing.
 */
function typeConfused(fields: string[]): string[] {
  const wrong: unknown[] = [null, -1, 1e308, [], ['a'], { $gt: '' }, 'x'.repeat(200_000), '\u0000', ''];
  return fields.flatMap((field) => wrong.map((value) => JSON.stringify({ [field]: value })));
}

/** Path segments that name nothing: NULs, traversal, huge, SQL, broken encodings, numbers out of range. */
const BAD_IDS = ['%00', '..%2F..%2Fetc', 'x'.repeat(3_000), "'%20OR%201=1--", '%E0%A4%A', '-1', '1e400', '00000000-0000-0000-0000-00000000000g', '%F0%9F%92%A9', '%2e%2e'];

describe('a corpus of malformed requests', function () {
  this.timeout(240_000);
  let h: Harness;
  let ann: Provisioned;
  /** A runtime of its own for the runtime's endpoints, whose key's rate and failure throttle let the whole corpus in. */
  let runtime: RuntimeFixture;

  before(async () => {
    [h, runtime] = await Promise.all([
      startHarness({ AUTH_FAILURE_LIMIT: '1000000' }),
      startRuntimeFixture({ plan: 'team', env: { RATE_LIMIT: '100000/m', AUTH_FAILURE_LIMIT: '1000000' } }),
    ]);
    ann = await provision(h, 'ann@example.com', 'Ann');
  });
  after(async () => Promise.all([h?.close(), runtime?.close()]));

  async function counts(): Promise<Record<string, number>> {
    const found: Record<string, number> = {};
    for (const table of CONTROL_TABLES) found[`plane.${table}`] = Number((await h.db.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
    for (const table of CUSTOMER_TABLES) found[`customer.${table}`] = Number((await runtime.db.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
    return found;
  }

  function corpus(): Attempt[] {
    const admin = { authorization: `Bearer ${ADMIN.token}`, 'content-type': 'application/json' };
    const key = { authorization: `Bearer ${runtime.key}`, 'content-type': 'application/json' };
    const attempts: Attempt[] = [];
    const add = (target: Attempt['target'], method: string, path: string, bodies: string[], headers: Record<string, string>) => {
      for (const body of bodies) attempts.push({ target, method, path, headers, body });
    };

    // Stripe: unsigned, forged, malformed signatures, and validly signed bodies that are no event.
    const now = Math.floor(Date.now() / 1000);
    for (const body of badBodies()) {
      attempts.push({ target: 'plane', method: 'POST', path: '/webhooks/stripe', body, headers: { 'stripe-signature': signedWebhook(body, WEBHOOK_SECRET) } });
      attempts.push({ target: 'plane', method: 'POST', path: '/webhooks/stripe', body, headers: { 'stripe-signature': signedWebhook(body, 'whsec_forged') } });
    }
    for (const header of ['', 't=', 'v1=', `t=${now}`, `t=${now},v1=zz`, `t=abc,v1=${'0'.repeat(64)}`, `t=${now},v1=`, ',,,,', 'x'.repeat(10_000), `t=${now + 3600},v1=${'0'.repeat(64)}`]) {
      attempts.push({ target: 'plane', method: 'POST', path: '/webhooks/stripe', body: '{"id":"evt_1","type":"x","data":{"object":{}}}', headers: { 'stripe-signature': header } });
    }
    for (const body of typeConfused(['id', 'type', 'data', 'created', 'livemode'])) {
      attempts.push({ target: 'plane', method: 'POST', path: '/webhooks/stripe', body, headers: { 'stripe-signature': signedWebhook(body, WEBHOOK_SECRET) } });
    }

    // The admin API: bodies of every kind where a body is read, odd ids everywhere an id is.
    add('plane', 'POST', '/api/admin/provision', [...badBodies(), ...typeConfused(['email', 'plan', 'name'])], admin);
    add('plane', 'POST', '/api/admin/rollouts', [...badBodies(), ...typeConfused(['version', 'settings', 'selector', 'batchSize', 'canary', 'maxFailures'])], admin);
    add('plane', 'POST', `/api/admin/instances/${ann.instanceId}/restore`, [...badBodies(), ...typeConfused(['backupId'])], admin);
    for (const id of BAD_IDS) {
      for (const path of [
        `/api/admin/instances/${id}/retry`,
        `/api/admin/instances/${id}/abandon`,
        `/api/admin/instances/${id}/clear-crash-loop`,
        `/api/admin/instances/${id}/rotate-key`,
        `/api/admin/instances/${id}/backups`,
        `/api/admin/customers/${id}/deprovision`,
        `/api/admin/customers/${id}/reactivate`,
        `/api/admin/rollouts/${id}/pause`,
        `/api/admin/rollouts/${id}/abort`,
      ]) {
        attempts.push({ target: 'plane', method: 'POST', path, headers: admin, body: '{}' });
      }
      for (const path of [`/api/customers/${id}/instance`, `/api/admin/rollouts/${id}`, `/api/admin/instances/${id}/backups`, `/welcome?session_id=${id}`]) {
        attempts.push({ target: 'plane', method: 'GET', path, headers: admin });
      }
    }
    // Operators' doors with broken credentials, and runtimes' notices forged.
    for (const authorization of ['Bearer', 'Bearer ' + 'x'.repeat(10_000), 'Basic !!!', 'Basic ' + Buffer.from('no-colon').toString('base64'), 'Digest x', '\u00ff']) {
      for (const path of ['/api/admin/instances', '/admin/queues', '/metrics']) attempts.push({ target: 'plane', method: 'GET', path, headers: { authorization } });
    }
    for (const body of badBodies()) {
      for (const path of ['/api/runtime/usage', '/api/runtime/key-rotated']) {
        attempts.push({ target: 'plane', method: 'POST', path, body, headers: { 'x-clawdbot-workspace': ann.view.workspaceId, 'x-clawdbot-signature': signTimed('not-the-secret', body) } });
        attempts.push({ target: 'plane', method: 'POST', path, body, headers: { 'x-clawdbot-workspace': '%00', 'x-clawdbot-signature': 't=1,v1=' } });
      }
    }
    // The customer pages without their cookie or CSRF token.
    for (const path of ['/account/login', '/account/sign-in', '/account/rotate-key', '/account/billing', '/account/logout', '/welcome/key']) {
      add('plane', 'POST', path, ['', 'email=ann%40example.com', 'csrf=forged&email=%00', 'x'.repeat(100_000)], { 'content-type': 'application/x-www-form-urlencoded' });
    }

    // The runtime, with the customer's own key: every body where one is read, odd ids and queries elsewhere.
    add('runtime', 'POST', '/api/chat', [...badBodies(), ...typeConfused(['message', 'conversationId', 'stream'])], key);
    add('runtime', 'POST', '/api/memory', [...badBodies(), ...typeConfused(['content', 'tags'])], key);
    add('runtime', 'POST', '/api/skills', [...badBodies(), ...typeConfused(['name', 'content', 'enabled'])], key);
    add('runtime', 'PUT', '/api/skills/web_search', [...badBodies(), ...typeConfused(['enabled', 'content'])], key);
    add('runtime', 'POST', '/api/webhooks', [...badBodies(), ...typeConfused(['source', 'scheme'])], key);
    for (const id of BAD_IDS) {
      attempts.push({ target: 'runtime', method: 'DELETE', path: `/api/memory/${id}`, headers: key });
      attempts.push({ target: 'runtime', method: 'DELETE', path: `/api/skills/${id}`, headers: key });
      attempts.push({ target: 'runtime', method: 'POST', path: `/api/webhooks/${id}/rotate`, headers: key });
      attempts.push({ target: 'runtime', method: 'POST', path: `/api/connections/${id}`, headers: key });
      attempts.push({ target: 'runtime', method: 'GET', path: `/api/memory?q=${id}&tag=${id}&limit=${id}`, headers: key });
      attempts.push({ target: 'runtime', method: 'GET', path: `/api/connections/${id}/callback?state=${id}&code=${id}`, headers: {} });
      attempts.push({ target: 'runtime', method: 'POST', path: `/webhook/${id}`, headers: { 'x-clawdbot-signature': 't=1,v1=0' }, body: '{"id":"d-1"}' });
    }
    for (const body of badBodies()) {
      attempts.push({ target: 'runtime', method: 'POST', path: '/webhook/github', body, headers: { 'x-clawdbot-signature': signTimed('forged', `.${body}`), 'x-delivery-id': 'd-2' } });
    }
    for (const authorization of ['Bearer', 'Bearer claw_' + 'x'.repeat(43), 'Bearer ' + 'x'.repeat(10_000), 'Basic abc']) {
      for (const path of ['/status', '/api/memory', '/api/export', '/api/keys/rotate']) attempts.push({ target: 'runtime', method: path.endsWith('rotate') ? 'POST' : 'GET', path, headers: { authorization } });
    }
    return attempts;
  }

  it('answers none with a 5xx, and stores nothing', async () => {
    const before = await counts();
    const auditBefore = Number((await h.db.query('SELECT max(id) AS id FROM audit')).rows[0].id ?? 0);
    const attempts = corpus();
    expect(attempts.length).to.be.at.least(500);
    const failures: string[] = [];
    const statuses = new Map<number, number>();
    for (const attempt of attempts) {
      const base = attempt.target === 'plane' ? h.url : runtime.url;
      const response = await fetch(`${base}${attempt.path}`, { method: attempt.method, headers: attempt.headers, body: attempt.body, redirect: 'manual' }).catch(
        (err: Error) => ({ status: 599, text: async () => err.message }) as unknown as Response,
      );
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      const text = await response.text();
      if (response.status >= 500) {
        failures.push(`${attempt.method} ${attempt.target} ${attempt.path.slice(0, 80)} ${(attempt.body ?? '').slice(0, 60)} -> ${response.status} ${text.slice(0, 120)}`);
      }
    }
    // Every request reached what it was meant for: none was held back by a rate or the failure throttle.
    expect(statuses.get(429) ?? 0, JSON.stringify([...statuses])).to.equal(0);
    expect(failures, `${failures.length} of ${attempts.length}; statuses ${JSON.stringify([...statuses])}`).to.deep.equal([]);
    const audited = await h.db.query('SELECT action, detail FROM audit WHERE id > $1', [auditBefore]);
    expect(audited.rows, 'audit rows written').to.deep.equal([]);
    expect(await counts()).to.deep.equal(before);
  });
});
