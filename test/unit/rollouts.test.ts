/** Rollouts' pure logic: batch planning, the coordinator's next step, settings digests and differences, the request body. */
import { expect } from 'chai';
import { nextStep, planBatches, type RolloutInstanceState } from '../../src/fleet/batches.ts';
import { parseRolloutRequest } from '../../src/fleet/rolloutRequest.ts';
import {
  BUILTIN_VERSION,
  canonicalJson,
  changedNames,
  configuredVersion,
  fleetVariables,
  generationDigest,
  imageVersion,
  imageWithVersion,
  valuesFromConfig,
  withOverrides,
  type FleetValues,
} from '../../src/fleet/settings.ts';
import { loadConfig } from '../../src/config.ts';

const KEY = Buffer.alloc(32, 7);
const ids = (n: number) => Array.from({ length: n }, (_, i) => `i${i + 1}`);

function values(change: Partial<FleetValues['settings']> = {}, secrets: Record<string, string> = { ANTHROPIC_API_KEY: 'sk-ant-one' }): FleetValues {
  return {
    runtimeVersion: '1.0.0',
    settings: { model: 'claude-a', anthropicBaseUrl: null, promptTokenBudget: null, maxOutputTokens: null, plansDigest: 'p1', connectionUrls: {}, ...change },
    secrets,
  };
}

describe('rollout batch planning', () => {
  it('puts the canary in batch 0, then batches of batchSize, in the given order', () => {
    const plan = planBatches(ids(6), 1, 2);
    expect(plan.map((p) => [p.instanceId, p.batch, p.position])).to.deep.equal([
      ['i1', 0, 0], ['i2', 1, 1], ['i3', 1, 2], ['i4', 2, 3], ['i5', 2, 4], ['i6', 3, 5],
    ]);
  });

  it('handles no canary, a canary as big as the fleet, one batch for all, and no instances', () => {
    expect(planBatches(ids(3), 0, 2).map((p) => p.batch)).to.deep.equal([1, 1, 2]);
    expect(planBatches(ids(2), 5, 2).map((p) => p.batch)).to.deep.equal([0, 0]);
    expect(planBatches(ids(4), 1, 10).map((p) => p.batch)).to.deep.equal([0, 1, 1, 1]);
    expect(planBatches([], 1, 10)).to.deep.equal([]);
  });

  it('refuses a batch size below 1 or a negative canary', () => {
    expect(() => planBatches(ids(2), 1, 0)).to.throw(RangeError);
    expect(() => planBatches(ids(2), -1, 1)).to.throw(RangeError);
  });
});

describe("a rollout coordinator's next step", () => {
  const rows = (states: [number, RolloutInstanceState][]) => states.map(([batch, state], i) => ({ instanceId: `i${i + 1}`, batch, state }));

  it('launches the canary first, waits while it updates, then launches the next batch', () => {
    expect(nextStep(rows([[0, 'pending'], [1, 'pending'], [1, 'pending']]), 0)).to.deep.equal({ kind: 'launch', batch: 0, instanceIds: ['i1'] });
    expect(nextStep(rows([[0, 'updating'], [1, 'pending'], [1, 'pending']]), 0)).to.deep.equal({ kind: 'wait' });
    expect(nextStep(rows([[0, 'healthy'], [1, 'pending'], [1, 'pending']]), 0)).to.deep.equal({ kind: 'launch', batch: 1, instanceIds: ['i2', 'i3'] });
  });

  it('completes when nothing is pending or updating; skipped instances count as done', () => {
    expect(nextStep(rows([[0, 'healthy'], [1, 'skipped'], [1, 'healthy']]), 0)).to.deep.equal({ kind: 'complete' });
  });

  it('halts once failures pass maxFailures, and goes on while they do not', () => {
    expect(nextStep(rows([[0, 'failed'], [1, 'pending']]), 0)).to.deep.equal({ kind: 'halt', failures: 1 });
    expect(nextStep(rows([[0, 'failed'], [1, 'pending']]), 1)).to.deep.equal({ kind: 'launch', batch: 1, instanceIds: ['i2'] });
    expect(nextStep(rows([[0, 'failed'], [1, 'failed'], [1, 'updating']]), 1)).to.deep.equal({ kind: 'halt', failures: 2 });
  });
});

