/** Every gateway to the control plane's data and to customers' databases, on Postgres. */
import type { SecretStore } from '../secrets.ts';
import { PgArchiveRecords, type ArchiveRecords } from './archives.ts';
import { PgAuditLog, type AuditLog } from './audit.ts';
import { PgBackupRecords, type BackupRecords } from './backups.ts';
import { PgCustomerDatabases, type CustomerDatabases } from './customerDatabases.ts';
import { PgInstanceLocks, type InstanceLocks, type LockConnections } from './instanceLocks.ts';
import { PgInstanceHealth, type InstanceHealth } from './instanceHealth.ts';
import { PgInstances, type Instances } from './instances.ts';
import { PgKeyHandovers, type KeyHandovers } from './keyHandovers.ts';
import { PgAccountAccess, type AccountAccess } from './accountAccess.ts';
import type { Db } from './pool.ts';
import { PgProviderTimings, type ProviderTimings } from './providerTimings.ts';
import { PgReconciliation, type Reconciliation } from './reconciliation.ts';
import { PgStepLedger, type StepLedger } from './steps.ts';
import { PgStripeEvents, type StripeEvents } from './stripeEvents.ts';
import { PgSubscriptions, type Subscriptions } from './subscriptions.ts';
import { PgUsageNotices, type UsageNotices } from './usageNotices.ts';
import { PgFleetGenerations, type FleetGenerations } from './fleetGenerations.ts';
import { PgRollouts, type Rollouts } from './rollouts.ts';

export interface Gateways {
  instances: Instances;
  subscriptions: Subscriptions;
  steps: StepLedger;
  audit: AuditLog;
  /** What is recorded of each archive (the archive files themselves are in the archive store). */
  archiveRecords: ArchiveRecords;
  stripeEvents: StripeEvents;
  usageNotices: UsageNotices;
  locks: InstanceLocks;
  customerDbs: CustomerDatabases;
  /** How long providers took, so steps poll near when they are likely done. */
  timings: ProviderTimings;
  /** What the health monitor last saw of each active instance. */
  health: InstanceHealth;
  /** What the reconciler keeps between runs: orphans' first sightings, drift checks, reports. */
  reconciliation: Reconciliation;
  /** When a new API key was emailed and revealed on the welcome page. */
  keyHandovers: KeyHandovers;
  /** Customers' sign-in links and account sessions. */
  accountAccess: AccountAccess;
  /** Fleet settings generations: which is current, which each instance runs. */
  fleet: FleetGenerations;
  /** Rollouts and their instances. */
  rollouts: Rollouts;
  /** Every backup and restore run of customers' databases. */
  backups: BackupRecords;
}

export function pgGateways(db: Db, secrets: SecretStore, lockConnections: LockConnections): Gateways {
  return {
    instances: new PgInstances(db),
    subscriptions: new PgSubscriptions(db),
    steps: new PgStepLedger(db),
    audit: new PgAuditLog(db),
    archiveRecords: new PgArchiveRecords(db),
    stripeEvents: new PgStripeEvents(db),
    usageNotices: new PgUsageNotices(db),
    locks: new PgInstanceLocks(lockConnections),
    customerDbs: new PgCustomerDatabases(secrets),
    timings: new PgProviderTimings(db),
    health: new PgInstanceHealth(db),
    reconciliation: new PgReconciliation(db, lockConnections),
    keyHandovers: new PgKeyHandovers(db),
    accountAccess: new PgAccountAccess(db),
    fleet: new PgFleetGenerations(db, secrets.key),
    rollouts: new PgRollouts(db),
    backups: new PgBackupRecords(db),
  };
}
