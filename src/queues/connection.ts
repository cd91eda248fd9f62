/** Redis connections and queues. Every queue and flow shares one prefix (hash-tagged for Redis Cluster). */
import { FlowProducer, Queue, type ConnectionOptions, type DefaultJobOptions } from 'bullmq';
import { QUEUES, type QueueName } from './catalogue.ts';

export function redisConnection(url: string): ConnectionOptions {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    tls: u.protocol === 'rediss:' ? {} : undefined,
    // Required by BullMQ workers: a blocked command must wait for Redis instead of failing.
    maxRetriesPerRequest: null,
  };
}

/**
 * Kept history is bounded, so Redis and the workers stay small however many customers there are (the steps ledger
 * and the audit in Postgres keep what happened). Jobs whose deterministic id is what makes a repeat add nothing
 * (a Stripe redelivery, which comes for up to 3 days, and the lifecycle jobs it adds) are kept a week; the
 * provisioning steps and alerts, whose repeats do nothing anyway, a day and at most 1,000 a queue. Failed jobs stay
 * 30 days (at most 10,000 a queue): long enough for an operator to act on each incident.
 */
const KEPT_A_WEEK: ReadonlySet<QueueName> = new Set([QUEUES.stripeEvents, QUEUES.lifecycle]);

function defaultJobOptions(attempts: number, queue: QueueName | 'flow'): DefaultJobOptions {
  const week = queue !== 'flow' && KEPT_A_WEEK.has(queue);
  return {
    attempts,
    backoff: { type: 'jittered' },
    removeOnComplete: week ? { age: 7 * 24 * 3600, count: 50_000 } : { age: 24 * 3600, count: 1_000 },
    removeOnFail: { age: 30 * 24 * 3600, count: 10_000 },
  };
}

export class Queues {
  readonly flow: FlowProducer;
  private readonly queues = new Map<QueueName, Queue>();

  constructor(
    private readonly connection: ConnectionOptions,
    readonly prefix: string,
    private readonly attempts: number,
  ) {
    this.flow = new FlowProducer({ connection, prefix });
  }

  get(name: QueueName): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(name, { connection: this.connection, prefix: this.prefix, defaultJobOptions: defaultJobOptions(this.attempts, name) });
      this.queues.set(name, queue);
    }
    return queue;
  }

  all(): Queue[] {
    return Object.values(QUEUES).map((name) => this.get(name));
  }

  /** The provisioning flow's jobs' options. */
  jobOptions(): DefaultJobOptions {
    return defaultJobOptions(this.attempts, 'flow');
  }

  async close(): Promise<void> {
    await Promise.all([this.flow.close(), ...[...this.queues.values()].map((q) => q.close())]);
  }
}
