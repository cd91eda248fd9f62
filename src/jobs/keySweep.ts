/**
 * The sweep of sealed API keys that are done with: revealed on the welcome page after the welcome email went, or
 * never revealed within KEY_REVEAL_WINDOW of the email. Every worker process runs it on a timer; it is one idempotent
 * statement, so several at once are harmless, and a key is never deleted before its email has gone.
 */
import { INSTANCE_SECRETS, instanceOwner } from '../instances/secrets.ts';
import type { KeyHandovers } from '../db/keyHandovers.ts';

export function sweepSealedKeys(handovers: Pick<KeyHandovers, 'deleteFinishedKeys'>, windowMs: number): Promise<string[]> {
  return handovers.deleteFinishedKeys(windowMs, instanceOwner(''), INSTANCE_SECRETS.pendingApiKey);
}

/** How often the sweep runs: often enough for the window, at most once a second and at least once a minute. */
export function sweepIntervalMs(windowMs: number): number {
  return Math.min(60_000, Math.max(1_000, Math.floor(windowMs / 4)));
}
