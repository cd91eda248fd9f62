/**
 * The job catalogue: every queue, every job (its name, its queue, its data, what its final failure means) and every
 * job id. Jobs are added only through ./jobQueue.ts and ./provisionFlow.ts, and the workers dispatch by this table.
 *
 * Steps that call a provider sit on that provider's queue, so one global BullMQ rate limiter per queue keeps every
 * worker together within the provider account's limits.
 */
import type { PlanName } from '../../core/plans.ts';

export const QUEUES = {
  stripeEvents: 'stripe-events',
  provision: 'provision',
  compute: 'compute',
  database: 'database',
  alerts: 'alerts',
  /** Operator actions and the rest of a subscription's life. */
  lifecycle: 'lifecycle',
  /** Watching the fleet on a schedule: the health monitor and the reconciler. */
  fleet: 'fleet',
  /** Fleet settings and runtime versions rolled out: a coordinator per rollout, a job per instance changed. */
  rollouts: 'rollouts',
  /** Backups of customers' databases (the scheduled sweep, each backup) and restores. */
  backups: 'backups',
} as const;

export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

export function isQueueName(name: string): name is QueueName {
  return (Object.values(QUEUES) as string[]).includes(name);
}

/** The provisioning steps, in the order of the flow (see ./provisionFlow.ts for the tree). */
export const STEPS = {
  createBranch: 'create-branch',
  createService: 'create-service',
  buildWorkspace: 'build-workspace',
  deploy: 'deploy',
  healthCheck: 'health-check',
  sendWelcomeEmail: 'send-welcome-email',
  finalize: 'finalize',
} as const;

export type StepName = (typeof STEPS)[keyof typeof STEPS];

/**
 * The Stripe event types this control plane acts on; others are recorded and acknowledged. A stripe-events job is
 * named after its event's type. A checkout paid by a delayed method completes unpaid and is provisioned when its
 * async payment succeeds.
 */
export const STRIPE_EVENT_JOBS: ReadonlySet<string> = new Set([
  'checkout.session.completed',
  'checkout.session.async_payment_succeeded',
  'customer.subscription.deleted',
  'customer.subscription.updated',
  'invoice.payment_failed',
  'invoice.paid',
]);

// What each job carries: ids and small values, never secrets (Bull Board shows job data).

/** A Stripe event job: the payload is read from Postgres, where the webhook recorded it. */
export interface StripeEventData {
  eventId: string;
}

/** A provisioning step's (and abandon's) data. Wait state (deadlines, deployment ids) is added by the step itself. */
export interface ProvisionData {
  instanceId: string;
  workspaceId: string;
  /** The instance's provisioning run: 1, then one more for each reactivation. */
  generation?: number;
  /** Set by the step runner while the step waits: the attempt that waits (its re-runs are that attempt's, in the ledger). */
  waitingAttempt?: number;
}

/** cancel, archive and purge. */
export interface LifecycleData {
  instanceId: string;
  /** Stripe's canceled_at (epoch seconds): part of the job ids, and the start of the archive and purge clocks. */
  canceledAt: number;
  /**
   * The subscription (our row's id) whose end this is: a cancel that comes after the instance moved on to a newer
   * subscription (a returning customer's) does nothing. Unset in jobs queued before it was added.
   */
  subscriptionId?: string;
}

export interface ResizeData {
  instanceId: string;
  plan: PlanName;
}

export interface ReactivateData {
  instanceId: string;
  /** The subscription row the customer is on now (a new one after a new checkout). */
  subscriptionId: string;
  plan: PlanName;
  /**
   * The instance is still being cancelled (a customer came back before their old subscription's cancellation ran):
   * the reactivation waits for the cancellation instead of doing nothing.
   */
  afterCancellation?: boolean;
}

/** suspend and resume. */
export interface PaymentData {
  instanceId: string;
}

/** An operator's key rotation: `emailed` is set once the customer has the new key, so a retry sends nothing twice. */
export interface RotateKeyData {
  instanceId: string;
  emailed?: boolean;
}

export interface DunningData {
  instanceId: string;
  attempt: number;
}

export interface UsageEmailData {
  instanceId: string;
  month: string;
  threshold: 80 | 100;
}

export interface AlertData {
  /** The audit row of the incident. */
  auditId: string;
  channel: 'slack' | 'email';
  /** Where in Bull Board the failed job is (no secrets: queue name and job id). */
  queue: QueueName;
  jobId: string;
}

/** A fleet job (monitor, reconcile; scheduled, or a reconcile an operator asked for): it works from the database. */
export type FleetData = Record<string, never>;

/** A rollout's coordinator: launches the canary, then each batch, and rolls back when it halts or is aborted. */
export interface RolloutData {
  rolloutId: number;
}

