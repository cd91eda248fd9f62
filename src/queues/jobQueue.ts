/**
 * Every enqueue, as typed helpers over the catalogue: each job goes on its queue, with its data and its
 * deterministic id. Also the few other things done to queued jobs (removing a flow or pending jobs, retrying a failed
 * job, pausing a queue after a 429).
 */
import type { Job } from 'bullmq';
import type { PlanName } from '../../core/plans.ts';
import type { Queues } from './connection.ts';
import {
  JOB_IDS,
  JOBS,
  isQueueName,
  QUEUES,
  STEPS,
  type AlertData,
  type BackupData,
  type BackupSweepData,
  type RestoreData,
  type FleetData,
  type JobData,
  type JobName,
  type LifecycleData,
  type ProvisionData,
  type QueueName,
  type ReactivateData,
  type RolloutInstanceData,
  type StripeEventData,
  type UsageEmailData,
} from './catalogue.ts';
import { provisionFlow } from './provisionFlow.ts';

/** What names an instance's jobs. */
export interface InstanceKey {
  id: string;
  workspace_id: string;
}

export interface JobQueue {
  /** The provisioning flow of one instance's generation (adding it again adds nothing). */
  addProvisionFlow(data: ProvisionData): Promise<void>;
  addStripeEvent(eventType: string, eventId: string): Promise<void>;
  addCancel(instance: InstanceKey & { subscription_id: string }, canceledAt: number): Promise<void>;
  /** The archive and purge of a cancellation, each delayed until it is due. */
  addArchiveAndPurge(instance: InstanceKey, data: LifecycleData, due: { archiveAt: Date; purgeAt: Date }): Promise<void>;
  /** Calls off the archive and purge of a cancellation that has not started them yet. */
  removeArchiveAndPurge(instance: InstanceKey, canceledAt: number): Promise<void>;
  addResize(instance: InstanceKey, plan: PlanName, requestId: string): Promise<void>;
  /** `requestId` is what asked (a Stripe event id, an admin request): a repeat of one request adds nothing. */
  addReactivate(instance: InstanceKey, data: Omit<ReactivateData, 'instanceId'>, requestId: string): Promise<void>;
  /** The suspension at the end of the payment grace, delayed until then. */
  addSuspend(instance: InstanceKey & { generation: number }, pastDueSince: number, delayMs: number): Promise<void>;
  addResume(instance: InstanceKey, eventId: string): Promise<void>;
  addDunningEmail(instance: InstanceKey, attempt: number, eventId: string): Promise<void>;
  addUsageEmail(data: UsageEmailData): Promise<void>;
  /** An operator's key rotation (one per request); answers its job id. */
  addRotateKey(instance: InstanceKey, requestId: string): Promise<string>;
  /** An incident's alerts: one job per channel, so a retry of one never repeats the other. */
  addAlerts(auditId: string, where: { queue: QueueName; jobId: string }): Promise<void>;
  /** Abandons a failed provisioning: retries an earlier abandon that failed, or adds one. */
  addAbandon(instance: InstanceKey): Promise<void>;
  /** Re-runs a job that failed for good, from a fresh attempt count; false if it is not there or not failed. */
  retryFailed(queue: string, jobId: string): Promise<boolean>;
  /**
   * Removes an instance's provisioning flow (unless it completed), so no step of it runs again; while steps of it
   * are running nothing is removed and their names are returned.
   */
  removeProvisionFlow(instance: InstanceKey & { generation: number }): Promise<{ running: string[] }>;
  /** Pauses a whole queue (every worker) after a provider's 429. */
  pause(queue: QueueName, ms: number): Promise<void>;
  /** The jobs a queue holds (say, while its provider rate-limits it): how many in each state, and the ids of a few. */
  heldJobs(queue: QueueName, sample?: number): Promise<HeldJobs>;
  /**
   * The fleet jobs' schedules (one scheduler each, however many workers call this; a changed interval replaces it,
   * an interval of 0 removes it).
   */
  scheduleFleet(everyMs: Record<'monitor' | 'reconcile', number>): Promise<void>;
  /** A reconcile run now, besides the scheduled ones (an operator asked); answers its job id. */
  addReconcile(requestId: string): Promise<string>;
  /** A rollout's coordinator (adding it again adds nothing); answers its job id. */
  addRollout(rolloutId: number): Promise<string>;
  /** One instance's update or rollback in a rollout (once per instance and direction). */
  addRolloutInstance(data: Pick<RolloutInstanceData, 'rolloutId' | 'instanceId' | 'direction'>): Promise<void>;
  /** The backup sweep's schedule (a cron expression; null removes it). */
  scheduleBackups(schedule: string | null): Promise<void>;
  /** A sweep slot's scheduled backups, each delayed by its offset (added in one call; a repeat adds nothing). */
  addScheduledBackups(slot: number, backups: { instance: InstanceKey; delayMs: number }[]): Promise<void>;
  /** A backup now (an operator asked); answers its job id. */
  addBackupNow(instance: InstanceKey, requestId: string): Promise<string>;
  /** The job of a recorded restore run; answers its job id. */
  addRestore(instance: InstanceKey, restoreId: string): Promise<string>;
}

