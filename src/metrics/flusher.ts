/**
 * Adds what this process counted to the fleet-wide sums in Redis: every few seconds, before the web answers a
 * scrape (so this process's counts are never behind), and on close. The same round trips tell the rate-limit
 * periods which providers answered successfully. A write that fails keeps its counts for the next one.
 */
import { logger } from '../../core/logger.ts';
import type { RateLimitPeriods } from '../queues/rateLimits.ts';
import type { CounterStore } from './counterStore.ts';
import { emptyCounts, type MetricsRecorder } from './recorder.ts';

export const FLUSH_INTERVAL_MS = 5_000;

const log = logger('metrics');

export class MetricsFlusher {
  private timer: NodeJS.Timeout | undefined;
  /** Flushes run one after another: counts are drained in order and a failed one is put back before the next. */
  private last: Promise<void> = Promise.resolve();

  constructor(
    private readonly recorder: MetricsRecorder,
    private readonly store: Pick<CounterStore, 'add'>,
    private readonly periods: Pick<RateLimitPeriods, 'answered'>,
    private readonly intervalMs = FLUSH_INTERVAL_MS,
  ) {}

  start(): void {
    // What was counted while no control plane ran in this process (say, a test's own calls) is no one's to add.
    this.recorder.drain();
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  flush(): Promise<void> {
    this.last = this.last.then(() => this.flushOnce());
    return this.last;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private async flushOnce(): Promise<void> {
    const { families, succeeded } = this.recorder.drain();
    const [counted, answered] = await Promise.allSettled([this.store.add(families), this.periods.answered(succeeded)]);
    const kept = emptyCounts();
    if (counted.status === 'rejected') kept.families = families;
    if (answered.status === 'rejected') kept.succeeded = succeeded;
    if (counted.status === 'fulfilled' && answered.status === 'fulfilled') return;
    this.recorder.restore(kept);
    const error = [counted, answered].find((r) => r.status === 'rejected') as PromiseRejectedResult;
    log.warn('metrics not written to Redis (kept for the next try)', { error: (error.reason as Error).message });
  }
}
