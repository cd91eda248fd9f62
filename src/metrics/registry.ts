/**
 * What GET /metrics shows (docs/operations.md#metrics), as a prom-client registry. The fleet's figures are read at
 * scrape time from where they live, so any web process shows the whole fleet: Postgres (instances, health, step and
 * provisioning durations, failures; one aggregated query each), BullMQ (job counts per queue) and the counters every
 * process adds to Redis (provider calls, webhook deliveries, fleet runs). The process metrics are the serving
 * process's own.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry, type LabelValues, type Metric } from 'prom-client';
import type { BucketCount, FleetFigures } from '../db/fleetFigures.ts';
import { INSTANCE_STATUSES } from '../instances/stateMachine.ts';
import { QUEUES, STEPS } from '../queues/catalogue.ts';
import type { Queues } from '../queues/connection.ts';
import type { CounterStore } from './counterStore.ts';
import { failureClass } from './failureClass.ts';
import { FLEET_RUN_BUCKETS, type CounterFamily } from './recorder.ts';

export const METRIC_PREFIX = 'clawdbot_';

/** Upper bounds (seconds) of the step duration histogram: from a database call to a long deployment. */
export const STEP_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800] as const;
/** Upper bounds (seconds) of the time-to-ready histogram: a local provision takes seconds, a Railway build minutes. */
export const READY_BUCKETS = [5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 3600] as const;

const HEALTH_STATES = ['healthy', 'degraded', 'down', 'unknown'] as const;
const FLEET_JOBS = ['monitor', 'reconcile'] as const;

export interface MetricSources {
  figures: FleetFigures;
  queues: Pick<Queues, 'get'>;
  counters: Pick<CounterStore, 'read'>;
}

let processRegistry: Registry | undefined;

/** CPU, memory, event loop, GC and handles of this process: collected once per process, whatever serves them. */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: METRIC_PREFIX });
  }
  return processRegistry;
}

/** One histogram's values from bucket counts: per label value, cumulative buckets, +Inf, sum and count. */
export function histogramValues(
  name: string,
  bounds: readonly number[],
  labelName: string | null,
  labels: readonly string[],
  rows: readonly BucketCount[],
): { metricName: string; labels: LabelValues<string>; value: number }[] {
  const values: { metricName: string; labels: LabelValues<string>; value: number }[] = [];
  for (const label of new Set([...labels, ...rows.map((r) => r.label)])) {
    const own = rows.filter((r) => r.label === label);
    const base = labelName ? { [labelName]: label } : {};
    let cumulative = 0;
    bounds.forEach((le, i) => {
      cumulative += own.filter((r) => r.bucket === i).reduce((n, r) => n + r.count, 0);
      values.push({ metricName: `${name}_bucket`, labels: { ...base, le }, value: cumulative });
    });
    const count = own.reduce((n, r) => n + r.count, 0);
    values.push({ metricName: `${name}_bucket`, labels: { ...base, le: '+Inf' }, value: count });
    values.push({ metricName: `${name}_sum`, labels: base, value: own.reduce((n, r) => n + r.sum, 0) });
    values.push({ metricName: `${name}_count`, labels: base, value: count });
  }
  return values;
}

interface HistogramSpec {
  name: string;
  help: string;
  /** The one label, or null for none. */
  labelName: string | null;
  /** Label values shown even with no data yet. */
  labels: readonly string[];
  buckets: readonly number[];
  registry: Registry;
}

/**
 * A histogram whose bucket counts are read at scrape time instead of observed in this process. prom-client's
 * registry renders a metric through its get(), which is all this has (prom-client's own Histogram cannot be given
 * bucket counts), hence the one cast.
 */
function readHistogram(spec: HistogramSpec, read: () => Promise<BucketCount[]>): void {
  const { name, help } = spec;
  const metric = {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    async get() {
      const values = histogramValues(name, spec.buckets, spec.labelName, spec.labels, await read());
      return { name, help, type: 'histogram', aggregator: 'sum', values };
    },
  };
  spec.registry.registerMetric(metric as unknown as Metric);
}

/** A fleet run histogram's Redis fields (see fleetRunField) as bucket counts. */
export function fleetRunCounts(fields: ReadonlyMap<string, number>): BucketCount[] {
  return [...fields].flatMap(([field, n]) => {
    const [job = '', part = ''] = field.split('\t');
    if (part === 'sum_ms') return [{ label: job, bucket: 0, count: 0, sum: n / 1000 }];
    const bucket = /^b(\d+)$/.exec(part);
    return bucket ? [{ label: job, bucket: Number(bucket[1]), count: n, sum: 0 }] : [];
  });
}

