/** What every job handler is given: configuration, the control-plane database, queues and providers. */
import type { Config } from '../config.ts';
import type { Db } from '../db/pool.ts';
import type { Alerter } from '../providers/alerter.ts';
import type { ArchiveStore } from '../providers/archiveStore.ts';
import type { StripeGateway } from '../providers/stripe.ts';
import type { ComputeProvider, DatabaseProvider, Mailer } from '../providers/types.ts';
import type { Queues } from '../queues/connection.ts';
import type { SecretStore } from '../secrets.ts';

export interface JobContext {
  config: Config;
  db: Db;
  secrets: SecretStore;
  queues: Queues;
  compute: ComputeProvider;
  database: DatabaseProvider;
  mailer: Mailer;
  alerter: Alerter;
  stripe: StripeGateway;
  archives: ArchiveStore;
}

/** Secrets kept for an instance, by name. */
export const INSTANCE_SECRETS = {
  databaseUrl: 'database_url',
  /** The new API key, sealed until the welcome email has carried it to the customer, then deleted. */
  pendingApiKey: 'pending_api_key',
  /** Shared with the instance's runtime, which signs its calls to the control plane with it. */
  runtimeSecret: 'runtime_secret',
} as const;

export function instanceOwner(instanceId: string): string {
  return `instance/${instanceId}`;
}