describe('fleet settings', () => {
  it('gives equal values one digest, whatever the order of their keys', () => {
    const a = values({ connectionUrls: { GMAIL_API_URL: 'http://g', GITHUB_API_URL: 'http://h' } });
    const b = values({ connectionUrls: { GITHUB_API_URL: 'http://h', GMAIL_API_URL: 'http://g' } });
    expect(generationDigest(a, KEY)).to.equal(generationDigest(b, KEY));
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] })).to.equal('{"a":[{"c":3,"d":2}],"b":1}');
  });

  it('changes the digest with any setting or secret, and never reveals a secret in it', () => {
    const base = generationDigest(values(), KEY);
    expect(generationDigest(values({ model: 'claude-b' }), KEY)).to.not.equal(base);
    expect(generationDigest(values({}, { ANTHROPIC_API_KEY: 'sk-ant-two' }), KEY)).to.not.equal(base);
    expect(generationDigest({ ...values(), runtimeVersion: '1.0.1' }, KEY)).to.not.equal(base);
    // Keyed: without the control plane's key, a guessed secret cannot be checked against the digest.
    expect(generationDigest(values(), Buffer.alloc(32, 8))).to.not.equal(base);
    expect(base).to.match(/^[0-9a-f]{64}$/).and.not.include('sk-ant');
  });

  it('names what changed between generations, secrets by name only', () => {
    expect(changedNames(values(), values({}, {}))).to.deep.equal(['ANTHROPIC_API_KEY']);
    expect(changedNames(values(), values({ model: 'claude-b', promptTokenBudget: 4000 }))).to.deep.equal(['ANTHROPIC_MODEL', 'PROMPT_TOKEN_BUDGET']);
    expect(changedNames(values(), { ...values({ plansDigest: 'p2' }), runtimeVersion: '2.0.0' })).to.deep.equal(['RUNTIME_VERSION', 'plan definitions']);
    expect(changedNames(values(), values())).to.deep.equal([]);
    const names = changedNames(values(), values({}, { ANTHROPIC_API_KEY: 'sk-ant-two' }));
    expect(names.join(' ')).to.equal('ANTHROPIC_API_KEY');
  });

  it('applies a rollout: the version and the settings asked, the secrets as they are', () => {
    const target = withOverrides(values(), { version: '2.0.0', settings: { model: 'claude-b' } });
    expect(target.runtimeVersion).to.equal('2.0.0');
    expect(target.settings.model).to.equal('claude-b');
    expect(target.secrets).to.deep.equal(values().secrets);
  });

  it('hands a runtime its generation, version and settings as variables', () => {
    expect(fleetVariables({ ...values({ maxOutputTokens: 2048, connectionUrls: { GMAIL_API_URL: 'http://g' } }), id: 4 })).to.deep.equal({
      ANTHROPIC_MODEL: 'claude-a',
      MAX_OUTPUT_TOKENS: '2048',
      GMAIL_API_URL: 'http://g',
      ANTHROPIC_API_KEY: 'sk-ant-one',
      RUNTIME_VERSION: '1.0.0',
      SETTINGS_GENERATION: '4',
    });
  });

  it("reads the configuration's generation: its secrets apart from its settings", () => {
    const config = loadConfig({
      VAR_DIR: '/nonexistent/var',
      SECRETS_KEY: KEY.toString('base64'),
      STRIPE_WEBHOOK_SECRET: 'whsec_unit',
      ADMIN_PASSWORD: 'unit',
      ADMIN_TOKEN: 'unit',
      ANTHROPIC_API_KEY: 'sk-ant-config',
      ANTHROPIC_MODEL: 'claude-c',
      PROMPT_TOKEN_BUDGET: '6000',
      GITHUB_CLIENT_ID: 'gh-id',
      GITHUB_CLIENT_SECRET: 'gh-secret',
      GITHUB_API_URL: 'http://github.test',
    }, '/nonexistent');
    const from = valuesFromConfig(config);
    expect(from.runtimeVersion).to.equal(BUILTIN_VERSION);
    expect(from.secrets).to.deep.equal({ ANTHROPIC_API_KEY: 'sk-ant-config', GITHUB_CLIENT_ID: 'gh-id', GITHUB_CLIENT_SECRET: 'gh-secret' });
    expect(from.settings).to.include({ model: 'claude-c', promptTokenBudget: 6000, maxOutputTokens: null });
    expect(from.settings.connectionUrls).to.deep.equal({ GITHUB_API_URL: 'http://github.test' });
    expect(JSON.stringify(from.settings)).to.not.include('sk-ant').and.not.include('gh-secret');
  });

  it("takes a Railway image's version from its tag or digest, and sets it", () => {
    expect(imageVersion('ghcr.io/clawdbot/runtime:1.4.0')).to.equal('1.4.0');
    expect(imageVersion('registry:5000/runtime')).to.equal('latest');
    expect(imageVersion(`ghcr.io/c/r@sha256:${'a'.repeat(64)}`)).to.equal(`sha256:${'a'.repeat(64)}`);
    expect(imageWithVersion('ghcr.io/clawdbot/runtime:1.4.0', '1.5.0')).to.equal('ghcr.io/clawdbot/runtime:1.5.0');
    expect(imageWithVersion('registry:5000/runtime', '2')).to.equal('registry:5000/runtime:2');
    expect(imageWithVersion('ghcr.io/c/r:1', `sha256:${'b'.repeat(64)}`)).to.equal(`ghcr.io/c/r@sha256:${'b'.repeat(64)}`);
    expect(configuredVersion({ railway: null, docker: null })).to.equal(BUILTIN_VERSION);
  });
});

