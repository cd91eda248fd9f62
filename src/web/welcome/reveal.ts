/**
 * The one reveal of a new API key on the welcome page. The claim is one statement (see keyHandovers), so of two
 * concurrent page loads only one shows the key; the sealed copy is deleted here when the email has gone too.
 */
import { apiKeyMatches } from '../../../core/apiKey.ts';
import type { InstanceWithCustomer } from '../../db/instances.ts';
import type { KeyHandovers } from '../../db/keyHandovers.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../instances/secrets.ts';
import type { SecretStore } from '../../secrets.ts';

export interface RevealDeps {
  secrets: Pick<SecretStore, 'get' | 'delete'>;
  keyHandovers: Pick<KeyHandovers, 'claimReveal'>;
}

/** The key, the one time it may be shown; null every other time. */
export async function revealKeyOnce(deps: RevealDeps, instance: InstanceWithCustomer): Promise<string | null> {
  if (instance.status !== 'active' || !instance.api_key_hash) return null;
  const owner = instanceOwner(instance.id);
  const key = await deps.secrets.get(owner, INSTANCE_SECRETS.pendingApiKey);
  // Only the key the instance holds now (never one a re-run of build-workspace replaced).
  if (!key || !apiKeyMatches(key, instance.api_key_hash)) return null;
  const claim = await deps.keyHandovers.claimReveal(instance.id);
  if (!claim) return null;
  if (claim.emailed) await deps.secrets.delete(owner, INSTANCE_SECRETS.pendingApiKey);
  return key;
}
