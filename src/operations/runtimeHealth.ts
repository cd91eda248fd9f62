/** A runtime's /health, asked once: what provisioning's health check, a rollout's gate and a restore all poll. */
import { errorMessage } from '../errors.ts';
import { providerFetch } from '../providers/http.ts';

const runtimeFetch = providerFetch('runtime');
const PROBE_TIMEOUT_MS = 5_000;

export interface HealthAnswer {
  /** It answered 200. */
  ok: boolean;
  /** Its JSON body (`{ status, version, settingsGeneration }`), or {} when there was none. */
  body: Record<string, unknown>;
  /** What it answered, for a log line or a failure: `HTTP <status>`, or why there was no answer. */
  last: string;
}

export async function probeHealth(accessUrl: string): Promise<HealthAnswer> {
  try {
    const response = await runtimeFetch(`${accessUrl}/health`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
    return { ok: response.status === 200, body, last: `HTTP ${response.status}` };
  } catch (err) {
    return { ok: false, body: {}, last: errorMessage(err) };
  }
}