export interface HeldJobs {
  waiting: number;
  delayed: number;
  active: number;
  /** The first few, running ones first. */
  ids: string[];
}

export class BullJobQueue implements JobQueue {
  /** The backup jobs' helpers (below, in a block of their own). */
  private readonly backups: BullBackupJobs;

  constructor(private readonly queues: Queues) {
    this.backups = new BullBackupJobs(queues);
  }

  scheduleBackups = (schedule: string | null) => this.backups.scheduleBackups(schedule);
  addScheduledBackups = (slot: number, backups: { instance: InstanceKey; delayMs: number }[]) => this.backups.addScheduledBackups(slot, backups);
  addBackupNow = (instance: InstanceKey, requestId: string) => this.backups.addBackupNow(instance, requestId);
  addRestore = (instance: InstanceKey, restoreId: string) => this.backups.addRestore(instance, restoreId);

  private async add<N extends JobName>(name: N, data: JobData[N], opts: { jobId: string; delay?: number }): Promise<void> {
    await this.queues.get(JOBS[name].queue).add(name, data, opts);
  }

  async addProvisionFlow(data: ProvisionData): Promise<void> {
    await this.queues.flow.add(provisionFlow(data, this.queues.jobOptions()));
  }

  async addStripeEvent(eventType: string, eventId: string): Promise<void> {
    const data: StripeEventData = { eventId };
    await this.queues.get(QUEUES.stripeEvents).add(eventType, data, { jobId: JOB_IDS.stripeEvent(eventId) });
  }

  async addCancel(instance: InstanceKey & { subscription_id: string }, canceledAt: number): Promise<void> {
    await this.add('cancel', { instanceId: instance.id, canceledAt, subscriptionId: instance.subscription_id }, { jobId: JOB_IDS.lifecycle(instance.workspace_id, 'cancel', canceledAt) });
  }

  async addArchiveAndPurge(instance: InstanceKey, data: LifecycleData, due: { archiveAt: Date; purgeAt: Date }): Promise<void> {
    const { workspace_id: workspaceId } = instance;
    await this.add('archive', data, {
      jobId: JOB_IDS.lifecycle(workspaceId, 'archive', data.canceledAt),
      delay: Math.max(0, due.archiveAt.getTime() - Date.now()),
    });
    await this.add('purge', data, {
      jobId: JOB_IDS.lifecycle(workspaceId, 'purge', data.canceledAt),
      delay: Math.max(0, due.purgeAt.getTime() - Date.now()),
    });
  }

  async removeArchiveAndPurge(instance: InstanceKey, canceledAt: number): Promise<void> {
    for (const name of ['archive', 'purge'] as const) {
      const pending = await this.queues.get(JOBS[name].queue).getJob(JOB_IDS.lifecycle(instance.workspace_id, name, canceledAt));
      if (pending && (await pending.getState()) !== 'active') await pending.remove();
    }
  }

  async addResize(instance: InstanceKey, plan: PlanName, requestId: string): Promise<void> {
    await this.add('resize', { instanceId: instance.id, plan }, { jobId: JOB_IDS.resize(instance.workspace_id, requestId) });
  }

