import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig, redactUrl } from '../../src/config.ts';
import { parseDuration } from '../../core/durations.ts';
import { DEFAULT_PRICE_IDS } from '../../core/plans.ts';

/** Runs fn and returns the ConfigError it throws (fails the test if it throws nothing or something else). */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return err as ConfigError;
  }
  expect.fail('expected a ConfigError');
}

const PRODUCTION_SECRETS = {
  PUBLIC_URL: 'https://control.example.com',
  SMTP_URL: 'smtp://mail.example.com:587',
  ALERT_EMAIL: 'ops@example.com',
  SECRETS_KEY: Buffer.alloc(32, 7).toString('base64'),
  STRIPE_WEBHOOK_SECRET: 'whsec_prod',
  ADMIN_PASSWORD: 'prod-password-0123456789',
  ADMIN_TOKEN: 'prod-token-0123456789abcdef',
  STRIPE_SECRET_KEY: 'sk_live_prod',
};

describe('config', () => {
  let cwd: string;

  beforeEach(() => {
    cwd = mkdtempSync(path.join(os.tmpdir(), 'unit-config-'));
  });
  afterEach(() => {
    rmSync(cwd, { recursive: true, force: true });
  });

  describe('loadConfig defaults (development)', () => {
    it('uses the documented defaults with an empty environment', () => {
      const config = loadConfig({}, cwd);

      expect(config.production).to.equal(false);
      expect(config.port).to.equal(3000);
      expect(config.publicUrl).to.equal('http://localhost:3000');
      expect(config.redisUrl).to.equal('redis://127.0.0.1:6379');
      expect(config.databaseUrl).to.equal('postgres://postgres@127.0.0.1:5432/clawdbot');
      expect(config.queuePrefix).to.equal('{clawdbot}');
      expect(config.computeProvider).to.equal('local');
      expect(config.databaseProvider).to.equal('local');
      expect(config.varDir).to.equal(path.join(cwd, 'var'));
      expect(config.mail.outboxDir).to.equal(path.join(cwd, 'var', 'outbox'));
      expect(config.runtime.workspacesDir).to.equal(path.join(cwd, 'var', 'workspaces'));
      expect(config.stripe.secretKey).to.equal(null);
      expect(config.stripe.apiBase).to.equal(null);
      expect(config.stripe.priceIds).to.deep.equal(DEFAULT_PRICE_IDS);
      expect(config.admin.user).to.equal('admin');
      expect(config.alerts).to.deep.equal({ slackWebhookUrl: null, email: null });
      expect(config.worker).to.deep.equal({ concurrency: 10, attempts: 5, backoffMs: 1_000 });
      expect(config.healthCheck).to.deep.equal({ timeoutMs: 120_000, initialDelayMs: 250, maxDelayMs: 5_000 });
    });

    it('treats blank (whitespace-only) variables as unset', () => {
      const config = loadConfig({ PORT: '   ', REDIS_URL: '', QUEUE_PREFIX: ' ' }, cwd);
      expect(config.port).to.equal(3000);
      expect(config.redisUrl).to.equal('redis://127.0.0.1:6379');
      expect(config.queuePrefix).to.equal('{clawdbot}');
    });

    it('reads given values and strips a trailing slash from URLs', () => {
      const config = loadConfig(
        {
          PORT: '8080',
          PUBLIC_URL: 'https://claw.example.com/',
          REDIS_URL: 'rediss://:pw@redis.example.com:6380',
          QUEUE_PREFIX: '{other}',
          JOB_ATTEMPTS: '7',
          JOB_BACKOFF: '2s',
          HEALTH_CHECK_TIMEOUT: '5m',
          ALERT_EMAIL: 'ops@example.com',
        },
        cwd,
      );
      expect(config.port).to.equal(8080);
      expect(config.publicUrl).to.equal('https://claw.example.com');
      expect(config.redisUrl).to.equal('rediss://:pw@redis.example.com:6380');
      expect(config.queuePrefix).to.equal('{other}');
      expect(config.worker.attempts).to.equal(7);
      expect(config.worker.backoffMs).to.equal(2_000);
      expect(config.healthCheck.timeoutMs).to.equal(300_000);
      expect(config.alerts.email).to.equal('ops@example.com');
    });
  });

  describe('development secrets', () => {
    it('generates the secrets under <cwd>/var/dev-secrets and reuses them on the next start', () => {
      const first = loadConfig({}, cwd);
      const dir = path.join(cwd, 'var', 'dev-secrets');

      expect(readdirSync(dir).sort()).to.deep.equal(['ADMIN_PASSWORD', 'ADMIN_TOKEN', 'SECRETS_KEY', 'STRIPE_WEBHOOK_SECRET']);
      expect(first.secretsKey).to.have.length(32);
      expect(first.stripe.webhookSecret).to.match(/^whsec_/);
      expect(first.admin.password).to.have.length.greaterThan(10);
      expect(first.admin.token).to.have.length.greaterThan(20);
      expect(readFileSync(path.join(dir, 'ADMIN_TOKEN'), 'utf8').trim()).to.equal(first.admin.token);
      expect(first.generatedSecrets).to.have.length(4);
      for (const line of first.generatedSecrets) {
        // Says where the secret is, never what it is.
        expect(line).to.include(dir);
        expect(line).not.to.include(first.admin.token);
        expect(line).not.to.include(first.admin.password);
      }

      const second = loadConfig({}, cwd);
      expect(second.secretsKey.equals(first.secretsKey)).to.equal(true);
      expect(second.stripe.webhookSecret).to.equal(first.stripe.webhookSecret);
      expect(second.admin.password).to.equal(first.admin.password);
      expect(second.admin.token).to.equal(first.admin.token);
      expect(second.generatedSecrets).to.deep.equal([]);
    });

    it('generates different secrets in a different directory', () => {
      const other = mkdtempSync(path.join(os.tmpdir(), 'unit-config-'));
      try {
        const a = loadConfig({}, cwd);
        const b = loadConfig({}, other);
        expect(a.admin.token).not.to.equal(b.admin.token);
        expect(a.secretsKey.equals(b.secretsKey)).to.equal(false);
      } finally {
        rmSync(other, { recursive: true, force: true });
      }
    });

    it('does not generate a secret that is given', () => {
      const config = loadConfig({ ADMIN_TOKEN: 'given-token' }, cwd);
      expect(config.admin.token).to.equal('given-token');
      expect(existsSync(path.join(cwd, 'var', 'dev-secrets', 'ADMIN_TOKEN'))).to.equal(false);
      expect(config.generatedSecrets.join('\n')).not.to.include('ADMIN_TOKEN');
    });

    it('honours VAR_DIR relative to cwd', () => {
      const config = loadConfig({ VAR_DIR: 'state' }, cwd);
      expect(config.varDir).to.equal(path.join(cwd, 'state'));
      expect(existsSync(path.join(cwd, 'state', 'dev-secrets', 'SECRETS_KEY'))).to.equal(true);
      expect(existsSync(path.join(cwd, 'var'))).to.equal(false);
    });
  });

  describe('connections handed to the runtimes', () => {
    it('passes on the OAuth apps and endpoints that are set, and refuses half an app', () => {
      const config = loadConfig({ GOOGLE_CLIENT_ID: 'g-id', GOOGLE_CLIENT_SECRET: 'g-secret', GITHUB_API_URL: 'http://gh.test/api/v3/' }, cwd);
      expect(config.runtime.connections).to.deep.equal({ GOOGLE_CLIENT_ID: 'g-id', GOOGLE_CLIENT_SECRET: 'g-secret', GITHUB_API_URL: 'http://gh.test/api/v3' });
      expect(loadConfig({}, cwd).runtime.connections).to.deep.equal({});
      const err = configError(() => loadConfig({ GITHUB_CLIENT_SECRET: 's', GOOGLE_TOKEN_URL: 'nope' }, cwd));
      expect(err.problems).to.have.length(2);
      expect(err.message).to.include('GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET go together').and.include('GOOGLE_TOKEN_URL');
    });
  });

  describe('validation', () => {
    it('names every invalid variable in one ConfigError', () => {
      const err = configError(() =>
        loadConfig(
          {
            PORT: 'abc',
            REDIS_URL: 'http://x',
            SECRETS_KEY: Buffer.from('short').toString('base64'),
            COMPUTE_PROVIDER: 'aws',
            JOB_ATTEMPTS: '0',
            HEALTH_CHECK_TIMEOUT: 'soon',
            ALERT_EMAIL: 'nope',
            QUEUE_PREFIX: 'claw:bot',
          },
          cwd,
        ),
      );

      expect(err.name).to.equal('ConfigError');
      expect(err.problems).to.have.length(8);
      for (const name of ['PORT', 'REDIS_URL', 'SECRETS_KEY', 'COMPUTE_PROVIDER', 'JOB_ATTEMPTS', 'HEALTH_CHECK_TIMEOUT', 'ALERT_EMAIL', 'QUEUE_PREFIX']) {
        expect(err.message, name).to.include(name);
        expect(err.problems.some((p) => p.startsWith(name)), name).to.equal(true);
      }
      expect(err.message).to.include('"abc"');
      expect(err.message).to.include('"soon"');
      expect(err.message).to.include('"aws"');
    });

    it('rejects out-of-range and non-integer numbers', () => {
      for (const [name, value] of [
        ['PORT', '65536'],
        ['PORT', '-1'],
        ['PORT', '80.5'],
        ['WORKER_CONCURRENCY', '0'],
        ['WORKER_CONCURRENCY', '1001'],
        ['JOB_ATTEMPTS', '101'],
      ] as const) {
        const err = configError(() => loadConfig({ [name]: value }, cwd));
        expect(err.problems, `${name}=${value}`).to.have.length(1);
        expect(err.problems[0]).to.include(name).and.to.include(`"${value}"`);
      }
    });

    it('reads the welcome page settings: KEY_REVEAL_WINDOW (1h) and KEY_IN_EMAIL (true), refusing what is neither', () => {
      expect(loadConfig({}, cwd).welcome).to.deep.equal({ keyRevealWindowMs: 3_600_000, keyInEmail: true });
      expect(loadConfig({ KEY_REVEAL_WINDOW: '15m', KEY_IN_EMAIL: 'false' }, cwd).welcome).to.deep.equal({ keyRevealWindowMs: 900_000, keyInEmail: false });
      expect(loadConfig({ KEY_IN_EMAIL: 'NO' }, cwd).welcome.keyInEmail).to.equal(false);
      const err = configError(() => loadConfig({ KEY_REVEAL_WINDOW: 'soon', KEY_IN_EMAIL: 'maybe' }, cwd));
      expect(err.problems).to.have.length(2);
      expect(err.problems.join()).to.include('KEY_REVEAL_WINDOW').and.include('KEY_IN_EMAIL must be true or false (got "maybe")');
    });

    it('rejects a SECRETS_KEY that is not 32 bytes, and accepts one that is', () => {
      const err = configError(() => loadConfig({ SECRETS_KEY: Buffer.alloc(31).toString('base64') }, cwd));
      expect(err.problems).to.deep.equal(['SECRETS_KEY must be the base64 of exactly 32 bytes']);
      const key = Buffer.alloc(32, 9);
      expect(loadConfig({ SECRETS_KEY: key.toString('base64') }, cwd).secretsKey.equals(key)).to.equal(true);
    });

    it('rejects URLs of the wrong protocol and unparseable URLs', () => {
      const err = configError(() =>
        loadConfig({ PUBLIC_URL: 'ftp://x', SMTP_URL: 'http://mail', SLACK_WEBHOOK_URL: 'not a url' }, cwd),
      );
      expect(err.problems).to.have.length(3);
      expect(err.message).to.include('PUBLIC_URL').and.to.include('SMTP_URL').and.to.include('SLACK_WEBHOOK_URL');
    });

    it('redacts the password of an invalid DATABASE_URL in the message', () => {
      const err = configError(() => loadConfig({ DATABASE_URL: 'mysql://app:hunter2@db.example.com/app' }, cwd));
      expect(err.message).to.include('DATABASE_URL');
      expect(err.message).to.include('mysql://app:***@db.example.com/app');
      expect(err.message).not.to.include('hunter2');
    });

    it('redacts the password of an unparseable DATABASE_URL in the message', () => {
      for (const url of ['postgres://app:hunter2@db.example.com:notaport/app', 'postgres://app:hunter2@db example.com/app']) {
        const err = configError(() => loadConfig({ DATABASE_URL: url }, cwd));
        expect(err.message).to.include('DATABASE_URL');
        expect(err.message, url).not.to.include('hunter2');
      }
    });

    it('rejects price ids that are not distinct', () => {
      const err = configError(() => loadConfig({ STRIPE_PRICE_STARTER: 'price_x', STRIPE_PRICE_PRO: 'price_x' }, cwd));
      expect(err.problems).to.have.length(1);
      expect(err.problems[0]).to.include('STRIPE_PRICE_STARTER');
    });
  });

  describe('price ids', () => {
    it('overrides each plan price from the environment', () => {
      const config = loadConfig(
        { STRIPE_PRICE_STARTER: 'price_s', STRIPE_PRICE_PRO: 'price_p', STRIPE_PRICE_TEAM: 'price_t' },
        cwd,
      );
      expect(config.stripe.priceIds).to.deep.equal({ starter: 'price_s', pro: 'price_p', team: 'price_t' });
    });

    it('overrides one price and keeps the others', () => {
      const config = loadConfig({ STRIPE_PRICE_PRO: 'price_custom_pro' }, cwd);
      expect(config.stripe.priceIds).to.deep.equal({ ...DEFAULT_PRICE_IDS, pro: 'price_custom_pro' });
    });
  });

  describe('production', () => {
    it('refuses to start without its secrets, public URL, mail server and alert channel, and names them all', () => {
      const err = configError(() => loadConfig({ NODE_ENV: 'production' }, cwd));
      for (const name of ['SECRETS_KEY', 'STRIPE_WEBHOOK_SECRET', 'ADMIN_PASSWORD', 'ADMIN_TOKEN', 'STRIPE_SECRET_KEY', 'PUBLIC_URL', 'SMTP_URL']) {
        expect(err.problems, name).to.include(`${name} is required in production`);
      }
      expect(err.message).to.include('SLACK_WEBHOOK_URL or ALERT_EMAIL');
      expect(err.problems).to.have.length(8);
      // Nothing was generated on disk.
      expect(existsSync(path.join(cwd, 'var'))).to.equal(false);
    });

    it('names just the one secret that is missing', () => {
      const { ADMIN_TOKEN: _omitted, ...rest } = PRODUCTION_SECRETS;
      const err = configError(() => loadConfig({ NODE_ENV: 'production', ...rest }, cwd));
      expect(err.problems).to.deep.equal(['ADMIN_TOKEN is required in production']);
    });

    it('starts with every secret given, generating nothing', () => {
      const config = loadConfig({ NODE_ENV: 'production', ...PRODUCTION_SECRETS }, cwd);
      expect(config.production).to.equal(true);
      expect(config.publicUrl).to.equal('https://control.example.com');
      expect(config.stripe.secretKey).to.equal('sk_live_prod');
      expect(config.stripe.webhookSecret).to.equal('whsec_prod');
      expect(config.admin).to.deep.equal({ user: 'admin', password: 'prod-password-0123456789', token: 'prod-token-0123456789abcdef', authFailureLimit: 20, viewer: null });
      expect(config.secretsKey.equals(Buffer.alloc(32, 7))).to.equal(true);
      expect(config.generatedSecrets).to.deep.equal([]);
      expect(existsSync(path.join(cwd, 'var'))).to.equal(false);
    });

    it('reports missing secrets together with other invalid variables', () => {
      const err = configError(() => loadConfig({ NODE_ENV: 'production', PORT: 'abc' }, cwd));
      expect(err.problems).to.have.length(9);
      expect(err.message).to.include('PORT').and.to.include('ADMIN_PASSWORD');
    });
  });

  it('refuses short operator secrets in production', () => {
    const err = configError(() => loadConfig({ NODE_ENV: 'production', ...PRODUCTION_SECRETS, ADMIN_PASSWORD: 'short', ADMIN_TOKEN: 'x' }, cwd));
    expect(err.problems).to.deep.equal([
      'ADMIN_PASSWORD must be at least 16 characters in production',
      'ADMIN_TOKEN must be at least 16 characters in production',
    ]);
  });

  describe('cloud providers', () => {
    it('names every missing Railway and Neon variable at once', () => {
      const err = configError(() => loadConfig({ COMPUTE_PROVIDER: 'railway', DATABASE_PROVIDER: 'neon' }, cwd));
      for (const name of ['RAILWAY_TOKEN or RAILWAY_PROJECT_TOKEN', 'RAILWAY_PROJECT_ID', 'RAILWAY_ENVIRONMENT_ID', 'CLAWDBOT_REPO', 'NEON_API_KEY', 'NEON_PROJECT_IDS']) {
        expect(err.message, name).to.include(name);
      }
      expect(err.problems).to.have.length(6);
    });

    it('reads Railway (project token) and Neon (a pool of projects)', () => {
      const config = loadConfig(
        {
          COMPUTE_PROVIDER: 'railway',
          RAILWAY_PROJECT_TOKEN: 'proj-token',
          RAILWAY_PROJECT_ID: 'p1',
          RAILWAY_ENVIRONMENT_ID: 'e1',
          CLAWDBOT_REPO: 'clawdbot/runtime',
          DATABASE_PROVIDER: 'neon',
          NEON_API_KEY: 'neon-key',
          NEON_PROJECT_IDS: ' proj-a , proj-b ',
        },
        cwd,
      );
      expect(config.railway).to.deep.include({ apiUrl: 'https://backboard.railway.com/graphql/v2', projectId: 'p1', domainScheme: 'https', runtimePort: 8080 });
      expect(config.railway!.auth).to.deep.equal({ kind: 'project', token: 'proj-token' });
      expect(config.neon).to.deep.equal({ apiUrl: 'https://console.neon.tech/api/v2', apiKey: 'neon-key', projectIds: ['proj-a', 'proj-b'], branchLimit: 5_000 });
      expect(loadConfig({}, cwd)).to.deep.include({ railway: null, neon: null, computeProvider: 'local', databaseProvider: 'local' });
    });

    it('reads the branch limit of a Neon project (NEON_BRANCH_LIMIT) and refuses one below 2', () => {
      const neon = { DATABASE_PROVIDER: 'neon', NEON_API_KEY: 'k', NEON_PROJECT_IDS: 'p' };
      expect(loadConfig({ ...neon, NEON_BRANCH_LIMIT: '25' }, cwd).neon!.branchLimit).to.equal(25);
      const err = configError(() => loadConfig({ ...neon, NEON_BRANCH_LIMIT: '1' }, cwd));
      expect(err.problems).to.deep.equal(['NEON_BRANCH_LIMIT must be an integer between 2 and 1000000 (got "1")']);
    });

    it('reads the Docker provider, its scope told apart by the control plane database, and asks production for the proxy token', () => {
      const docker = loadConfig({ COMPUTE_PROVIDER: 'docker', DOCKER_PORTS: '30000-30099' }, cwd).docker!;
      expect(docker).to.deep.include({
        host: 'unix:///var/run/docker.sock', token: null, image: 'clawdbot-runtime:latest', network: 'clawdbot-runtimes',
        publishHost: '127.0.0.1', accessHost: '127.0.0.1', ports: { from: 30000, to: 30099 }, hostAlias: 'host.docker.internal',
      });
      const other = loadConfig({ COMPUTE_PROVIDER: 'docker', DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/other' }, cwd).docker!;
      expect(other.scope).to.match(/^[0-9a-f]{16}$/).and.not.equal(docker.scope);
      const err = configError(() =>
        loadConfig({ NODE_ENV: 'production', ...PRODUCTION_SECRETS, COMPUTE_PROVIDER: 'docker', DOCKER_HOST: 'tcp://127.0.0.1:2375', DOCKER_PORTS: '9-1' }, cwd),
      );
      expect(err.problems).to.deep.equal([
        'DOCKER_PROXY_TOKEN is required in production when DOCKER_HOST is a network address (the socket proxy)',
        'DOCKER_PORTS must be a range of ports such as 20000-29999',
      ]);
    });

    it('refuses a repository that is not owner/name', () => {
      const err = configError(() =>
        loadConfig({ COMPUTE_PROVIDER: 'railway', RAILWAY_TOKEN: 't', RAILWAY_PROJECT_ID: 'p', RAILWAY_ENVIRONMENT_ID: 'e', CLAWDBOT_REPO: 'https://github.com/x' }, cwd),
      );
      expect(err.problems).to.deep.equal(['CLAWDBOT_REPO must be owner/name (got "https://github.com/x")']);
    });

    describe('what services run: CLAWDBOT_IMAGE or CLAWDBOT_REPO', () => {
      const RAILWAY = { COMPUTE_PROVIDER: 'railway', RAILWAY_TOKEN: 't', RAILWAY_PROJECT_ID: 'p', RAILWAY_ENVIRONMENT_ID: 'e' };

      it('builds the repository, or runs the prebuilt image (which wins when both are set)', () => {
        expect(loadConfig({ ...RAILWAY, CLAWDBOT_REPO: 'clawdbot/runtime' }, cwd).railway!.source).to.deep.equal({ repo: 'clawdbot/runtime' });
        for (const image of ['ghcr.io/clawdbot/runtime:1.4.0', 'clawdbot/runtime', 'registry.example.com:5000/team/runtime@sha256:' + 'a'.repeat(64)]) {
          expect(loadConfig({ ...RAILWAY, CLAWDBOT_IMAGE: image }, cwd).railway!.source, image).to.deep.equal({ image });
        }
        const both = loadConfig({ ...RAILWAY, CLAWDBOT_IMAGE: 'ghcr.io/clawdbot/runtime:1.4.0', CLAWDBOT_REPO: 'clawdbot/runtime' }, cwd);
        expect(both.railway!.source).to.deep.equal({ image: 'ghcr.io/clawdbot/runtime:1.4.0' });
      });

      it('requires one of them, and names a malformed image reference', () => {
        expect(configError(() => loadConfig(RAILWAY, cwd)).problems).to.deep.equal(['CLAWDBOT_IMAGE or CLAWDBOT_REPO is required with COMPUTE_PROVIDER=railway']);
        for (const image of ['https://ghcr.io/clawdbot/runtime', 'ghcr.io/Clawdbot/Runtime', 'ghcr.io/clawdbot/runtime:', 'runtime latest', 'ghcr.io/x/y@sha256:nothex']) {
          const [problem, ...more] = configError(() => loadConfig({ ...RAILWAY, CLAWDBOT_IMAGE: image }, cwd)).problems;
          expect(more, image).to.deep.equal([]);
          expect(problem, image).to.match(/^CLAWDBOT_IMAGE must be an image reference/).and.include(`(got "${image}")`);
        }
      });
    });
  });

  describe('rate limits and logs', () => {
    it('reads per-provider rates and the log level', () => {
      const config = loadConfig({ COMPUTE_RATE_LIMIT: '10/s', DATABASE_RATE_LIMIT: '700/m', LOG_LEVEL: 'warn' }, cwd);
      expect(config.rateLimits).to.deep.equal({ compute: { max: 10, durationMs: 1_000 }, database: { max: 700, durationMs: 60_000 } });
      expect(config.logLevel).to.equal('warn');
      expect(loadConfig({}, cwd).rateLimits).to.deep.equal({ compute: null, database: null });
    });

    it('names malformed rates and levels', () => {
      const err = configError(() => loadConfig({ COMPUTE_RATE_LIMIT: 'fast', DATABASE_RATE_LIMIT: '0/s', LOG_LEVEL: 'loud' }, cwd));
      expect(err.problems).to.have.length(3);
      expect(err.message).to.include('COMPUTE_RATE_LIMIT').and.include('DATABASE_RATE_LIMIT').and.include('LOG_LEVEL');
    });

    it('logs JSON lines in production and pretty lines in development (where pino-pretty is installed)', () => {
      expect(loadConfig({ NODE_ENV: 'production', ...PRODUCTION_SECRETS }, cwd).logFormat).to.equal('json');
      expect(loadConfig({}, cwd).logFormat).to.equal('pretty');
      expect(loadConfig({ LOG_FORMAT: 'json' }, cwd).logFormat).to.equal('json');
      expect(configError(() => loadConfig({ LOG_FORMAT: 'text' }, cwd)).problems).to.deep.equal(['LOG_FORMAT must be one of json, pretty (got "text")']);
      expect(configError(() => loadConfig({ NODE_ENV: 'production', ...PRODUCTION_SECRETS, LOG_FORMAT: 'pretty' }, cwd)).problems).to.deep.equal([
        'LOG_FORMAT=pretty is for development: production logs are JSON lines',
      ]);
    });
  });

  describe('parseDuration', () => {
    it('reads each unit', () => {
      expect(parseDuration('500ms')).to.equal(500);
      expect(parseDuration('30s')).to.equal(30_000);
      expect(parseDuration('5m')).to.equal(300_000);
      expect(parseDuration('2h')).to.equal(7_200_000);
      expect(parseDuration('7d')).to.equal(604_800_000);
    });

    it('reads a plain number as milliseconds', () => {
      expect(parseDuration('250')).to.equal(250);
      expect(parseDuration('0')).to.equal(0);
    });

    it('accepts decimals, surrounding space and a space before the unit', () => {
      expect(parseDuration('1.5s')).to.equal(1_500);
      expect(parseDuration(' 30s ')).to.equal(30_000);
      expect(parseDuration('5 m')).to.equal(300_000);
    });

    it('rejects what is not a duration', () => {
      for (const value of ['5 weeks', '-1s', '', '   ', 's', '5w', '1e3', 'soon', '5s5']) {
        expect(parseDuration(value), JSON.stringify(value)).to.equal(undefined);
      }
    });
  });

  describe('redactUrl', () => {
    it('replaces a password', () => {
      expect(redactUrl('postgres://app:hunter2@db.example.com:5432/app')).to.equal('postgres://app:***@db.example.com:5432/app');
      expect(redactUrl('redis://:s3cret@127.0.0.1:6379')).to.equal('redis://:***@127.0.0.1:6379');
    });

    it('leaves a URL without a password unchanged', () => {
      expect(redactUrl('postgres://postgres@127.0.0.1:5432/clawdbot')).to.equal('postgres://postgres@127.0.0.1:5432/clawdbot');
      expect(redactUrl('https://example.com/path?q=1')).to.equal('https://example.com/path?q=1');
    });

    it('returns short non-URLs as they are and truncates long ones', () => {
      expect(redactUrl('not a url')).to.equal('not a url');
      const long = 'x'.repeat(200);
      expect(redactUrl(long)).to.equal('x'.repeat(80) + '…');
    });
  });
});