/** One instance of a rollout moved to its target generation ('update') or back to what it ran ('rollback'). */
export interface RolloutInstanceData {
  rolloutId: number;
  instanceId: string;
  direction: 'update' | 'rollback';
  /** Set once the service is configured and deployed: the health gate's deadline (epoch ms). */
  deadline?: number;
  polls?: number;
}

// Backups (issue 13).

/** The scheduled backup sweep: it works from the database. */
export type BackupSweepData = Record<string, never>;

/** One backup of an instance's database: scheduled by the sweep, or asked for by an operator now. */
export interface BackupData {
  instanceId: string;
  reason: 'scheduled' | 'on-demand';
}

/** A restore run (recorded before the job is added); its progress is added by the job itself as it goes. */
export interface RestoreData {
  instanceId: string;
  restoreId: string;
  /** The database provider's progress towards the fresh database, while it is not ready. */
  database?: Record<string, string | number | string[]>;
  waitingSince?: number;
  /** Set once the service was stopped to swap databases: from then on a failure swaps back. */
  swapped?: { branchId: string; databaseName: string; roleName: string };
  /** Set once the restored database serves (or will): from then on the restore only finishes, never undoes. */
  committed?: boolean;
  /** The restored database as the provider made it. */
  restored?: { branchId: string; databaseName: string; roleName: string };
  deploymentId?: string;
  /** When the restarted service must be healthy by (epoch ms), else the restore is undone. */
  deadline?: number;
  polls?: number;
}

/** Every job's data by job name, but the Stripe events' (named after the event type, see STRIPE_EVENT_JOBS). */
export interface JobData {
  'create-branch': ProvisionData;
  'create-service': ProvisionData;
  'build-workspace': ProvisionData;
  deploy: ProvisionData;
  'health-check': ProvisionData;
  'send-welcome-email': ProvisionData;
  finalize: ProvisionData;
  abandon: ProvisionData;
  cancel: LifecycleData;
  archive: LifecycleData;
  purge: LifecycleData;
  resize: ResizeData;
  reactivate: ReactivateData;
  suspend: PaymentData;
  resume: PaymentData;
  'dunning-email': DunningData;
  'rotate-key': RotateKeyData;
  'usage-email': UsageEmailData;
  'alert-slack': AlertData;
  'alert-email': AlertData;
  monitor: FleetData;
  reconcile: FleetData;
  rollout: RolloutData;
  'rollout-instance': RolloutInstanceData;
  'backup-sweep': BackupSweepData;
  backup: BackupData;
  restore: RestoreData;
}

export type JobName = keyof JobData;

/**
 * What a job's final failure means: a step's fails the instance (one incident); a lifecycle job's is an incident of
 * its own and leaves the instance's status as it is; a notice's (an email, an alert) is only logged.
 */
export type FinalFailure = 'fail-instance' | 'raise-incident' | 'log';

export const JOBS: Record<JobName, { queue: QueueName; finalFailure: FinalFailure }> = {
  'create-branch': { queue: QUEUES.database, finalFailure: 'fail-instance' },
  'create-service': { queue: QUEUES.compute, finalFailure: 'fail-instance' },
  'build-workspace': { queue: QUEUES.provision, finalFailure: 'fail-instance' },
  deploy: { queue: QUEUES.compute, finalFailure: 'fail-instance' },
  'health-check': { queue: QUEUES.provision, finalFailure: 'fail-instance' },
  'send-welcome-email': { queue: QUEUES.provision, finalFailure: 'fail-instance' },
  finalize: { queue: QUEUES.provision, finalFailure: 'fail-instance' },
  abandon: { queue: QUEUES.lifecycle, finalFailure: 'raise-incident' },
  cancel: { queue: QUEUES.lifecycle, finalFailure: 'raise-incident' },
  archive: { queue: QUEUES.lifecycle, finalFailure: 'raise-incident' },
  purge: { queue: QUEUES.lifecycle, finalFailure: 'raise-incident' },
  resize: { queue: QUEUES.lifecycle, finalFailure: 'raise-incident' },
  reactivate: { queue: QUEUES.lifecycle, finalFailure: 'raise-incident' },
  suspend: { queue: QUEUES.lifecycle, finalFailure: 'raise-incident' },
  resume: { queue: QUEUES.lifecycle, finalFailure: 'raise-incident' },
  'dunning-email': { queue: QUEUES.lifecycle, finalFailure: 'log' },
  'usage-email': { queue: QUEUES.lifecycle, finalFailure: 'log' },
  'rotate-key': { queue: QUEUES.lifecycle, finalFailure: 'raise-incident' },
  'alert-slack': { queue: QUEUES.alerts, finalFailure: 'log' },
  'alert-email': { queue: QUEUES.alerts, finalFailure: 'log' },
  // A fleet run that fails is logged; the next scheduled run starts afresh.
  monitor: { queue: QUEUES.fleet, finalFailure: 'log' },
  reconcile: { queue: QUEUES.fleet, finalFailure: 'log' },
  // A rollout's jobs record their own failures in the rollout (an instance that failed, a halt and its one alert).
  rollout: { queue: QUEUES.rollouts, finalFailure: 'log' },
  'rollout-instance': { queue: QUEUES.rollouts, finalFailure: 'log' },
  // A sweep that fails is logged (the next one starts afresh); a backup or restore that fails for good is an incident.
  'backup-sweep': { queue: QUEUES.backups, finalFailure: 'log' },
  backup: { queue: QUEUES.backups, finalFailure: 'raise-incident' },
  restore: { queue: QUEUES.backups, finalFailure: 'raise-incident' },
};

