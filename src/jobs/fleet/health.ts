/**
 * What one probe means for an instance's health: its new record, and what the monitor must do about it. Pure, so
 * every rule is unit-tested: N consecutive failed probes restart the runtime (after a restart, failures of a runtime
 * that runs but does not answer yet count only once its start-up grace is over); the first restart of an episode (from
 * healthy to healthy again) raises its incident; one more restart than MONITOR_MAX_RESTARTS within an hour is a crash
 * loop, which stops the restarts and raises its own incident; healthy again after an incident sends one recovery
 * notice.
 */

export type HealthState = 'healthy' | 'degraded' | 'down';

export interface HealthRecord {
  state: HealthState;
  checkedAt: Date;
  /** Since when the instance has been in this state. */
  since: Date;
  /** The newest failure's reason (kept after recovery, for operators). */
  lastError: string | null;
  /** Consecutive failed probes since the last success or restart. */
  failures: number;
  /** The monitor's restarts within the last hour. */
  restarts: Date[];
  /** Every restart the monitor made. */
  restartCount: number;
  /** The audit row of this episode's incident, while it is open. */
  incidentId: string | null;
  crashLoop: boolean;
}

export interface Probe {
  state: HealthState;
  /** Why the probe failed (null when healthy). */
  error: string | null;
  /** The provider says the runtime is not running (not merely silent): no start-up grace applies. */
  notRunning?: boolean;
}

export type HealthAction =
  /** Restart the runtime; raise the episode's incident when it has none yet. */
  | { kind: 'restart'; raiseIncident: boolean }
  /** No more restarts: raise the crash-loop incident. */
  | { kind: 'crash-loop' }
  /** Healthy again: send the recovery notice of the episode's incident. */
  | { kind: 'recovered'; incidentId: string };

export interface MonitorLimits {
  /** Consecutive failed probes before a restart. */
  failures: number;
  /** Restarts allowed within an hour; one more is a crash loop. */
  maxRestarts: number;
  /** After a restart, how long a runtime that runs but does not answer yet is given before its failures count. */
  startGraceMs: number;
}

const HOUR_MS = 3_600_000;

export function assess(previous: HealthRecord | null, probe: Probe, now: Date, limits: MonitorLimits): { next: HealthRecord; action: HealthAction | null } {
  const restarts = (previous?.restarts ?? []).filter((at) => now.getTime() - at.getTime() < HOUR_MS);
  const since = previous?.state === probe.state ? previous.since : now;
  const base = {
    state: probe.state,
    checkedAt: now,
    since,
    restarts,
    restartCount: previous?.restartCount ?? 0,
  };
  if (probe.state === 'healthy') {
    const next: HealthRecord = { ...base, lastError: previous?.lastError ?? null, failures: 0, incidentId: null, crashLoop: false };
    return { next, action: previous?.incidentId ? { kind: 'recovered', incidentId: previous.incidentId } : null };
  }
  const lastRestart = restarts.at(-1);
  const starting = !probe.notRunning && lastRestart !== undefined && now.getTime() - lastRestart.getTime() < limits.startGraceMs;
  const next: HealthRecord = {
    ...base,
    lastError: probe.error,
    failures: (previous?.failures ?? 0) + (starting ? 0 : 1),
    incidentId: previous?.incidentId ?? null,
    crashLoop: previous?.crashLoop ?? false,
  };
  if (next.crashLoop || next.failures < limits.failures) return { next, action: null };
  if (restarts.length >= limits.maxRestarts) return { next: { ...next, crashLoop: true }, action: { kind: 'crash-loop' } };
  return {
    next: { ...next, failures: 0, restarts: [...restarts, now], restartCount: next.restartCount + 1 },
    action: { kind: 'restart', raiseIncident: next.incidentId === null },
  };
}
