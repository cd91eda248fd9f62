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

function defaultJobOptions(attempts: number): DefaultJobOptions {
  return {
    attempts,
    backoff: { type: 'jittered' },
    // Completed jobs stay a week for Bull Board; failed ones stay until an operator acts on them.
    removeOnComplete: { age: 7 * 24 * 3600, count: 50_000 },
    removeOnFail: false,
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
      queue = new Queue(name, { connection: this.connection, prefix: this.prefix, defaultJobOptions: defaultJobOptions(this.attempts) });
      this.queues.set(name, queue);
    }
    return queue;
  }

  all(): Queue[] {
    return Object.values(QUEUES).map((name) => this.get(name));
  }

  jobOptions(): DefaultJobOptions {
    return defaultJobOptions(this.attempts);
  }

  async close(): Promise<void> {
    await Promise.all([this.flow.close(), ...[...this.queues.values()].map((q) => q.close())]);
  }
}
