/**
 * The one reveal of a new API key on the welcome page. A page load only offers it (a mail scanner following the
 * welcome link must not use it up); the customer's POST claims it. The claim is one statement (see keyHandovers), so
 * of two concurrent requests only one shows the key; the sealed copy is deleted here when the email has gone too.
 */
import { apiKeyMatches } from '../../../core/apiKey.ts';
import type { InstanceWithCustomer } from '../../db/instances.ts';
import type { KeyHandovers } from '../../db/keyHandovers.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../instances/secrets.ts';
import type { SecretStore } from '../../secrets.ts';

export interface RevealDeps {
  secrets: Pick<SecretStore, 'get' | 'delete'>;
  keyHandovers: Pick<KeyHandovers, 'claimReveal' | 'state'>;
}

/** The key the instance holds now, while it is sealed for the page; null when there is none to show. */
async function pendingKey(deps: RevealDeps, instance: InstanceWithCustomer): Promise<string | null> {
  if (instance.status !== 'active' || !instance.api_key_hash) return null;
  const key = await deps.secrets.get(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey);
  // Only the key the instance holds now (never one a re-run of build-workspace replaced).
  return key && apiKeyMatches(key, instance.api_key_hash) ? key : null;
}

/** Whether the page may still offer to show the key (without claiming it). */
export async function keyRevealable(deps: RevealDeps, instance: InstanceWithCustomer): Promise<boolean> {
  if (!(await pendingKey(deps, instance))) return false;
  return !(await deps.keyHandovers.state(instance.id))?.revealed;
}

/** The key, the one time it may be shown; null every other time. */
export async function revealKeyOnce(deps: RevealDeps, instance: InstanceWithCustomer): Promise<string | null> {
  const key = await pendingKey(deps, instance);
  if (!key) return null;
  const claim = await deps.keyHandovers.claimReveal(instance.id);
  if (!claim) return null;
  if (claim.emailed) await deps.secrets.delete(instanceOwner(instance.id), INSTANCE_SECRETS.pendingApiKey);
  return key;
}