export function isJobName(name: string): name is JobName {
  return Object.hasOwn(JOBS, name);
}

// Job ids. Deterministic ids make every enqueue idempotent: adding a job whose id exists adds nothing.

/** BullMQ refuses ':' in custom job ids; ids are built from safe parts joined by '-'. */
function jobId(...parts: string[]): string {
  const id = parts.join('-');
  if (id.includes(':')) throw new Error(`job id must not contain ":" (${id})`);
  return id;
}

export const JOB_IDS = {
  /** The event id: a redelivery adds the job if it is missing and nothing if it is there. */
  stripeEvent: (eventId: string) => jobId(eventId),
  /** `<workspace>-<step>` for the first run, `<workspace>-g<n>-<step>` for a reactivation's. */
  step: (workspaceId: string, step: StepName, generation = 1) =>
    generation > 1 ? jobId(workspaceId, `g${generation}`, step) : jobId(workspaceId, step),
  abandon: (workspaceId: string) => jobId(workspaceId, 'abandon'),
  /** One per cancellation (Stripe's canceled_at), so a repeated cancellation schedules nothing twice. */
  lifecycle: (workspaceId: string, job: 'cancel' | 'archive' | 'purge', canceledAt: number) => jobId(workspaceId, job, String(canceledAt)),
  /** One per request (a Stripe event id, an admin request, a resume job). */
  resize: (workspaceId: string, requestId: string) => jobId(workspaceId, 'resize', requestId),
  reactivate: (workspaceId: string, requestId: string) => jobId(workspaceId, 'reactivate', requestId),
  /** One per generation and overdue period (when Stripe first reported the payment overdue). */
  suspend: (workspaceId: string, generation: number, pastDueSince: number) => jobId(workspaceId, 'suspend', String(generation), String(pastDueSince)),
  resume: (workspaceId: string, eventId: string) => jobId(workspaceId, 'resume', eventId),
  dunning: (workspaceId: string, eventId: string) => jobId(workspaceId, 'dunning', eventId),
  /** One per operator request. */
  rotateKey: (workspaceId: string, requestId: string) => jobId(workspaceId, 'rotate-key', requestId),
  /** One email per instance, month and threshold. */
  usageEmail: (data: UsageEmailData) => jobId('usage', data.instanceId, data.month, String(data.threshold)),
  alert: (auditId: string, channel: AlertData['channel']) => jobId('alert', auditId, channel),
  /** The job schedulers of the fleet jobs (one each, whatever the number of workers). */
  fleetScheduler: (job: 'monitor' | 'reconcile') => jobId('scheduler', job),
  /** A reconcile run an operator asked for now (one per request). */
  reconcileNow: (requestId: string) => jobId('reconcile', requestId),
  /** One coordinator per rollout; one job per instance and direction of a rollout. */
  rollout: (rolloutId: number) => jobId('rollout', String(rolloutId)),
  rolloutInstance: (data: Pick<RolloutInstanceData, 'rolloutId' | 'instanceId' | 'direction'>) =>
    jobId('rollout', String(data.rolloutId), data.direction, data.instanceId),
  /** The backup sweep's job scheduler. */
  backupScheduler: () => jobId('scheduler', 'backup-sweep'),
  /** One scheduled backup per instance and sweep slot (a repeated sweep adds nothing); one per operator request. */
  scheduledBackup: (workspaceId: string, slot: number) => jobId(workspaceId, 'backup', String(slot)),
  backupNow: (workspaceId: string, requestId: string) => jobId(workspaceId, 'backup-now', requestId),
  /** One per restore run. */
  restore: (workspaceId: string, restoreId: string) => jobId(workspaceId, 'restore', restoreId),
};
