// GitHub's OAuth app flow and the REST calls the runtime makes, on the real paths with the real JSON shapes, so
// `@octokit/rest` (pointed at it with `baseUrl: <url>/api/v3`, as for GitHub Enterprise Server) is exercised for real:
// - GET  /login/oauth/authorize: consents at once, 302 to redirect_uri with code and state (error=access_denied
//   once `deny` is set).
// - POST /login/oauth/access_token: code once, same client and secret (and redirect_uri when one was given) →
//   { access_token: gho_…, token_type: 'bearer', scope }; a bad code answers 200 { error: 'bad_verification_code' }
//   as GitHub does.
// - GET /api/v3/user; GET /api/v3/repos/{owner}/{repo}/issues (state, per_page); POST …/issues/{n}/comments;
//   DELETE /api/v3/applications/{client_id}/grant (basic auth of the app, { access_token }) revokes the grant.
// Repositories are seeded with `addIssue`; comments are kept per issue for the tests to read.
import { authorizeRedirect, randomToken, startEmulatorServer, type AuthorizationCode, type EmulatorRequest, type EmulatorResponse } from './oauthEmulatorServer.ts';

export const GITHUB_CLIENT = { clientId: 'Iv1.emulatorclient', clientSecret: 'emulator-github-client-secret' };

export interface GithubIssue {
  number: number;
  title: string;
  body: string;
  state: 'open' | 'closed';
  user: { login: string };
  labels: { name: string }[];
  comments: number;
  html_url: string;
  created_at: string;
  pull_request?: { url: string };
}

export interface GithubComment {
  id: number;
  body: string;
  user: { login: string };
  html_url: string;
  created_at: string;
}

export interface GithubEmulator {
  url: string;
  /** The user who consents. */
  login: string;
  deny: boolean;
  /** Issues by "owner/repo". */
  repos: Map<string, GithubIssue[]>;
  /** Comments by "owner/repo#number". */
  comments: Map<string, GithubComment[]>;
  issued: string[];
  revoked: Set<string>;
  requests: { method: string; path: string }[];
  addIssue(repo: string, issue: Partial<GithubIssue> & Pick<GithubIssue, 'title'>): GithubIssue;
  close(): Promise<void>;
}

