/** What every job handler is given: configuration, the control-plane database, queues and providers. */
import type { Config } from '../config.ts';
import type { Db } from '../db/pool.ts';
import type { Alerter } from '../providers/alerter.ts';
import type { ArchiveStore } from '../providers/archiveStore.ts';
import type { StripeGateway } from '../providers/stripe.ts';
import type { ComputeProvider, DatabaseProvider, Mailer } from '../providers/types.ts';
import type { Queues } from '../queues/connection.ts';
import type { JobQueue } from '../queues/jobQueue.ts';
import type { SecretStore } from '../secrets.ts';

export interface JobContext {
  config: Config;
  db: Db;
  secrets: SecretStore;
  queues: Queues;
  /** Every enqueue goes through here. */
  jobs: JobQueue;
  compute: ComputeProvider;
  database: DatabaseProvider;
  mailer: Mailer;
  alerter: Alerter;
  stripe: StripeGateway;
  archives: ArchiveStore;
}
