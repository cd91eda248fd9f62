/**
 * What this process counts for GET /metrics: provider calls, Stripe webhook deliveries, fleet job runs. Counting is
 * an in-memory increment only (webhook intake and provider calls are hot paths); the control plane running in this
 * process adds the counts to Redis every few seconds and on close (./flusher.ts), and the web's /metrics reads the
 * sums of every process there. One recorder per process, as one control plane runs per process.
 */

/** The fleet jobs whose runs are timed. */
export type FleetJob = 'monitor' | 'reconcile';

/** What came of one provider call: an HTTP answer by its class, or none at all. */
export type CallResult = 'ok' | 'rate_limited' | 'client_error' | 'server_error' | 'network_error';

/** What the webhook made of one delivery (docs/operations.md#metrics). */
export type WebhookOutcome = 'accepted' | 'duplicate' | 'ignored' | 'rejected' | 'failed';

/** Upper bounds (seconds) of the fleet run duration histogram. */
export const FLEET_RUN_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600] as const;

/** The counter families kept in Redis, one hash each. A field is the label values joined by a tab. */
export const COUNTER_FAMILIES = ['provider_calls', 'webhook_events', 'fleet_runs'] as const;
export type CounterFamily = (typeof COUNTER_FAMILIES)[number];

/** A fleet run histogram's fields: `<job>\tb<i>` counts runs in bucket i alone (i = bounds count: above the last), `<job>\tsum_ms`. */
export const fleetRunField = {
  bucket: (job: string, index: number) => `${job}\tb${index}`,
  sumMs: (job: string) => `${job}\tsum_ms`,
};

/** Counts not yet added to Redis, and when each provider last answered a call successfully (ms since the epoch). */
export interface Counts {
  families: Record<CounterFamily, Map<string, number>>;
  succeeded: Map<string, number>;
}

export function callResult(status: number | undefined): CallResult {
  if (status === undefined) return 'network_error';
  if (status === 429) return 'rate_limited';
  if (status >= 500) return 'server_error';
  if (status >= 400) return 'client_error';
  return 'ok';
}

/** Stripe's event types are short dotted words; anything else (never sent by Stripe) is counted as "other". */
const EVENT_TYPE = /^[a-z0-9_.]{1,100}$/;

export function emptyCounts(): Counts {
  return {
    families: { provider_calls: new Map(), webhook_events: new Map(), fleet_runs: new Map() },
    succeeded: new Map(),
  };
}

function add(map: Map<string, number>, field: string, n: number): void {
  map.set(field, (map.get(field) ?? 0) + n);
}

export class MetricsRecorder {
  private counts = emptyCounts();

  /** One provider call: its HTTP status, or undefined when no answer came (refused, reset, timed out). */
  providerCall(provider: string, status: number | undefined): void {
    const result = callResult(status);
    add(this.counts.families.provider_calls, `${provider}\t${result}`, 1);
    if (result === 'ok') this.counts.succeeded.set(provider, Date.now());
  }

  /** One Stripe webhook delivery; `eventType` is null when the delivery was not a verified event. */
  webhookEvent(eventType: string | null, outcome: WebhookOutcome): void {
    const type = eventType === null ? 'unverified' : EVENT_TYPE.test(eventType) ? eventType : 'other';
    add(this.counts.families.webhook_events, `${type}\t${outcome}`, 1);
  }

  /** One run of a fleet job, however it ended, and how long it took. */
  fleetRun(job: FleetJob, ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    const seconds = ms / 1000;
    let index = FLEET_RUN_BUCKETS.findIndex((le) => seconds <= le);
    if (index < 0) index = FLEET_RUN_BUCKETS.length;
    add(this.counts.families.fleet_runs, fleetRunField.bucket(job, index), 1);
    add(this.counts.families.fleet_runs, fleetRunField.sumMs(job), Math.round(ms));
  }

  /** Everything counted since the last drain; counting starts afresh. */
  drain(): Counts {
    const drained = this.counts;
    this.counts = emptyCounts();
    return drained;
  }

  /** Counts that could not be written go back, to be written with the next ones. */
  restore(counts: Counts): void {
    for (const family of COUNTER_FAMILIES) {
      for (const [field, n] of counts.families[family]) add(this.counts.families[family], field, n);
    }
    for (const [provider, at] of counts.succeeded) {
      this.counts.succeeded.set(provider, Math.max(at, this.counts.succeeded.get(provider) ?? 0));
    }
  }
}

/** This process's recorder. */
export const metrics = new MetricsRecorder();

/**
 * Records one run of a fleet job (the worker times every monitor and reconcile run already: see src/worker.ts).
 * Usage: `const started = performance.now(); try { ... } finally { recordFleetRun('monitor', performance.now() - started); }`
 */
export function recordFleetRun(job: FleetJob, ms: number): void {
  metrics.fleetRun(job, ms);
}
