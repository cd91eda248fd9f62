/**
 * Anchor: bare BullMQ flows of the provisioning tree's shape (the same 7 jobs on the same queues, the same job data,
 * the same worker concurrency), whose jobs do nothing. What the product's orchestration is measured against: the
 * engine's own cost of running the tree.
 *
 * Run as a child process (so its CPU and memory are its own):
 *   BARE_FLOWS=500 BARE_CONCURRENCY=20 BARE_PREFIX='{bench-x}' tsx bench/anchors/bareFlows.ts
 * Prints one JSON line: { flows, ms, cpuMs, rssMb }. Removes its keys before it exits.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { FlowProducer, Worker, type FlowJob } from 'bullmq';
import { Redis } from 'ioredis';
import { JOBS, QUEUES, STEPS, type StepName } from '../../src/queues/catalogue.ts';
import { deleteKeys } from '../../test/support/harness.ts';

const flows = Number(process.env.BARE_FLOWS ?? 500);
const concurrency = Number(process.env.BARE_CONCURRENCY ?? 20);
const prefix = process.env.BARE_PREFIX ?? `{bench-bare-${randomUUID().slice(0, 8)}}`;
const connection = { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null };

function tree(i: number): FlowJob {
  const data = { instanceId: randomUUID(), workspaceId: `ws-bench-${i}`, generation: 1 };
  const node = (step: StepName, children?: FlowJob[]): FlowJob => ({
    name: step,
    queueName: JOBS[step].queue,
    data,
    opts: { jobId: `${data.workspaceId}-${step}`, attempts: 3, removeOnComplete: { age: 3600, count: 1000 }, removeOnFail: false },
    ...(children && { children }),
  });
  return node(STEPS.finalize, [
    node(STEPS.sendWelcomeEmail, [
      node(STEPS.healthCheck, [node(STEPS.deploy, [node(STEPS.createService), node(STEPS.buildWorkspace, [node(STEPS.createBranch)])])]),
    ]),
  ]);
}

const queues = [...new Set(Object.values(STEPS).map((s) => JOBS[s].queue))];
let finished = 0;
let allDone!: () => void;
const done = new Promise<void>((resolve) => (allDone = resolve));
const workers = queues.map((queue) => {
  const worker = new Worker(queue, async (job) => ({ step: job.name }), { connection, prefix, concurrency });
  if (queue === QUEUES.provision) {
    worker.on('completed', (job) => {
      if (job.name === STEPS.finalize && ++finished === flows) allDone();
    });
  }
  return worker;
});
await Promise.all(workers.map((w) => w.waitUntilReady()));
const producer = new FlowProducer({ connection, prefix });

const cpuBefore = process.cpuUsage();
const started = performance.now();
await Promise.all(Array.from({ length: flows }, (_, i) => producer.add(tree(i))));
await done;
const ms = performance.now() - started;
const cpu = process.cpuUsage(cpuBefore);
const rssMb = process.memoryUsage().rss / 2 ** 20;

await Promise.all([...workers.map((w) => w.close()), producer.close()]);
const redis = new Redis(connection);
await deleteKeys(redis, `${prefix}:*`);
redis.disconnect();
console.log(JSON.stringify({ flows, ms, cpuMs: (cpu.user + cpu.system) / 1000, rssMb }));