  async addReactivate(instance: InstanceKey, data: Omit<ReactivateData, 'instanceId'>, requestId: string): Promise<void> {
    await this.add('reactivate', { instanceId: instance.id, ...data }, { jobId: JOB_IDS.reactivate(instance.workspace_id, requestId) });
  }

  async addSuspend(instance: InstanceKey & { generation: number }, pastDueSince: number, delayMs: number): Promise<void> {
    await this.add('suspend', { instanceId: instance.id }, {
      jobId: JOB_IDS.suspend(instance.workspace_id, instance.generation, pastDueSince),
      delay: delayMs,
    });
  }

  async addResume(instance: InstanceKey, eventId: string): Promise<void> {
    await this.add('resume', { instanceId: instance.id }, { jobId: JOB_IDS.resume(instance.workspace_id, eventId) });
  }

  async addDunningEmail(instance: InstanceKey, attempt: number, eventId: string): Promise<void> {
    await this.add('dunning-email', { instanceId: instance.id, attempt }, { jobId: JOB_IDS.dunning(instance.workspace_id, eventId) });
  }

  async addUsageEmail(data: UsageEmailData): Promise<void> {
    await this.add('usage-email', data, { jobId: JOB_IDS.usageEmail(data) });
  }

  async addRotateKey(instance: InstanceKey, requestId: string): Promise<string> {
    const id = JOB_IDS.rotateKey(instance.workspace_id, requestId);
    await this.add('rotate-key', { instanceId: instance.id }, { jobId: id });
    return id;
  }

  async addAlerts(auditId: string, where: { queue: QueueName; jobId: string }): Promise<void> {
    for (const channel of ['slack', 'email'] as const) {
      const data: AlertData = { auditId, channel, queue: where.queue, jobId: where.jobId };
      await this.add(`alert-${channel}`, data, { jobId: JOB_IDS.alert(auditId, channel) });
    }
  }

  async addAbandon(instance: InstanceKey): Promise<void> {
    const id = JOB_IDS.abandon(instance.workspace_id);
    const earlier = await this.queues.get(JOBS.abandon.queue).getJob(id);
    if (earlier && (await earlier.getState()) === 'failed') await earlier.retry('failed', { resetAttemptsMade: true });
    else await this.add('abandon', { instanceId: instance.id, workspaceId: instance.workspace_id }, { jobId: id });
  }

  async retryFailed(queue: string, jobId: string): Promise<boolean> {
    const job = isQueueName(queue) ? await this.queues.get(queue).getJob(jobId) : undefined;
    if (!job || (await job.getState()) !== 'failed') return false;
    await job.retry('failed', { resetAttemptsMade: true });
    return true;
  }

  async removeProvisionFlow(instance: InstanceKey & { generation: number }): Promise<{ running: string[] }> {
    const root = await this.queues.get(JOBS.finalize.queue).getJob(JOB_IDS.step(instance.workspace_id, STEPS.finalize, instance.generation));
    if (!root) return { running: [] };
    const flow = await this.queues.flow.getFlow({ id: root.id!, queueName: root.queueName, prefix: this.queues.prefix });
    const running = await activeSteps(flow);
    if (!running.length && !(await root.isCompleted())) await root.remove({ removeChildren: true });
    return { running };
  }

  async pause(queue: QueueName, ms: number): Promise<void> {
    await this.queues.get(queue).rateLimit(ms);
  }

  async heldJobs(queue: QueueName, sample = 5): Promise<HeldJobs> {
    const q = this.queues.get(queue);
    const [counts, ids] = await Promise.all([
      q.getJobCounts('wait', 'prioritized', 'paused', 'delayed', 'active'),
      q.getRanges(['active', 'wait', 'prioritized', 'paused', 'delayed'], 0, sample - 1, true),
    ]);
    return {
      waiting: (counts.wait ?? 0) + (counts.prioritized ?? 0) + (counts.paused ?? 0),
      delayed: counts.delayed ?? 0,
      active: counts.active ?? 0,
      ids: [...new Set(ids)].slice(0, sample),
    };
  }

