/**
 * The fleet-wide sums of what every process counted (./recorder.ts): one Redis hash per counter family, under the
 * queue prefix, each field a label set. Processes add their counts; the web's /metrics reads the sums.
 */
import type { Redis } from 'ioredis';
import type { CounterFamily, Counts } from './recorder.ts';

export class CounterStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  private key(family: CounterFamily): string {
    return `${this.prefix}:metrics:${family}`;
  }

  /** Adds counts in one round trip, all or nothing (MULTI), so counts that failed can be added again later. */
  async add(families: Counts['families']): Promise<void> {
    const increments = (Object.entries(families) as [CounterFamily, Map<string, number>][]).flatMap(([family, fields]) =>
      [...fields].map(([field, n]) => [this.key(family), field, n] as const),
    );
    if (increments.length === 0) return;
    const multi = this.redis.multi();
    for (const [key, field, n] of increments) multi.hincrby(key, field, n);
    const results = await multi.exec();
    const failed = results?.find(([err]) => err);
    if (!results || failed) throw failed?.[0] ?? new Error('the counters were not added (transaction aborted)');
  }

  /** The sums of one family, by field. */
  async read(family: CounterFamily): Promise<Map<string, number>> {
    const fields = await this.redis.hgetall(this.key(family));
    return new Map(Object.entries(fields).map(([field, n]) => [field, Number(n)]));
  }
}
