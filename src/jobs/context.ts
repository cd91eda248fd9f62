/**
 * What every job handler is given: configuration, and interfaces only — the job queue, the gateways to the data
 * (src/db/) and the providers. Unit tests give handlers in-memory fakes of each (test/support/fakes.ts).
 */
import type { Job } from 'bullmq';
import type { Config } from '../config.ts';
import type { Gateways } from '../db/gateways.ts';
import type { Alerter } from '../providers/alerter.ts';
import type { ArchiveStore } from '../providers/archiveStore.ts';
import type { StripeGateway } from '../providers/stripe.ts';
import type { ComputeProvider, DatabaseProvider, Mailer } from '../providers/types.ts';
import type { JobQueue } from '../queues/jobQueue.ts';
import type { RateLimitPeriods } from '../queues/rateLimits.ts';
import type { SecretStore } from '../secrets.ts';

export interface JobContext extends Gateways {
  config: Config;
  /** Every enqueue goes through here. */
  jobs: JobQueue;
  secrets: Pick<SecretStore, 'put' | 'putIfAbsent' | 'get' | 'delete'>;
  compute: ComputeProvider;
  database: DatabaseProvider;
  mailer: Mailer;
  alerter: Pick<Alerter, 'slack' | 'mail'>;
  stripe: Pick<StripeGateway, 'subscription' | 'customer'>;
  /** The archive files (what is recorded of them is in archiveRecords). */
  archives: Pick<ArchiveStore, 'write' | 'checksum' | 'read' | 'delete'>;
  /** When each provider began answering 429 without end (shared by every process). */
  rateLimitPeriods: RateLimitPeriods;
}

/** What handlers use of their BullMQ job. */
export type JobHandle<D = unknown> = Pick<
  Job<D>,
  'id' | 'name' | 'data' | 'queueName' | 'timestamp' | 'attemptsMade' | 'opts' | 'log' | 'updateData' | 'updateProgress' | 'moveToDelayed' | 'getChildrenValues'
>;