/** The registry GET /metrics renders: the fleet's metrics and this process's. */
export function metricsRegistry(sources: MetricSources): Registry {
  const registry = new Registry();
  const name = (rest: string) => `${METRIC_PREFIX}${rest}`;

  /** A gauge of counts by one label: every known value shown (0 when absent), and any other the figures hold. */
  const countsBy = (rest: string, help: string, label: string, known: readonly string[], read: () => Promise<Map<string, number>>) =>
    new Gauge({
      name: name(rest),
      help,
      labelNames: [label],
      registers: [registry],
      async collect() {
        const counts = await read();
        this.reset();
        for (const value of new Set([...known, ...counts.keys()])) this.set({ [label]: value }, counts.get(value) ?? 0);
      },
    });
  countsBy('instances', 'Instances by status.', 'status', INSTANCE_STATUSES, () => sources.figures.instancesByStatus());
  countsBy('active_instances_health', "Active instances by the health monitor's last probe (unknown: not probed yet).", 'state', HEALTH_STATES, () =>
    sources.figures.activeByHealth(),
  );

  new Gauge({
    name: name('queue_jobs'),
    help: 'Jobs by queue and state (waiting includes prioritized and paused jobs).',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      const queues = Object.values(QUEUES);
      const counts = await Promise.all(queues.map((q) => sources.queues.get(q).getJobCounts('wait', 'prioritized', 'paused', 'active', 'delayed', 'failed')));
      this.reset();
      queues.forEach((queue, i) => {
        const c = counts[i]!;
        this.set({ queue, state: 'waiting' }, (c.wait ?? 0) + (c.prioritized ?? 0) + (c.paused ?? 0));
        for (const state of ['active', 'delayed', 'failed'] as const) this.set({ queue, state }, c[state] ?? 0);
      });
    },
  });

  readHistogram(
    {
      name: name('step_duration_seconds'),
      help: 'Completed provisioning steps, from their first start to their end (waits and retries included), by step.',
      labelName: 'step',
      labels: Object.values(STEPS),
      buckets: STEP_BUCKETS,
      registry,
    },
    () => sources.figures.stepDurations(STEP_BUCKETS),
  );

  readHistogram(
    {
      name: name('time_to_ready_seconds'),
      help: "Instances that became active, from the provisioning's start to active (a reactivation counts from its own start).",
      labelName: null,
      labels: [''],
      buckets: READY_BUCKETS,
      registry,
    },
    () => sources.figures.timeToReady(READY_BUCKETS),
  );

  new Gauge({
    name: name('failed_instances'),
    help: 'Instances failed now, by the step that failed and the class of its reason.',
    labelNames: ['step', 'reason'],
    registers: [registry],
    async collect() {
      const failures = await sources.figures.failures();
      this.reset();
      for (const f of failures) this.inc({ step: f.step, reason: failureClass(f.reason) }, f.count);
    },
  });

  const counter = (family: CounterFamily, rest: string, help: string, labelNames: [string, string]) =>
    new Counter({
      name: name(rest),
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const sums = await sources.counters.read(family);
        this.reset();
        for (const [field, n] of sums) {
          const [a = '', b = ''] = field.split('\t');
          this.inc({ [labelNames[0]]: a, [labelNames[1]]: b }, n);
        }
      },
    });
  counter('provider_calls', 'provider_calls_total', 'Calls to providers by every process, by provider and result (rate_limited: HTTP 429).', ['provider', 'result']);
  counter('webhook_events', 'webhook_events_total', 'Stripe webhook deliveries by event type (unverified: refused before verifying) and outcome.', [
    'event_type',
    'outcome',
  ]);

  readHistogram(
    {
      name: name('fleet_run_duration_seconds'),
      help: 'Runs of the fleet jobs (health monitor, reconciler) by every worker, by job.',
      labelName: 'job',
      labels: FLEET_JOBS,
      buckets: FLEET_RUN_BUCKETS,
      registry,
    },
    async () => fleetRunCounts(await sources.counters.read('fleet_runs')),
  );

  return Registry.merge([processMetrics(), registry]);
}
