/**
 * The runtime's whole configuration, read from env and validated in one place. Every problem is collected so an
 * operator fixes a broken deployment in one round; values of secrets (DATABASE_URL) never appear in the message.
 */
import { ALL_FEATURES, PLANS, isPlanName, requestRate, type Feature, type PlanName } from '../../core/plans.ts';
import { parseDuration, parseRate, type RateLimit } from '../../core/durations.ts';
import { defaultLogFormat, LOG_FORMATS, LOG_LEVELS, logFormatProblem, type LogFormat, type LogLevel } from '../../core/logger.ts';

export const DEFAULT_RUNTIME_VERSION = '0.1.0';
export const DEFAULT_MODEL = 'claude-sonnet-4-5';
const DEFAULT_PORT = 8080;
const DEFAULT_HOST = '0.0.0.0';

export interface RuntimeConfig {
  port: number;
  host: string;
  databaseUrl: string;
  /** Directory holding the workspace files on disk; undefined means the database is the only copy. */
  workspaceDir: string | undefined;
  workspaceId: string;
  plan: PlanName;
  messageLimit: number;
  features: readonly Feature[];
  version: string;
  /** The control plane's fleet settings generation this runtime was configured with (SETTINGS_GENERATION), reported by /health. */
  settingsGeneration: number | undefined;
  model: {
    /** Unset: chat answers 503 until the platform configures a key. */
    apiKey: string | undefined;
    baseUrl: string | undefined;
    name: string;
    maxOutputTokens: number;
    timeoutMs: number;
    maxRetries: number;
  };
  /** Tool rounds a chat turn may take (the plan's, or MAX_TOOL_ROUNDS); see Plan.toolRounds. */
  toolRounds: number;
  /** max_uses of the web search and web fetch server tools in one turn (the plan's). */
  webSearchMaxUses: number;
  /** Tokens the system prompt (workspace, memories) may take; history comes on top, up to historyMessages. */
  promptTokenBudget: number;
  historyMessages: number;
  /** Requests per API key; unset, the plan's rate. */
  rateLimit: RateLimit;
  /** Failed authentications (401) a minute from one address before its requests with credentials answer 429. */
  authFailureLimit: number;
  /** 0 turns the heartbeat off. */
  heartbeatIntervalMs: number;
  /** Where usage notices go, signed with the secret; both unset means none are sent. */
  controlPlane: { url: string; secret: string } | undefined;
  log: { level: LogLevel; format: LogFormat };
  connections: ConnectionsConfig;
}

/** A platform's OAuth app at a provider: the customer authorizes it to act on their account. */
export interface OAuthApp {
  clientId: string;
  clientSecret: string;
}

/** OAuth connections (Gmail, Calendar, GitHub): the providers' endpoints and the platform's apps there. */
export interface ConnectionsConfig {
  /** Seals the stored tokens (CONNECTIONS_KEY, 32 bytes); unset, no connection can be made. */
  key: Buffer | undefined;
  /** Where the customer's browser reaches this runtime (the provider sends it back there); unset, the host the request came to. */
  publicUrl: string | undefined;
  /** Unset app: Gmail and Calendar answer that connections are not configured on this platform. */
  google: { app: OAuthApp | undefined; authUrl: string; tokenUrl: string; revokeUrl: string; gmailApiUrl: string; calendarApiUrl: string };
  github: { app: OAuthApp | undefined; oauthUrl: string; apiUrl: string };
}

