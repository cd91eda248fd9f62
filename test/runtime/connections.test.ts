import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { configureLogs, logTo } from '../../core/logger.ts';
import { loadRuntimeConfig, type RuntimeConfig } from '../../runtime/src/config.ts';
import { connectedServices, connectionTools } from '../../runtime/src/tools/connectionTools.ts';
import { readsAsConfirmation } from '../../runtime/src/tools/confirmations.ts';
import type { ClientTool, ToolContext, ToolOutcome } from '../../runtime/src/tools/types.ts';
import { WorkspaceStore } from '../../runtime/src/workspace.ts';
import { githubRuntimeEnv, startGithubEmulator, type GithubEmulator } from '../emulators/githubEmulator.ts';
import { googleRuntimeEnv, startGoogleEmulator, type GoogleEmulator } from '../emulators/googleEmulator.ts';
import { startRuntimeFixture, type RuntimeFixture } from '../support/runtimeFixture.ts';

const CONNECTIONS_KEY = randomBytes(32).toString('base64');

function tool(name: string): ClientTool {
  const found = connectionTools.find((t) => t.name === name);
  if (!found) throw new Error(`no tool ${name}`);
  return found;
}

describe('runtime connections (Gmail, Calendar, GitHub through OAuth)', function () {
  let google: GoogleEmulator;
  let github: GithubEmulator;
  let rt: RuntimeFixture;
  let config: RuntimeConfig;
  let workspace: WorkspaceStore;
  const logs: string[] = [];

  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${rt.url}${path}`, { ...init, headers: { authorization: `Bearer ${rt.key}`, ...(init.headers ?? {}) } });

  /** The customer's whole OAuth round: the authorization URL, the provider's consent, the redirect back. */
  async function connect(service: string): Promise<{ authorizationUrl: string; callback: string; answer: Response }> {
    const started = await api(`/api/connections/${service}`, { method: 'POST' });
    expect(started.status).to.equal(200);
    const { authorizationUrl } = (await started.json()) as { authorizationUrl: string };
    const consent = await fetch(authorizationUrl, { redirect: 'manual' });
    expect(consent.status).to.equal(302);
    const callback = consent.headers.get('location')!;
    return { authorizationUrl, callback, answer: await fetch(callback) };
  }

  /** A chat conversation with `turns` customer messages stored, as chat leaves it after each turn. */
  async function conversation(turns = 0, source = 'api'): Promise<string> {
    const { rows } = await rt.db.query<{ id: string }>("INSERT INTO conversations (title, source) VALUES ('t', $1) RETURNING id", [source]);
    for (let i = 0; i < turns; i++) await nextTurn(rows[0]!.id, `message ${i}`);
    return rows[0]!.id;
  }

  /** The turn before ends: its customer message and the reply are stored. */
  async function nextTurn(conversationId: string, message: string): Promise<void> {
    await rt.db.query(
      "INSERT INTO conversation_messages (conversation_id, role, content) VALUES ($1, 'user', $2), ($1, 'assistant', 'ok')",
      [conversationId, message],
    );
  }

  function context(conversationId: string, message: string, overrides: Partial<ToolContext> = {}): ToolContext {
    return { db: rt.db, config, workspace, conversationId, message, now: new Date(), ...overrides };
  }

  const run = (name: string, input: Record<string, unknown>, ctx: ToolContext): Promise<ToolOutcome> => tool(name).run(input, ctx);

  before(async () => {
    configureLogs({ level: 'info', format: 'json' }); // whatever an earlier test of this process set
    logTo({ write: (line: string) => logs.push(line) });
    [google, github] = await Promise.all([startGoogleEmulator(), startGithubEmulator()]);
    const env = { ...googleRuntimeEnv(google), ...githubRuntimeEnv(github), CONNECTIONS_KEY };
    rt = await startRuntimeFixture({ plan: 'team', env });
    config = loadRuntimeConfig({ DATABASE_URL: 'postgres://unused@127.0.0.1/unused', WORKSPACE_ID: rt.workspaceId, PLAN: 'team', MESSAGE_LIMIT: '100', ...env });
    workspace = await WorkspaceStore.load(rt.db, undefined);
  });

  after(async () => {
    logTo(undefined);
    await rt?.close();
    await Promise.all([google?.close(), github?.close()]);
  });

  describe('Gmail', () => {
    it('connects through OAuth: the authorization URL asks for offline access, the callback stores the tokens sealed', async () => {
      const { authorizationUrl, callback, answer } = await connect('gmail');
      const asked = new URL(authorizationUrl);
      expect(`${asked.origin}${asked.pathname}`).to.equal(`${google.url}/o/oauth2/v2/auth`);
      expect(asked.searchParams.get('access_type')).to.equal('offline');
      expect(asked.searchParams.get('scope')).to.include('gmail.readonly').and.include('gmail.compose');
      expect(asked.searchParams.get('redirect_uri')).to.equal(`${rt.url}/api/connections/gmail/callback`);
      expect(answer.status).to.equal(200);
      expect(await answer.json()).to.deep.equal({ service: 'gmail', connected: true, account: google.email });

      const { rows } = await rt.db.query('SELECT * FROM connections');
      expect(rows).to.have.length(1);
      const stored = JSON.stringify(rows);
      expect(google.issued.access).to.have.length(1);
      for (const token of [...google.issued.access, ...google.issued.refresh]) expect(stored).not.to.include(token);
      expect(rows[0].access_token_sealed).to.match(/^v1\./);
      expect(rows[0].refresh_token_sealed).to.match(/^v1\./);
      expect(rows[0].account).to.equal(google.email);

      // The state was spent: the same redirect does not connect twice.
      const again = await fetch(callback);
      expect(again.status).to.equal(400);
      expect(await again.json()).to.include({ error: 'invalid_state' });
      expect(google.grants.authorization_code).to.equal(1);
    });

    it('lists the connection without any token', async () => {
      const response = await api('/api/connections');
      const text = await response.text();
      for (const token of [...google.issued.access, ...google.issued.refresh]) expect(text).not.to.include(token);
      const { connections } = JSON.parse(text) as { connections: Array<Record<string, unknown>> };
      expect(connections.find((c) => c.service === 'gmail')).to.deep.include({ connected: true, included: true, configured: true, account: google.email });
      expect(connections.find((c) => c.service === 'gmail')!.scopes).to.include('https://www.googleapis.com/auth/gmail.readonly');
      expect(connections.find((c) => c.service === 'github')).to.deep.include({ connected: false, account: null });
      expect([...(await connectedServices(rt.db))]).to.deep.equal(['gmail']);
    });

    it('refuses a callback with an unknown state or a refused consent, and an unknown service', async () => {
      const bad = await fetch(`${rt.url}/api/connections/gmail/callback?code=x&state=forged`);
      expect(bad.status).to.equal(400);
      expect(await bad.json()).to.include({ error: 'invalid_state' });
      google.deny = true;
      const { answer: denied } = await connect('gmail').finally(() => (google.deny = false));
      expect(denied.status).to.equal(400);
      expect(await denied.json()).to.include({ error: 'authorization_denied' });
      expect([...(await connectedServices(rt.db))]).to.deep.equal(['gmail']);
      const unknown = await api('/api/connections/dropbox', { method: 'POST' });
      expect(unknown.status).to.equal(404);
      expect(await unknown.json()).to.include({ error: 'not_found' });
    });

    it('searches and reads mail, and saves a draft, through the tools', async () => {
      const invoice = google.addMessage({ from: 'billing@acme.example', subject: 'Invoice 42', body: 'Please pay invoice 42 by Friday.' });
      google.addMessage({ from: 'friend@example.org', subject: 'Lunch?', body: 'Lunch on Tuesday?' });
      const ctx = context(await conversation(), 'find the invoice from acme');

      const found = await run('gmail_search', { query: 'from:acme invoice' }, ctx);
      expect(found.isError).to.equal(undefined);
      const { messages } = JSON.parse(found.content) as { messages: Array<Record<string, string>> };
      expect(messages).to.have.length(1);
      expect(messages[0]).to.include({ id: invoice.id, from: 'billing@acme.example', subject: 'Invoice 42' });

      const read = await run('gmail_read', { message_id: invoice.id }, ctx);
      expect(JSON.parse(read.content)).to.include({ subject: 'Invoice 42', text: 'Please pay invoice 42 by Friday.' });

      const draft = await run('gmail_draft', { to: 'billing@acme.example', subject: 'Re: Invoice 42', body: 'Paid today. Grüße' }, ctx);
      expect(draft.isError).to.equal(undefined);
      expect(google.drafts).to.have.length(1);
      const raw = Buffer.from(google.drafts[0]!.message.raw, 'base64url').toString('utf8');
      expect(raw).to.include('To: billing@acme.example').and.include('Subject: Re: Invoice 42');
      const body = raw.split('\r\n\r\n')[1]!.replace(/\r\n/g, '');
      expect(Buffer.from(body, 'base64').toString('utf8')).to.equal('Paid today. Grüße');
      expect(google.sent).to.have.length(0);
    });

    it('sends only once the customer confirmed in a following message, and only once', async () => {
      const email = { to: 'boss@example.com', subject: 'Report', body: 'The report is attached in spirit.' };
      const id = await conversation(1);
      const first = await run('gmail_send', email, context(id, 'email my boss the report'));
      expect(first.isError).to.equal(undefined);
      expect(first.content).to.include('boss@example.com').and.include('"Report"');
      const pendingId = /"confirmation_id": "(act_[\w-]+)"/.exec(first.content)![1]!;
      expect(google.sent).to.have.length(0);

      // The same turn cannot confirm its own request, whatever the message says.
      const sameTurn = await run('gmail_send', { ...email, confirmation_id: pendingId }, context(id, 'email my boss the report, yes send it'));
      expect(sameTurn.isError).to.equal(true);
      expect(google.sent).to.have.length(0);

      await nextTurn(id, 'email my boss the report');
      // A changed input is not what the customer confirmed.
      const changed = await run('gmail_send', { ...email, to: 'everyone@example.com', confirmation_id: pendingId }, context(id, 'yes, send it'));
      expect(changed.isError).to.equal(true);
      // A message that is no plain yes does not confirm.
      const hedged = await run('gmail_send', { ...email, confirmation_id: pendingId }, context(id, 'yes but change the subject first'));
      expect(hedged.isError).to.equal(true);
      expect(google.sent).to.have.length(0);

      const confirmed = await run('gmail_send', { ...email, confirmation_id: pendingId }, context(id, 'yes, send it'));
      expect(confirmed.isError).to.equal(undefined);
      expect(JSON.parse(confirmed.content)).to.include({ sent: true });
      expect(google.sent).to.have.length(1);
      expect(google.sent[0]!.text).to.include('To: boss@example.com').and.include('Subject: Report');

      const reused = await run('gmail_send', { ...email, confirmation_id: pendingId }, context(id, 'yes, send it'));
      expect(reused.isError).to.equal(true);
      expect(reused.content).to.include('already used');
      expect(google.sent).to.have.length(1);
    });

    it('refuses a confirmation from another conversation, an expired one, and any in a webhook turn', async () => {
      const email = { to: 'a@example.com', subject: 'Hi', body: 'Hello' };
      const id = await conversation(1);
      const first = await run('gmail_send', email, context(id, 'say hi to a'));
      const pendingId = /"confirmation_id": "(act_[\w-]+)"/.exec(first.content)![1]!;
      const other = await conversation(2);
      expect((await run('gmail_send', { ...email, confirmation_id: pendingId }, context(other, 'yes'))).isError).to.equal(true);
      await nextTurn(id, 'say hi to a');
      const later = new Date(Date.now() + 16 * 60_000);
      const expired = await run('gmail_send', { ...email, confirmation_id: pendingId }, context(id, 'yes', { now: later }));
      expect(expired.content).to.include('expired');

      const hook = await conversation(3, 'webhook:gmail');
      const fromHook = await run('gmail_send', email, context(hook, 'yes, send it'));
      expect(fromHook.isError).to.equal(true);
      expect(google.sent).to.have.length(1); // only the confirmed one of the test before
    });

    it('refreshes an expired access token at the token endpoint and keeps it sealed', async () => {
      google.expireAccessTokens();
      await rt.db.query("UPDATE connections SET expires_at = now() - interval '1 minute' WHERE service = 'gmail'");
      const found = await run('gmail_search', { query: 'invoice' }, context(await conversation(), 'invoices?'));
      expect(found.isError).to.equal(undefined);
      expect(google.grants.refresh_token).to.equal(1);
      const { rows } = await rt.db.query("SELECT access_token_sealed, expires_at, refreshed_at FROM connections WHERE service = 'gmail'");
      expect(rows[0].refreshed_at).to.be.instanceOf(Date);
      expect(rows[0].expires_at.getTime()).to.be.greaterThan(Date.now());
      expect(JSON.stringify(rows)).not.to.include(google.issued.access.at(-1)!);
    });

    it('refreshes once and tries again when Google refuses a token before its expiry', async () => {
      google.expireAccessTokens(); // the stored expiry still says it is valid
      const found = await run('gmail_search', { query: 'invoice' }, context(await conversation(), 'invoices?'));
      expect(found.isError).to.equal(undefined);
      expect(google.grants.refresh_token).to.equal(2);
    });

    it('disconnects, revoking the grant at Google; the tools and TOOLS.md then say how to connect', async () => {
      const response = await api('/api/connections/gmail', { method: 'DELETE' });
      expect(response.status).to.equal(200);
      expect(await response.json()).to.deep.equal({ service: 'gmail', connected: false, revokedAtProvider: true });
      expect(google.revoked.has(google.issued.refresh[0]!)).to.equal(true);
      expect((await rt.db.query('SELECT 1 FROM connections')).rowCount).to.equal(0);
      const tools = (await rt.db.query<{ content: string }>("SELECT content FROM workspace_files WHERE path = 'TOOLS.md'")).rows[0]!.content;
      expect(tools).to.include('- gmail: not connected; the customer connects it with POST /api/connections/gmail');
      const outcome = await run('gmail_search', { query: 'x' }, context(await conversation(), 'mail?'));
      expect(outcome.isError).to.equal(true);
      expect(outcome.content).to.include('not connected').and.include('POST /api/connections/gmail');
      expect((await api('/api/connections/gmail', { method: 'DELETE' })).status).to.equal(404);
    });
  });

  describe('Calendar', () => {
    it('lists events and creates one once confirmed', async () => {
      const before = await run('calendar_list', {}, context(await conversation(), 'my day?'));
      expect(before.isError).to.equal(true);
      expect(before.content).to.include('POST /api/connections/calendar');

      expect((await connect('calendar')).answer.status).to.equal(200);
      google.events.push({
        id: 'evstandup',
        summary: 'Standup',
        start: { dateTime: '2030-01-07T09:00:00Z' },
        end: { dateTime: '2030-01-07T09:15:00Z' },
        htmlLink: 'https://www.google.com/calendar/event?eid=evstandup',
        status: 'confirmed',
      });
      const listed = await run('calendar_list', { time_min: '2030-01-07T00:00:00Z', time_max: '2030-01-08T00:00:00Z' }, context(await conversation(), 'my day?'));
      expect(JSON.parse(listed.content).events).to.deep.equal([
        { id: 'evstandup', summary: 'Standup', start: '2030-01-07T09:00:00Z', end: '2030-01-07T09:15:00Z', link: 'https://www.google.com/calendar/event?eid=evstandup' },
      ]);

      const event = { summary: 'Dentist', start: '2030-01-08T15:00:00+01:00', end: '2030-01-08T16:00:00+01:00', attendees: ['me@example.com'] };
      const id = await conversation(1);
      const asked = await run('calendar_create', event, context(id, 'book the dentist'));
      expect(asked.content).to.include('"Dentist"').and.include('me@example.com');
      const pendingId = /"confirmation_id": "(act_[\w-]+)"/.exec(asked.content)![1]!;
      expect(google.events).to.have.length(1);
      await nextTurn(id, 'book the dentist');
      const created = await run('calendar_create', { ...event, confirmation_id: pendingId }, context(id, 'Yes please'));
      expect(JSON.parse(created.content)).to.include({ created: true });
      expect(google.events.at(-1)).to.deep.include({ summary: 'Dentist', start: { dateTime: '2030-01-08T15:00:00+01:00' }, attendees: [{ email: 'me@example.com' }] });
    });
  });

  describe('GitHub', () => {
    it('connects, lists issues and comments once confirmed', async () => {
      github.addIssue('acme/app', { title: 'Crash on start', labels: [{ name: 'bug' }] });
      github.addIssue('acme/app', { title: 'Old', state: 'closed' });
      const { answer } = await connect('github');
      expect(await answer.json()).to.deep.equal({ service: 'github', connected: true, account: github.login });

      const listed = await run('github_issues', { repo: 'acme/app' }, context(await conversation(), 'open issues?'));
      expect(JSON.parse(listed.content).issues).to.deep.equal([
        { number: 1, title: 'Crash on start', state: 'open', author: 'someone', labels: ['bug'], comments: 0, pullRequest: false, url: 'https://github.com/acme/app/issues/1' },
      ]);

      const comment = { repo: 'acme/app', issue_number: 1, body: 'Looking into it.' };
      const id = await conversation(1);
      const asked = await run('github_comment', comment, context(id, 'tell them I am on it'));
      const pendingId = /"confirmation_id": "(act_[\w-]+)"/.exec(asked.content)![1]!;
      expect(github.comments.size).to.equal(0);
      await nextTurn(id, 'tell them I am on it');
      const posted = await run('github_comment', { ...comment, confirmation_id: pendingId }, context(id, 'ok, do it'));
      expect(JSON.parse(posted.content)).to.include({ commented: true });
      expect(github.comments.get('acme/app#1')!.map((c) => c.body)).to.deep.equal(['Looking into it.']);

      const gone = await api('/api/connections/github', { method: 'DELETE' });
      expect(await gone.json()).to.include({ revokedAtProvider: true });
      expect(github.revoked.has(github.issued[0]!)).to.equal(true);
    });
  });

  describe('plans and platforms', () => {
    it('a Starter runtime refuses Gmail with the plan that has it', async () => {
      const starter = await startRuntimeFixture({ plan: 'starter', env: { ...googleRuntimeEnv(google), CONNECTIONS_KEY } });
      try {
        const response = await fetch(`${starter.url}/api/connections/gmail`, { method: 'POST', headers: { authorization: `Bearer ${starter.key}` } });
        expect(response.status).to.equal(403);
        expect(await response.json()).to.deep.equal({
          error: 'plan_required',
          reason: 'Gmail is not included in the Starter plan; it comes with the Pro plan',
          requiredPlan: 'pro',
        });
        const starterConfig = loadRuntimeConfig({ DATABASE_URL: 'postgres://unused@127.0.0.1/unused', WORKSPACE_ID: 'w', PLAN: 'starter', MESSAGE_LIMIT: '1' });
        const outcome = await run('gmail_search', { query: 'x' }, { ...context(await conversation(), 'mail?'), config: starterConfig });
        expect(outcome).to.deep.include({ isError: true, content: 'Gmail is not included in the Starter plan; it comes with the Pro plan' });
      } finally {
        await starter.close();
      }
    });

    it('a platform without an OAuth app answers that connections are not configured', async () => {
      const bare = await startRuntimeFixture({ plan: 'team', env: { CONNECTIONS_KEY } });
      try {
        const response = await fetch(`${bare.url}/api/connections/github`, { method: 'POST', headers: { authorization: `Bearer ${bare.key}` } });
        expect(response.status).to.equal(503);
        expect(await response.json()).to.include({ error: 'not_configured' });
      } finally {
        await bare.close();
      }
    });

    it('the connections API needs the API key, the callback does not', async () => {
      expect((await fetch(`${rt.url}/api/connections`)).status).to.equal(401);
      expect((await fetch(`${rt.url}/api/connections/gmail`, { method: 'POST' })).status).to.equal(401);
      expect((await fetch(`${rt.url}/api/connections/gmail/callback?state=nope&code=x`)).status).to.equal(400);
    });
  });

  describe('logs', () => {
    it('never carry a token', () => {
      const text = logs.join('\n');
      expect(text).to.include('service connected');
      for (const token of [...google.issued.access, ...google.issued.refresh, ...github.issued]) expect(text).not.to.include(token);
    });
  });

  it('reads only a plain yes as a confirmation', () => {
    for (const yes of ['yes', 'Yes, send it', 'ok', 'Sure.', 'go ahead', 'confirmed', 'yes please', 'Yep!']) expect(readsAsConfirmation(yes), yes).to.equal(true);
    for (const no of ['no', "don't", 'yes?', 'yes but change it', 'wait', 'send it later', 'maybe', 'ok, not yet', 'sure, except the cc', '']) {
      expect(readsAsConfirmation(no), no).to.equal(false);
    }
  });
});