export async function startGithubEmulator(options: { login?: string } = {}): Promise<GithubEmulator> {
  const codes = new Map<string, AuthorizationCode>();
  const tokens = new Map<string, { scopes: string[] }>();
  let commentId = 1_000;

  const apiError = (status: number, message: string): EmulatorResponse => ({
    status,
    body: { message, documentation_url: 'https://docs.github.com/rest', status: String(status) },
  });

  function accessToken(req: EmulatorRequest): EmulatorResponse {
    const b = req.body as Record<string, string>;
    const code = codes.get(b.code ?? '');
    codes.delete(b.code ?? '');
    if (b.client_id !== GITHUB_CLIENT.clientId || b.client_secret !== GITHUB_CLIENT.clientSecret) {
      return { status: 200, body: { error: 'incorrect_client_credentials', error_description: 'The client_id and/or client_secret passed are incorrect.' } };
    }
    if (!code || (b.redirect_uri && b.redirect_uri !== code.redirectUri)) {
      return { status: 200, body: { error: 'bad_verification_code', error_description: 'The code passed is incorrect or expired.' } };
    }
    const token = randomToken('gho_', 27).replace(/[-_]/g, 'x');
    tokens.set(token, { scopes: code.scopes });
    emulator.issued.push(token);
    return { status: 200, body: { access_token: token, token_type: 'bearer', scope: code.scopes.join(',') } };
  }

  function handle(req: EmulatorRequest): EmulatorResponse {
    const { method, path } = req;
    if (method === 'GET' && path === '/login/oauth/authorize') return authorizeRedirect(req, codes, { clientId: GITHUB_CLIENT.clientId, deny: emulator.deny, codePrefix: '' });
    if (method === 'POST' && path === '/login/oauth/access_token') return accessToken(req);

    let m: RegExpExecArray | null;
    if (method === 'DELETE' && (m = /^\/api\/v3\/applications\/([^/]+)\/grant$/.exec(path))) {
      const basic = Buffer.from((req.headers.authorization ?? '').replace(/^Basic\s+/i, ''), 'base64').toString('utf8');
      if (decodeURIComponent(m[1]!) !== GITHUB_CLIENT.clientId || basic !== `${GITHUB_CLIENT.clientId}:${GITHUB_CLIENT.clientSecret}`) return apiError(404, 'Not Found');
      const token = String(req.body.access_token ?? '');
      if (!tokens.has(token)) return apiError(422, 'Validation Failed');
      emulator.revoked.add(token);
      return { status: 204 };
    }
    if (!path.startsWith('/api/v3/')) return apiError(404, 'Not Found');
    if (!req.bearer || !tokens.has(req.bearer) || emulator.revoked.has(req.bearer)) return apiError(401, 'Bad credentials');

    if (method === 'GET' && path === '/api/v3/user') return { status: 200, body: { login: emulator.login, id: 583231, type: 'User', html_url: `https://github.com/${emulator.login}` } };
    if ((m = /^\/api\/v3\/repos\/([^/]+)\/([^/]+)\/issues$/.exec(path)) && method === 'GET') {
      const issues = emulator.repos.get(`${m[1]}/${m[2]}`);
      if (!issues) return apiError(404, 'Not Found');
      const state = req.query.get('state') ?? 'open';
      const perPage = Number(req.query.get('per_page') ?? 30);
      const listed = issues.filter((i) => state === 'all' || i.state === state).sort((a, b) => b.number - a.number).slice(0, perPage);
      return { status: 200, body: listed };
    }
    if ((m = /^\/api\/v3\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)\/comments$/.exec(path)) && method === 'POST') {
      const repo = `${m[1]}/${m[2]}`;
      const issue = emulator.repos.get(repo)?.find((i) => i.number === Number(m![3]));
      if (!issue) return apiError(404, 'Not Found');
      if (typeof req.body.body !== 'string' || !req.body.body) return apiError(422, 'Validation Failed');
      const comment: GithubComment = {
        id: ++commentId,
        body: req.body.body,
        user: { login: emulator.login },
        html_url: `${issue.html_url}#issuecomment-${commentId}`,
        created_at: new Date().toISOString(),
      };
      const key = `${repo}#${issue.number}`;
      emulator.comments.set(key, [...(emulator.comments.get(key) ?? []), comment]);
      issue.comments++;
      return { status: 201, body: comment };
    }
    return apiError(404, 'Not Found');
  }

  const server = await startEmulatorServer(handle);
  const emulator: GithubEmulator = {
    url: server.url,
    login: options.login ?? 'octo-customer',
    deny: false,
    repos: new Map(),
    comments: new Map(),
    issued: [],
    revoked: new Set(),
    requests: server.requests,
    addIssue(repo, issue) {
      const issues = emulator.repos.get(repo) ?? [];
      emulator.repos.set(repo, issues);
      const number = issues.length + 1;
      const full: GithubIssue = {
        number,
        body: '',
        state: 'open',
        user: { login: 'someone' },
        labels: [],
        comments: 0,
        html_url: `https://github.com/${repo}/issues/${number}`,
        created_at: new Date().toISOString(),
        ...issue,
      };
      issues.push(full);
      return full;
    },
    close: server.close,
  };
  return emulator;
}

/** The runtime's environment for this emulator: its OAuth app and GitHub's endpoints. */
export function githubRuntimeEnv(emulator: Pick<GithubEmulator, 'url'>): Record<string, string> {
  return {
    GITHUB_CLIENT_ID: GITHUB_CLIENT.clientId,
    GITHUB_CLIENT_SECRET: GITHUB_CLIENT.clientSecret,
    GITHUB_OAUTH_URL: `${emulator.url}/login/oauth`,
    GITHUB_API_URL: `${emulator.url}/api/v3`,
  };
}
