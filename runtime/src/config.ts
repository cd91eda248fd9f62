/**
 * The runtime's whole configuration, read from env and validated in one place. Every problem is collected so an
 * operator fixes a broken deployment in one round; values of secrets (DATABASE_URL) never appear in the message.
 */
import { ALL_FEATURES, PLANS, isPlanName, type Feature, type PlanName } from '../../src/plans.ts';

export const DEFAULT_RUNTIME_VERSION = '0.1.0';
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
  };
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