export class RuntimeConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid runtime configuration: ${problems.join('; ')}`);
    this.name = 'RuntimeConfigError';
  }
}

/** Blank values count as unset: a deploy tool often writes `NAME=` for a variable it has no value for. */
function read(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

export function loadRuntimeConfig(env: NodeJS.ProcessEnv): RuntimeConfig {
  const problems: string[] = [];
  const required = (name: string): string => {
    const value = read(env, name);
    if (value === undefined) problems.push(`${name} is required`);
    return value ?? '';
  };

  const portText = read(env, 'PORT');
  const port = portText === undefined ? DEFAULT_PORT : Number(portText);
  if (portText !== undefined && !(/^\d+$/.test(portText) && port <= 65535)) {
    problems.push(`PORT must be an integer from 0 to 65535 (got "${portText}")`);
  }

  const databaseUrl = required('DATABASE_URL');
  if (databaseUrl && !isPostgresUrl(databaseUrl)) {
    problems.push('DATABASE_URL must be a postgres:// or postgresql:// connection string');
  }

  const workspaceId = required('WORKSPACE_ID');

  const planText = required('PLAN');
  if (planText && !isPlanName(planText)) {
    problems.push(`PLAN must be one of ${Object.keys(PLANS).join(', ')} (got "${planText}")`);
  }
  const plan: PlanName = isPlanName(planText) ? planText : 'starter';

  const limitText = required('MESSAGE_LIMIT');
  const messageLimit = Number(limitText);
  if (limitText && !(/^[1-9]\d*$/.test(limitText) && Number.isSafeInteger(messageLimit))) {
    problems.push(`MESSAGE_LIMIT must be a positive integer (got "${limitText}")`);
  }

  const featuresText = read(env, 'FEATURES');
  const features = featuresText === undefined ? PLANS[plan].features : parseFeatures(featuresText, problems);

  const positive = (name: string, fallback: number, min = 1): number => {
    const text = read(env, name);
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < min) problems.push(`${name} must be an integer of at least ${min} (got "${text}")`);
    return n;
  };
  const duration = (name: string, fallback: number): number => {
    const text = read(env, name);
    if (text === undefined) return fallback;
    const ms = parseDuration(text);
    if (ms === undefined) problems.push(`${name} must be a duration such as 500ms, 30s or 5m (got "${text}")`);
    return ms ?? fallback;
  };
  const url = (name: string): string | undefined => {
    const text = read(env, name);
    if (text !== undefined && !/^https?:\/\/[^\s]+$/.test(text)) problems.push(`${name} must be an http(s) URL`);
    return text?.replace(/\/+$/, '');
  };

  const rateText = read(env, 'RATE_LIMIT') ?? requestRate(PLANS[plan]);
  const rateLimit = parseRate(rateText);
  if (!rateLimit) problems.push(`RATE_LIMIT must be a rate such as 60/m or 5/s (got "${rateText}")`);

  const controlPlaneUrl = url('CONTROL_PLANE_URL');
  const controlPlaneSecret = read(env, 'CONTROL_PLANE_SECRET');
  if (Boolean(controlPlaneUrl) !== Boolean(controlPlaneSecret)) {
    problems.push('CONTROL_PLANE_URL and CONTROL_PLANE_SECRET go together: set both or neither');
  }

  const model = {
    apiKey: read(env, 'ANTHROPIC_API_KEY'),
    baseUrl: url('ANTHROPIC_BASE_URL'),
    name: read(env, 'ANTHROPIC_MODEL') ?? DEFAULT_MODEL,
    maxOutputTokens: positive('MAX_OUTPUT_TOKENS', 1024),
    timeoutMs: duration('MODEL_TIMEOUT', 60_000),
    maxRetries: positive('MODEL_MAX_RETRIES', 3, 0),
  };
  const promptTokenBudget = positive('PROMPT_TOKEN_BUDGET', 8_000, 500);
  const settingsGenerationText = read(env, 'SETTINGS_GENERATION');
  const settingsGeneration = settingsGenerationText === undefined ? undefined : Number(settingsGenerationText);
  if (settingsGeneration !== undefined && !(Number.isInteger(settingsGeneration) && settingsGeneration > 0)) {
    problems.push(`SETTINGS_GENERATION must be a positive integer (got "${settingsGenerationText}")`);
  }
  const toolRounds = positive('MAX_TOOL_ROUNDS', PLANS[plan].toolRounds);
  const historyMessages = positive('HISTORY_MESSAGES', 20, 0);
  const authFailureLimit = positive('AUTH_FAILURE_LIMIT', 20);
  const heartbeatIntervalMs = duration('HEARTBEAT_INTERVAL', 30 * 60_000);
  const oneOf = <T extends string>(name: string, fallback: T, allowed: readonly T[]): T => {
    const text = read(env, name) ?? fallback;
    if ((allowed as readonly string[]).includes(text)) return text as T;
    problems.push(`${name} must be one of ${allowed.join(', ')} (got "${text}")`);
    return fallback;
  };
  const production = env.NODE_ENV === 'production';
  const log = { level: oneOf('LOG_LEVEL', 'info', LOG_LEVELS), format: oneOf('LOG_FORMAT', defaultLogFormat(production), LOG_FORMATS) };
  const logFormatIssue = logFormatProblem(log.format, production);
  if (logFormatIssue) problems.push(logFormatIssue);

  const app = (prefix: string): OAuthApp | undefined => {
    const clientId = read(env, `${prefix}_CLIENT_ID`);
    const clientSecret = read(env, `${prefix}_CLIENT_SECRET`);
    if (Boolean(clientId) !== Boolean(clientSecret)) problems.push(`${prefix}_CLIENT_ID and ${prefix}_CLIENT_SECRET go together: set both or neither`);
    return clientId && clientSecret ? { clientId, clientSecret } : undefined;
  };
  const connections: ConnectionsConfig = {
    key: connectionsKey(read(env, 'CONNECTIONS_KEY'), problems),
    publicUrl: url('PUBLIC_URL'),
    google: {
      app: app('GOOGLE'),
      authUrl: url('GOOGLE_OAUTH_URL') ?? 'https://accounts.google.com/o/oauth2/v2/auth',
      tokenUrl: url('GOOGLE_TOKEN_URL') ?? 'https://oauth2.googleapis.com/token',
      revokeUrl: url('GOOGLE_REVOKE_URL') ?? 'https://oauth2.googleapis.com/revoke',
      gmailApiUrl: url('GMAIL_API_URL') ?? 'https://gmail.googleapis.com',
      calendarApiUrl: url('CALENDAR_API_URL') ?? 'https://www.googleapis.com',
    },
    github: {
      app: app('GITHUB'),
      oauthUrl: url('GITHUB_OAUTH_URL') ?? 'https://github.com/login/oauth',
      apiUrl: url('GITHUB_API_URL') ?? 'https://api.github.com',
    },
  };

  if (problems.length > 0) throw new RuntimeConfigError(problems);
  return {
    port,
    host: read(env, 'HOST') ?? DEFAULT_HOST,
    databaseUrl,
    workspaceDir: read(env, 'WORKSPACE_DIR'),
    workspaceId,
    plan,
    messageLimit,
    features,
    version: read(env, 'RUNTIME_VERSION') ?? DEFAULT_RUNTIME_VERSION,
    settingsGeneration,
    model,
    toolRounds,
    webSearchMaxUses: PLANS[plan].webSearchMaxUses,
    promptTokenBudget,
    historyMessages,
    rateLimit: rateLimit!,
    authFailureLimit,
    heartbeatIntervalMs,
    controlPlane: controlPlaneUrl && controlPlaneSecret ? { url: controlPlaneUrl, secret: controlPlaneSecret } : undefined,
    log,
    connections,
  };
}

/** CONNECTIONS_KEY: 32 bytes as base64 (what the control plane generates) or hex. */
function connectionsKey(text: string | undefined, problems: string[]): Buffer | undefined {
  if (text === undefined) return undefined;
  const key = /^[0-9a-f]{64}$/i.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64');
  if (key.length === 32) return key;
  problems.push('CONNECTIONS_KEY must be 32 bytes, as base64 or hex');
  return undefined;
}

function isPostgresUrl(value: string): boolean {
  try {
    return ['postgres:', 'postgresql:'].includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

function parseFeatures(text: string, problems: string[]): Feature[] {
  const names = [...new Set(text.split(',').map((name) => name.trim()).filter(Boolean))];
  const unknown = names.filter((name) => !(ALL_FEATURES as readonly string[]).includes(name));
  if (unknown.length > 0) {
    problems.push(`FEATURES has unknown feature(s) ${unknown.join(', ')} (known: ${ALL_FEATURES.join(', ')})`);
  }
  return names.filter((name): name is Feature => (ALL_FEATURES as readonly string[]).includes(name));
}