  async scheduleFleet(everyMs: Record<'monitor' | 'reconcile', number>): Promise<void> {
    const queue = this.queues.get(QUEUES.fleet);
    for (const name of ['monitor', 'reconcile'] as const) {
      if (everyMs[name] === 0) {
        await queue.removeJobScheduler(JOB_IDS.fleetScheduler(name)); // turned off
        continue;
      }
      const data: FleetData = {};
      await queue.upsertJobScheduler(JOB_IDS.fleetScheduler(name), { every: everyMs[name] }, {
        name,
        data,
        opts: FLEET_JOB_OPTIONS,
      });
    }
  }

  async addReconcile(requestId: string): Promise<string> {
    const id = JOB_IDS.reconcileNow(requestId);
    const data: FleetData = {};
    await this.queues.get(JOBS.reconcile.queue).add('reconcile', data, { ...FLEET_JOB_OPTIONS, jobId: id });
    return id;
  }

  async addRollout(rolloutId: number): Promise<string> {
    const id = JOB_IDS.rollout(rolloutId);
    await this.add('rollout', { rolloutId }, { jobId: id });
    return id;
  }

  async addRolloutInstance(data: Pick<RolloutInstanceData, 'rolloutId' | 'instanceId' | 'direction'>): Promise<void> {
    await this.add('rollout-instance', { rolloutId: data.rolloutId, instanceId: data.instanceId, direction: data.direction }, { jobId: JOB_IDS.rolloutInstance(data) });
  }
}

// Backups (issue 13).
/** Kept two days whatever their number, so a repeated sweep of a slot finds every scheduled backup's id. */
const BACKUP_JOB_OPTIONS = { removeOnComplete: { age: 2 * 86_400 } };

export class BullBackupJobs {
  constructor(private readonly queues: Queues) {}

  async scheduleBackups(schedule: string | null): Promise<void> {
    const queue = this.queues.get(QUEUES.backups);
    if (schedule === null) {
      await queue.removeJobScheduler(JOB_IDS.backupScheduler());
      return;
    }
    const data: BackupSweepData = {};
    await queue.upsertJobScheduler(JOB_IDS.backupScheduler(), { pattern: schedule, tz: 'UTC' }, {
      name: 'backup-sweep',
      data,
      opts: FLEET_JOB_OPTIONS,
    });
  }

  async addScheduledBackups(slot: number, backups: { instance: InstanceKey; delayMs: number }[]): Promise<void> {
    if (!backups.length) return;
    await this.queues.get(QUEUES.backups).addBulk(
      backups.map(({ instance, delayMs }) => {
        const data: BackupData = { instanceId: instance.id, reason: 'scheduled' };
        return { name: 'backup', data, opts: { ...BACKUP_JOB_OPTIONS, jobId: JOB_IDS.scheduledBackup(instance.workspace_id, slot), delay: delayMs } };
      }),
    );
  }

  async addBackupNow(instance: InstanceKey, requestId: string): Promise<string> {
    const id = JOB_IDS.backupNow(instance.workspace_id, requestId);
    const data: BackupData = { instanceId: instance.id, reason: 'on-demand' };
    await this.queues.get(QUEUES.backups).add('backup', data, { ...BACKUP_JOB_OPTIONS, jobId: id });
    return id;
  }

  async addRestore(instance: InstanceKey, restoreId: string): Promise<string> {
    const id = JOB_IDS.restore(instance.workspace_id, restoreId);
    const data: RestoreData = { instanceId: instance.id, restoreId };
    // A restore is not repeated by BullMQ: a failure swaps back and is final (an operator asks again).
    await this.queues.get(QUEUES.backups).add('restore', data, { ...BACKUP_JOB_OPTIONS, attempts: 1, jobId: id });
    return id;
  }
}

/** A fleet run is not retried (the next one starts afresh), and its kept history stays short: Postgres keeps what it found. */
const FLEET_JOB_OPTIONS = { attempts: 1, removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } };

async function activeSteps(node: { job: Job; children?: unknown[] }): Promise<string[]> {
  const children = (node.children ?? []) as { job: Job; children?: unknown[] }[];
  const nested = (await Promise.all(children.map(activeSteps))).flat();
  return (await node.job.getState()) === 'active' ? [node.job.name, ...nested] : nested;
}
