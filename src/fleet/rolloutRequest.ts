/**
 * A rollout request's body, checked: what may be asked (a version, non-secret settings, which instances, the pace)
 * and nothing else. Secrets come from the control plane's configuration only; a body that tries to carry one is
 * refused. Pure.
 */
import { isPlanName } from '../../core/plans.ts';
import { UUID } from '../db/instances.ts';
import type { RolloutSelector } from '../db/rollouts.ts';
import { SETTING_OVERRIDES, type SettingOverrides } from './settings.ts';

export interface RolloutRequest {
  version?: string;
  settings: SettingOverrides;
  selector: RolloutSelector;
  batchSize: number;
  canary: number;
  maxFailures: number;
}

export const ROLLOUT_DEFAULTS = { batchSize: 10, canary: 1, maxFailures: 0 } as const;
const TOP_LEVEL = ['version', 'settings', 'selector', 'batchSize', 'canary', 'maxFailures'];
const SELECTOR = ['plan', 'instanceIds'];
/** A key naming a secret (apiKey, anthropicApiKey, ANTHROPIC_API_KEY, clientSecret, token, password ...). */
const SECRET_LOOKING = /key|secret|token|password|credential/i;
/** A tag, or a digest (sha256:<hex>). */
const VERSION = /^(?:[\w][\w.-]{0,127}|sha256:[0-9a-f]{64})$/;
const SECRETS_FROM_CONFIG =
  'secrets (the Anthropic key, OAuth client secrets) are never taken from a request: set them in the control plane\'s configuration, restart it, and roll out with {}';

/** The request, or the problems with it (each named; a secret-looking key says where secrets come from). */
export function parseRolloutRequest(body: unknown): { request: RolloutRequest } | { problems: string[] } {
  const problems: string[] = [];
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return { problems: ['the body must be a JSON object (an empty one, {}, is fine)'] };
  const input = body as Record<string, unknown>;
  const secretKeys: string[] = [];
  const unknownKeys = (object: Record<string, unknown>, allowed: readonly string[], where: string) => {
    for (const key of Object.keys(object)) {
      if (allowed.includes(key)) continue;
      if (SECRET_LOOKING.test(key)) secretKeys.push(`${where}${key}`);
      else problems.push(`unknown field ${where}${key} (allowed: ${allowed.join(', ')})`);
    }
  };
  unknownKeys(input, TOP_LEVEL, '');

  let version: string | undefined;
  if (input.version !== undefined) {
    if (typeof input.version !== 'string' || !VERSION.test(input.version)) problems.push('version must be an image tag (letters, digits, . _ -) or sha256:<digest>');
    else version = input.version;
  }

  const settings: SettingOverrides = {};
  if (input.settings !== undefined) {
    if (!isObject(input.settings)) problems.push('settings must be an object');
    else {
      unknownKeys(input.settings, SETTING_OVERRIDES, 'settings.');
      const { model, promptTokenBudget, maxOutputTokens } = input.settings;
      if (model !== undefined) {
        if (typeof model !== 'string' || !/^[\w.:-]{1,100}$/.test(model)) problems.push('settings.model must be a model name');
        else settings.model = model;
      }
      if (promptTokenBudget !== undefined) {
        if (!isIntIn(promptTokenBudget, 500, 1_000_000)) problems.push('settings.promptTokenBudget must be an integer from 500 to 1000000');
        else settings.promptTokenBudget = promptTokenBudget;
      }
      if (maxOutputTokens !== undefined) {
        if (!isIntIn(maxOutputTokens, 1, 1_000_000)) problems.push('settings.maxOutputTokens must be an integer from 1 to 1000000');
        else settings.maxOutputTokens = maxOutputTokens;
      }
    }
  }

  const selector: RolloutSelector = {};
  if (input.selector !== undefined) {
    if (!isObject(input.selector)) problems.push('selector must be an object');
    else {
      unknownKeys(input.selector, SELECTOR, 'selector.');
      const { plan, instanceIds } = input.selector;
      if (plan !== undefined) {
        if (!isPlanName(plan)) problems.push('selector.plan must be a plan name');
        else selector.plan = plan;
      }
      if (instanceIds !== undefined) {
        if (!Array.isArray(instanceIds) || instanceIds.length === 0 || instanceIds.length > 10_000 || !instanceIds.every((id) => typeof id === 'string' && UUID.test(id))) {
          problems.push('selector.instanceIds must be a non-empty list of instance ids');
        } else selector.instanceIds = [...new Set((instanceIds as string[]).map((id) => id.toLowerCase()))]; // as Postgres writes uuids
      }
    }
  }

  const count = (name: 'batchSize' | 'canary' | 'maxFailures', min: number): number => {
    const value = input[name];
    if (value === undefined) return ROLLOUT_DEFAULTS[name];
    if (!isIntIn(value, min, 10_000)) problems.push(`${name} must be an integer from ${min} to 10000`);
    return typeof value === 'number' ? value : ROLLOUT_DEFAULTS[name];
  };
  const batchSize = count('batchSize', 1);
  const canary = count('canary', 0);
  const maxFailures = count('maxFailures', 0);

  if (secretKeys.length) problems.unshift(`${secretKeys.join(', ')}: ${SECRETS_FROM_CONFIG}`);
  if (problems.length) return { problems };
  return { request: { ...(version !== undefined && { version }), settings, selector, batchSize, canary, maxFailures } };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function isIntIn(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}
