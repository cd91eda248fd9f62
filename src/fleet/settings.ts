/**
 * Fleet settings: what every customer's runtime shares, as opposed to what is its own (its database, workspace id,
 * plan, secrets). A set of them is a generation (see ../db/fleetGenerations.ts). Pure: the digest, the difference
 * between two sets (by name only), the variables a runtime is given, and the set the configuration describes.
 */
import { createHash, createHmac } from 'node:crypto';
import type { Config } from '../config.ts';
import { PLANS } from '../../core/plans.ts';

/** The non-secret fleet settings (stored in clear, shown to operators). */
export interface FleetSettings {
  model: string | null;
  anthropicBaseUrl: string | null;
  /** PROMPT_TOKEN_BUDGET; null: the runtime's default. */
  promptTokenBudget: number | null;
  /** MAX_OUTPUT_TOKENS; null: the runtime's default. */
  maxOutputTokens: number | null;
  /** sha256 of the plan definitions (core/plans.ts): a changed plan is a changed generation. */
  plansDigest: string;
  /** The OAuth providers' endpoints (GOOGLE_OAUTH_URL, ...), by variable name. */
  connectionUrls: Record<string, string>;
}

/** What one generation holds: the runtime version, the settings, and the control plane's secrets (by variable name). */
export interface FleetValues {
  runtimeVersion: string;
  settings: FleetSettings;
  secrets: Record<string, string>;
}

/** The settings a rollout may change (secrets come from the control plane's configuration only). */
export const SETTING_OVERRIDES = ['model', 'promptTokenBudget', 'maxOutputTokens'] as const;
export type SettingOverrides = Partial<Pick<FleetSettings, (typeof SETTING_OVERRIDES)[number]>>;

/** The runtime version the configuration names: the image's tag (or digest) on Railway and Docker, else the built-in runtime. */
export const BUILTIN_VERSION = 'builtin';

export function configuredVersion(config: Pick<Config, 'railway' | 'docker'>): string {
  if (config.docker) return imageVersion(config.docker.image);
  const source = config.railway?.source;
  if (!source || !('image' in source)) return BUILTIN_VERSION;
  return imageVersion(source.image);
}

/** The tag of an image reference (its digest when pinned by one); `latest` when it names neither. */
export function imageVersion(image: string): string {
  const at = image.indexOf('@');
  if (at >= 0) return image.slice(at + 1);
  const last = image.slice(image.lastIndexOf('/') + 1);
  const colon = last.lastIndexOf(':');
  return colon >= 0 ? last.slice(colon + 1) : 'latest';
}

/** The image reference running `version`: the configured image with its tag (or digest) replaced. */
export function imageWithVersion(image: string, version: string): string {
  const at = image.indexOf('@');
  const base = at >= 0 ? image.slice(0, at) : image;
  const slash = base.lastIndexOf('/');
  const colon = base.lastIndexOf(':');
  const repository = colon > slash ? base.slice(0, colon) : base;
  return version.includes(':') ? `${repository}@${version}` : `${repository}:${version}`;
}

/** The connection variables that are secrets (the OAuth apps' ids and secrets); the rest are endpoints. */
const CONNECTION_SECRET = /_CLIENT_(ID|SECRET)$/;

/** The fleet values the control plane's configuration describes. */
export function valuesFromConfig(config: Pick<Config, 'railway' | 'docker' | 'runtime' | 'fleet'>): FleetValues {
  const { runtime } = config;
  const secrets: Record<string, string> = {};
  const connectionUrls: Record<string, string> = {};
  for (const [name, value] of Object.entries(runtime.connections)) {
    if (CONNECTION_SECRET.test(name)) secrets[name] = value;
    else connectionUrls[name] = value;
  }
  if (runtime.anthropicApiKey) secrets.ANTHROPIC_API_KEY = runtime.anthropicApiKey;
  return {
    runtimeVersion: configuredVersion(config),
    settings: {
      model: runtime.anthropicModel,
      anthropicBaseUrl: runtime.anthropicBaseUrl,
      promptTokenBudget: config.fleet.promptTokenBudget,
      maxOutputTokens: config.fleet.maxOutputTokens,
      plansDigest: plansDigest(),
      connectionUrls,
    },
    secrets,
  };
}

export function plansDigest(): string {
  return sha256(canonicalJson(PLANS));
}

/**
 * The generation's digest: sha256 over the canonical non-secret values and an HMAC of the secrets keyed by the
 * control plane's key. Equal values give equal digests; the digest tells nothing of a secret to whoever lacks the key.
 */
export function generationDigest(values: FleetValues, key: Buffer): string {
  const secretsMac = createHmac('sha256', key).update(canonicalJson(values.secrets)).digest('hex');
  return sha256(canonicalJson({ runtimeVersion: values.runtimeVersion, settings: values.settings, secretsMac }));
}

/**
 * What differs between two generations, by name: RUNTIME_VERSION, the settings' variable names, and each secret
 * added, removed or changed (its name only, never its value). Sorted.
 */
export function changedNames(from: FleetValues, to: FleetValues): string[] {
  const changed = new Set<string>();
  if (from.runtimeVersion !== to.runtimeVersion) changed.add('RUNTIME_VERSION');
  const a = settingVariables(from.settings);
  const b = settingVariables(to.settings);
  for (const name of new Set([...Object.keys(a), ...Object.keys(b)])) if (a[name] !== b[name]) changed.add(name);
  if (from.settings.plansDigest !== to.settings.plansDigest) changed.add('plan definitions');
  for (const name of new Set([...Object.keys(from.secrets), ...Object.keys(to.secrets)])) {
    if (from.secrets[name] !== to.secrets[name]) changed.add(name);
  }
  return [...changed].sort();
}

/** What rollouts changed on top of a configuration's values: the version and the settings that differ. */
export function overridesBetween(config: FleetValues, current: FleetValues): { version?: string; settings: SettingOverrides } {
  const settings: Record<string, unknown> = {};
  for (const name of SETTING_OVERRIDES) if (current.settings[name] !== config.settings[name]) settings[name] = current.settings[name];
  return { ...(current.runtimeVersion !== config.runtimeVersion && { version: current.runtimeVersion }), settings: settings as SettingOverrides };
}

/** The values of `base` with a rollout's changes. */
export function withOverrides(base: FleetValues, change: { version?: string; settings?: SettingOverrides }): FleetValues {
  return {
    runtimeVersion: change.version ?? base.runtimeVersion,
    settings: { ...base.settings, ...change.settings },
    secrets: base.secrets,
  };
}

/** The variables every runtime of a generation is given (its secrets among them). */
export function fleetVariables(generation: FleetValues & { id: number }): Record<string, string> {
  return {
    ...settingVariables(generation.settings),
    ...generation.secrets,
    RUNTIME_VERSION: generation.runtimeVersion,
    SETTINGS_GENERATION: String(generation.id),
  };
}

function settingVariables(settings: FleetSettings): Record<string, string> {
  const vars: Record<string, string> = { ...settings.connectionUrls };
  if (settings.model) vars.ANTHROPIC_MODEL = settings.model;
  if (settings.anthropicBaseUrl) vars.ANTHROPIC_BASE_URL = settings.anthropicBaseUrl;
  if (settings.promptTokenBudget !== null) vars.PROMPT_TOKEN_BUDGET = String(settings.promptTokenBudget);
  if (settings.maxOutputTokens !== null) vars.MAX_OUTPUT_TOKENS = String(settings.maxOutputTokens);
  return vars;
}

/** JSON with object keys sorted at every level, so equal values always serialise alike. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
