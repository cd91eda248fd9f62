/** health-check: polls the instance's /health until it answers 200, within a deadline, holding no slot between polls. */
import { PermanentError } from '../errors.ts';
import { probeHealth } from '../operations/runtimeHealth.ts';
import type { ProvisionData } from '../queues/catalogue.ts';
import type { StepHandler } from './step.ts';

export interface HealthCheckData extends ProvisionData {
  deadline?: number;
  polls?: number;
  startedAt?: number;
}

export const healthCheck: StepHandler<HealthCheckData> = async (ctx, { job, instance, log, progress, done, waitFor }) => {
  const { timeoutMs, initialDelayMs, maxDelayMs } = ctx.config.healthCheck;
  const data = job.data;
  const startedAt = data.startedAt ?? Date.now();
  const deadline = data.deadline ?? startedAt + timeoutMs;
  const polls = data.polls ?? 0;
  if (!instance.access_url) throw new PermanentError('instance has no access URL: create-service has not completed');

  const { ok, last } = await probeHealth(instance.access_url);
  if (ok) {
    await log(`healthy after ${polls + 1} checks`);
    return done({ accessUrl: instance.access_url, checks: polls + 1, healthyAfterMs: Date.now() - startedAt });
  }
  if (Date.now() >= deadline) {
    throw new PermanentError(`no healthy answer from ${instance.access_url}/health within ${Math.round(timeoutMs / 1000)} s (last: ${last})`);
  }
  if (polls % 10 === 0) await log(`not healthy yet (${last})`);
  await progress(Math.min(95, Math.round(((Date.now() - startedAt) / timeoutMs) * 100)));
  const delay = Math.min(initialDelayMs * 2 ** polls, maxDelayMs, Math.max(0, deadline - Date.now()));
  return waitFor(delay, { ...data, startedAt, deadline, polls: polls + 1 });
};