describe('a rollout request', () => {
  it('takes {} as every active instance to the current generation, with the defaults', () => {
    expect(parseRolloutRequest({})).to.deep.equal({ request: { settings: {}, selector: {}, batchSize: 10, canary: 1, maxFailures: 0 } });
  });

  it('takes a version, settings, a selector and the pace', () => {
    const id = '0b8f6c1e-4c4b-4b5e-9f59-6a1f0b7a2c3d';
    expect(parseRolloutRequest({ version: '1.5.0', settings: { model: 'claude-b', maxOutputTokens: 2048 }, selector: { plan: 'pro', instanceIds: [id, id] }, batchSize: 2, canary: 0, maxFailures: 1 })).to.deep.equal({
      request: { version: '1.5.0', settings: { model: 'claude-b', maxOutputTokens: 2048 }, selector: { plan: 'pro', instanceIds: [id] }, batchSize: 2, canary: 0, maxFailures: 1 },
    });
  });

  it('refuses secrets wherever they are put, saying they come from the configuration (never echoing them)', () => {
    for (const body of [{ apiKey: 'sk-ant-x' }, { settings: { anthropicApiKey: 'sk-ant-x' } }, { settings: { GOOGLE_CLIENT_SECRET: 'x' } }, { token: 'x' }]) {
      const parsed = parseRolloutRequest(body);
      expect(parsed).to.have.property('problems');
      const text = (parsed as { problems: string[] }).problems.join('; ');
      expect(text).to.include('configuration').and.not.include('sk-ant-x');
    }
  });

  it('refuses unknown fields and bad values, naming each', () => {
    const parsed = parseRolloutRequest({ colour: 'blue', batchSize: 0, canary: -1, version: '../x', settings: { promptTokenBudget: 10 }, selector: { plan: 'gold', instanceIds: ['nope'] } });
    const problems = (parsed as { problems: string[] }).problems;
    expect(problems).to.have.length(7);
    expect(problems.join('; ')).to.include('unknown field colour').and.include('batchSize').and.include('canary').and.include('version')
      .and.include('promptTokenBudget').and.include('selector.plan').and.include('selector.instanceIds');
    expect(parseRolloutRequest([])).to.have.property('problems');
    expect(parseRolloutRequest(null)).to.have.property('problems');
  });
});

describe('rollout configuration', () => {
  const base = { VAR_DIR: '/nonexistent/var', SECRETS_KEY: KEY.toString('base64'), STRIPE_WEBHOOK_SECRET: 'whsec_unit', ADMIN_PASSWORD: 'unit', ADMIN_TOKEN: 'unit' };

  it('defaults: no fleet overrides, no releases, a 2 minute health gate', () => {
    expect(loadConfig(base, '/nonexistent').fleet).to.deep.equal({ promptTokenBudget: null, maxOutputTokens: null, releasesDir: null, rolloutHealthTimeoutMs: 120_000 });
  });

  it('names every bad fleet variable in one error', () => {
    let message = '';
    try {
      loadConfig({ ...base, PROMPT_TOKEN_BUDGET: '10', MAX_OUTPUT_TOKENS: 'lots', RUNTIME_RELEASES_DIR: '/nonexistent/releases', ROLLOUT_HEALTH_TIMEOUT: 'soon' }, '/nonexistent');
    } catch (err) {
      message = (err as Error).message;
    }
    for (const name of ['PROMPT_TOKEN_BUDGET', 'MAX_OUTPUT_TOKENS', 'RUNTIME_RELEASES_DIR', 'ROLLOUT_HEALTH_TIMEOUT']) expect(message).to.include(name);
  });
});
