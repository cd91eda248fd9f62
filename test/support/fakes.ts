/**
 * In-memory fakes of everything a job handler is given (JobContext), for unit tests with no Redis, Postgres or
 * emulator. Every fake writes what it is asked to do, in order, into one shared `calls` trace, so a test can check
 * what happened and in which order; the state each keeps (instances, steps, secrets, customer databases...) lets a
 * test check where effects land and that a re-run changes nothing.
 */
import type { KeyHandovers } from '../../src/db/keyHandovers.ts';
import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import type Stripe from 'stripe';
import { loadConfig, type Config } from '../../src/config.ts';
import { ARCHIVE_FORMAT, ARCHIVED_TABLES, readArchive } from '../../core/archiveFormat.ts';
import type { ArchiveRecord, ArchiveRecords } from '../../src/db/archives.ts';
import type { BackupReason, BackupRecords, BackupRun, RestoreRun } from '../../src/db/backups.ts';
import type { AuditEntry, AuditLog, Incident } from '../../src/db/audit.ts';
import type { CustomerDatabases } from '../../src/db/customerDatabases.ts';
import type { InstanceLocks } from '../../src/db/instanceLocks.ts';
import type { InstanceFields, Instances, InstanceWithCustomer } from '../../src/db/instances.ts';
import type { StepLedger, StepRow } from '../../src/db/steps.ts';
import type { StripeEvents } from '../../src/db/stripeEvents.ts';
import type { Subscriptions } from '../../src/db/subscriptions.ts';
import type { UsageNotice, UsageNotices } from '../../src/db/usageNotices.ts';
import type { ProviderTimings, TimingSample } from '../../src/db/providerTimings.ts';
import { sightingKey, type FleetInstance, type OrphanRef, type Reconciliation, type Sighting, type StoredReport } from '../../src/db/reconciliation.ts';
import { typicalOf, type TypicalDuration } from '../../src/jobs/pollTiming.ts';
import { nextStatus, TRANSITIONS, type InstanceEvent, type TransitionRequest } from '../../src/instances/stateMachine.ts';
import { INSTANCE_SECRETS, instanceOwner } from '../../src/instances/secrets.ts';
import type { JobContext, JobHandle } from '../../src/jobs/context.ts';
import type { StoredArchive } from '../../src/providers/archiveStore.ts';
import type { CustomerSnapshot, SubscriptionSnapshot } from '../../src/providers/stripe.ts';
import type {
  ComputeProvider,
  DatabaseProgress,
  DatabaseProvider,
  DatabaseRef,
  DeploymentState,
  EnsureDatabaseResult,
  ListedDatabase,
  ListedService,
  Mailer,
  MailMessage,
  ProviderAlert,
} from '../../src/providers/types.ts';
import type { StepName } from '../../src/queues/catalogue.ts';
import type { HealthView, InstanceHealth, ListedInstance, MonitoredInstance } from '../../src/db/instanceHealth.ts';
import type { HealthRecord } from '../../src/jobs/fleet/health.ts';
import type { AccountAccess } from '../../src/db/accountAccess.ts';
import type { HeldJobs, JobQueue } from '../../src/queues/jobQueue.ts';
import { RATE_LIMIT_GAP_MS, type RateLimitPeriod, type RateLimitPeriods } from '../../src/queues/rateLimits.ts';
import type { WorkspaceFile } from '../../core/workspace/files.ts';
import type { Bootstrap, FleetGenerations, Generation } from '../../src/db/fleetGenerations.ts';
import type { Rollouts } from '../../src/db/rollouts.ts';
import { generationDigest, type FleetValues } from '../../src/fleet/settings.ts';

/** What every fake was asked to do, in order: `<fake>.<method> <argument>`. */
export type Trace = string[];

let counter = 0;
const nextId = (prefix: string) => `${prefix}-${++counter}`;

export class FakeAudit implements AuditLog {
  readonly entries: (AuditEntry & { id: string })[] = [];

  constructor(private readonly calls: Trace) {}

  async record(entry: AuditEntry): Promise<string> {
    const id = String(this.entries.length + 1);
    this.entries.push({ ...entry, id });
    this.calls.push(`audit.record ${entry.action}`);
    return id;
  }

  async recordJobIncident(instanceId: string, action: string, detail: { step: string; jobId: string; reason: string }): Promise<string | null> {
    if (this.entries.some((e) => e.instanceId === instanceId && e.action === action && (e.detail as { jobId?: string }).jobId === detail.jobId)) return null;
    return this.record({ actor: 'worker', action, instanceId, detail });
  }

  async recordIncidentOnce(
    action: string,
    key: string,
    detail: { step: string; jobId: string; title: string; reason: string },
    instanceId: string | null,
  ): Promise<string | null> {
    if (this.entries.some((e) => (e.detail as { incidentKey?: string }).incidentKey === key)) return null;
    return this.record({ actor: 'worker', action, instanceId, detail: { ...detail, incidentKey: key } });
  }

  async incident(auditId: string): Promise<Incident | undefined> {
    const entry = this.entries.find((e) => e.id === auditId);
    return entry && { action: entry.action, instanceId: entry.instanceId ?? null, detail: (entry.detail ?? {}) as Record<string, string | null> };
  }

  actions(instanceId?: string): string[] {
    return this.entries.filter((e) => instanceId === undefined || e.instanceId === instanceId).map((e) => e.action);
  }
}

export class FakeInstances implements Instances {
  readonly rows = new Map<string, InstanceWithCustomer>();

  constructor(
    private readonly calls: Trace,
    private readonly audit: FakeAudit,
  ) {}

  /** An instance as the flow leaves it (override any column). */
  add(fields: Partial<InstanceWithCustomer> = {}): InstanceWithCustomer {
    const id = fields.id ?? nextId('inst');
    const workspace = fields.workspace_id ?? `ws-${id}`;
    const row: InstanceWithCustomer = {
      id,
      subscription_id: `subrow-${id}`,
      customer_id: `cust-${id}`,
      workspace_id: workspace,
      plan: 'starter',
      status: 'active',
      compute_provider: 'local',
      database_provider: 'local',
      service_id: null,
      service_requested_at: null,
      access_url: null,
      branch_id: null,
      database_name: null,
      database_role: null,
      api_key_hash: null,
      api_key_label: null,
      failed_step: null,
      failed_job: null,
      failure_reason: null,
      provision_started_at: new Date(Date.now() - 60_000),
      active_at: null,
      cancelled_at: null,
      archive_at: null,
      purge_at: null,
      archived_at: null,
      purged_at: null,
      generation: 1,
      past_due_since: null,
      cancel_requested_at: null,
      email: 'ada@example.com',
      customer_name: 'Ada',
      stripe_customer_id: `cus_${id}`,
      stripe_subscription_id: `sub_${id}`,
      ...fields,
    };
    this.rows.set(id, row);
    return { ...row };
  }

  get(id: string): InstanceWithCustomer {
    const row = this.rows.get(id);
    if (!row) throw new Error(`no instance ${id}`);
    return row;
  }

  async byId(id: string): Promise<InstanceWithCustomer | undefined> {
    const row = this.rows.get(id);
    return row && { ...row };
  }

  async forSubscription(subscriptionRef: string): Promise<InstanceWithCustomer | undefined> {
    return [...this.rows.values()].find((r) => r.stripe_subscription_id === subscriptionRef);
  }

  async forCustomer(customerRef: string): Promise<InstanceWithCustomer | undefined> {
    return [...this.rows.values()].reverse().find((r) => r.customer_id === customerRef || r.stripe_customer_id === customerRef);
  }

  async endedForStripeCustomer(stripeCustomerId: string): Promise<InstanceWithCustomer | undefined> {
    return [...this.rows.values()].reverse().find((r) => r.stripe_customer_id === stripeCustomerId && ['cancelled', 'archived', 'purged'].includes(r.status));
  }

  async liveForStripeCustomer(stripeCustomerId: string, exceptSubscriptionRef: string): Promise<InstanceWithCustomer[]> {
    return [...this.rows.values()]
      .reverse()
      .filter((r) => r.stripe_customer_id === stripeCustomerId && r.stripe_subscription_id !== exceptSubscriptionRef && !['cancelled', 'archived', 'purged', 'abandoned'].includes(r.status));
  }

  async idOfWorkspace(workspaceId: string): Promise<string | undefined> {
    return [...this.rows.values()].find((r) => r.workspace_id === workspaceId)?.id;
  }

  async record(): Promise<InstanceWithCustomer> {
    throw new Error('FakeInstances.record is not faked');
  }

  async update(id: string, fields: InstanceFields): Promise<void> {
    this.calls.push(`instances.update ${Object.keys(fields).join(',')}`);
    Object.assign(this.get(id), fields);
  }

  async recordKeyRotation(id: string, key: { hash: string; label: string }, audit: { actor: string; detail: object }): Promise<string | null> {
    this.calls.push('instances.recordKeyRotation');
    const row = this.get(id);
    if (row.api_key_hash === key.hash) return null;
    Object.assign(row, { api_key_hash: key.hash, api_key_label: key.label });
    return this.audit.record({ actor: audit.actor, action: 'api_key.rotated', customerId: row.customer_id, instanceId: id, detail: { ...audit.detail, label: key.label } });
  }

  /** As the state machine's transition(): checked against the same table, with its audit row. */
  async transition(id: string, event: InstanceEvent, request: TransitionRequest) {
    const row = this.get(id);
    const to = nextStatus(id, row.status, event);
    if (to === null) return null;
    const columns = row as unknown as Record<string, unknown>;
    if (!Object.entries(request.when ?? {}).every(([column, value]) => (columns[column] ?? null) === value)) return null;
    const from = row.status;
    Object.assign(row, request.set ?? {}, { status: to });
    this.calls.push(`instances.transition ${event}`);
    const auditId = await this.audit.record({ actor: request.actor, action: TRANSITIONS[event].action, customerId: row.customer_id, instanceId: id, detail: request.detail });
    return { from, to, customerId: row.customer_id, auditId };
  }

  async markPastDue(id: string): Promise<Date> {
    const row = this.get(id);
    row.past_due_since ??= new Date();
    return row.past_due_since;
  }

  async clearPastDue(id: string): Promise<void> {
    this.get(id).past_due_since = null;
  }
}

export class FakeSubscriptions implements Subscriptions {
  constructor(
    private readonly calls: Trace,
    private readonly instances: FakeInstances,
  ) {}

  async record(): Promise<{ customerId: string; subscriptionId: string }> {
    return { customerId: nextId('cust'), subscriptionId: nextId('subrow') };
  }

  async setStatus(stripeSubscriptionId: string, status: string): Promise<void> {
    this.calls.push(`subscriptions.setStatus ${stripeSubscriptionId} ${status}`);
  }

  async setPlan(subscriptionId: string, plan: string): Promise<void> {
    this.calls.push(`subscriptions.setPlan ${plan}`);
  }

  async setContact(customerId: string, email: string, name: string | null): Promise<void> {
    this.calls.push(`subscriptions.setContact ${customerId}`);
    for (const row of this.instances.rows.values()) {
      if (row.customer_id === customerId) Object.assign(row, { email, customer_name: name ?? row.customer_name });
    }
  }

  async forgetCustomer(customerId: string, purgedInstanceId: string): Promise<boolean> {
    this.calls.push(`subscriptions.forgetCustomer ${customerId}`);
    const rows = [...this.instances.rows.values()].filter((row) => row.customer_id === customerId);
    if (rows.some((row) => row.id !== purgedInstanceId && row.status !== 'purged')) return false;
    for (const row of rows) Object.assign(row, { email: null, customer_name: null });
    return true;
  }
}

export class FakeSteps implements StepLedger {
  readonly rows = new Map<string, { state: string; attempts: number; error: string | null; result: object | null; started: number; finished: number | null }>();

  constructor(private readonly calls: Trace) {}

  of(instanceId: string, step: string) {
    return this.rows.get(`${instanceId}/${step}`);
  }

  private row(instanceId: string, step: string) {
    const key = `${instanceId}/${step}`;
    let row = this.rows.get(key);
    if (!row) this.rows.set(key, (row = { state: 'pending', attempts: 0, error: null, result: null, started: Date.now(), finished: null }));
    return row;
  }

  async started(instanceId: string, step: string, attempt: number): Promise<void> {
    this.calls.push(`steps.started ${step}`);
    Object.assign(this.row(instanceId, step), { state: 'running', attempts: attempt, error: null, finished: null });
  }

  async retrying(instanceId: string, step: string, error: string): Promise<void> {
    this.calls.push(`steps.retrying ${step}`);
    this.row(instanceId, step).error = error;
  }

  async waiting(instanceId: string, step: string, run?: { attempt: number; startedAt: Date }): Promise<void> {
    this.calls.push(`steps.waiting ${step}`);
    Object.assign(this.row(instanceId, step), { state: 'waiting', ...(run && { attempts: run.attempt, error: null, finished: null }) });
  }

  async completed(instanceId: string, step: string, result: object, run?: { attempt: number; startedAt: Date }): Promise<void> {
    this.calls.push(`steps.completed ${step}`);
    Object.assign(this.row(instanceId, step), { state: 'completed', result, finished: Date.now(), ...(run && { attempts: run.attempt, error: null }) });
  }

  async failed(instanceId: string, step: string, reason: string): Promise<void> {
    this.calls.push(`steps.failed ${step}`);
    Object.assign(this.row(instanceId, step), { state: 'failed', error: reason, finished: Date.now() });
  }

  async otherFailed(instanceId: string, step: string) {
    for (const [key, row] of this.rows) {
      const [id, name] = key.split('/') as [string, string];
      if (id === instanceId && name !== step && row.state === 'failed') return { name: name as StepName, error: row.error };
    }
    return undefined;
  }

  async timings(instanceId: string): Promise<Record<string, number>> {
    const done = [...this.rows].filter(([key, row]) => key.startsWith(`${instanceId}/`) && row.finished !== null);
    return Object.fromEntries(done.map(([key, row]) => [key.split('/')[1]!, row.finished! - row.started]));
  }

  async list(): Promise<StepRow[]> {
    return [];
  }
}

export class FakeArchiveRecords implements ArchiveRecords {
  readonly rows = new Map<string, ArchiveRecord & { verified: boolean; deleted: boolean }>();

  constructor(private readonly calls: Trace) {}

  async current(instanceId: string): Promise<ArchiveRecord | undefined> {
    const row = this.rows.get(instanceId);
    return row && !row.deleted ? { location: row.location, sizeBytes: row.sizeBytes, sha256: row.sha256, rowCounts: row.rowCounts } : undefined;
  }

  async save(instanceId: string, record: ArchiveRecord): Promise<void> {
    this.calls.push(`archiveRecords.save ${record.location}`);
    this.rows.set(instanceId, { ...record, verified: false, deleted: false });
  }

  async markVerified(instanceId: string): Promise<void> {
    this.calls.push('archiveRecords.markVerified');
    this.rows.get(instanceId)!.verified = true;
  }

  async markDeleted(instanceId: string): Promise<void> {
    this.calls.push('archiveRecords.markDeleted');
    const row = this.rows.get(instanceId);
    if (row) row.deleted = true;
  }
}

export class FakeStripeEvents implements StripeEvents {
  readonly payloads = new Map<string, Stripe.Event>();

  constructor(private readonly calls: Trace) {}

  async record(): Promise<boolean> {
    return true;
  }

  async payload(eventId: string): Promise<Stripe.Event | undefined> {
    return this.payloads.get(eventId) as Stripe.Event | undefined;
  }

  async markFailureAlerted(): Promise<undefined> {
    return undefined;
  }

  async scrubCustomer(stripeCustomerId: string): Promise<number> {
    this.calls.push(`stripeEvents.scrubCustomer ${stripeCustomerId}`);
    return 2;
  }
}

export class FakeUsageNotices implements UsageNotices {
  readonly notices = new Map<string, UsageNotice>();

  async record(instanceId: string, notice: UsageNotice): Promise<boolean> {
    const key = `${instanceId}/${notice.month}/${notice.threshold}`;
    if (this.notices.has(key)) return false;
    this.notices.set(key, notice);
    return true;
  }

  async find(instanceId: string, month: string, threshold: number): Promise<UsageNotice | undefined> {
    return this.notices.get(`${instanceId}/${month}/${threshold}`);
  }
}

export class FakeTimings implements ProviderTimings {
  readonly samples = new Map<string, TimingSample[]>();

  async record(kind: string, sample: TimingSample): Promise<void> {
    this.samples.set(kind, [...(this.samples.get(kind) ?? []), sample]);
  }

  async typical(kind: string): Promise<TypicalDuration | null> {
    const samples = this.samples.get(kind) ?? [];
    if (!samples.length) return null;
    return typicalOf(Math.max(...samples.map((s) => s.pendingMs)), Math.min(...samples.map((s) => s.readyMs)));
  }
}

export class FakeLocks implements InstanceLocks {
  /** Instances whose lock another job holds. */
  readonly held = new Set<string>();
  /** Instances whose lock steps hold shared (as many as run), with how many. */
  readonly shared = new Map<string, number>();

  async withLock<T>(instanceId: string, work: () => Promise<T>, options: { shared?: boolean } = {}): Promise<{ ran: true; value: T } | { ran: false }> {
    if (this.held.has(instanceId) || (!options.shared && this.shared.has(instanceId))) return { ran: false };
    if (options.shared) this.shared.set(instanceId, (this.shared.get(instanceId) ?? 0) + 1);
    else this.held.add(instanceId);
    try {
      return { ran: true, value: await work() };
    } finally {
      if (!options.shared) this.held.delete(instanceId);
      else if (this.shared.get(instanceId) === 1) this.shared.delete(instanceId);
      else this.shared.set(instanceId, this.shared.get(instanceId)! - 1);
    }
  }
}

/** The reconciler's memory, in memory: sightings can be aged by a test (`age`), the lock held (`locked`). */
export class FakeReconciliation implements Reconciliation {
  readonly seen = new Map<string, { firstSeenAt: Date }>();
  readonly checked = new Map<string, Date>();
  readonly reports: StoredReport[] = [];
  locked = false;

  constructor(
    private readonly calls: Trace,
    private readonly instances: FakeInstances,
  ) {}

  async fleet(): Promise<FleetInstance[]> {
    return [...this.instances.rows.values()].map((i) => ({
      id: i.id,
      customer_id: i.customer_id,
      workspace_id: i.workspace_id,
      status: i.status,
      plan: i.plan,
      generation: i.generation,
      compute_provider: i.compute_provider,
      database_provider: i.database_provider,
      service_id: i.service_id,
      branch_id: i.branch_id,
      access_url: i.access_url,
      drift_checked_at: this.checked.get(i.id) ?? null,
    }));
  }

  async sighted(orphans: OrphanRef[]): Promise<Map<string, Sighting>> {
    const keys = new Set(orphans.map(sightingKey));
    for (const key of this.seen.keys()) if (!keys.has(key)) this.seen.delete(key);
    for (const key of keys) if (!this.seen.has(key)) this.seen.set(key, { firstSeenAt: new Date() });
    return this.sightings(orphans);
  }

  async sightings(orphans: OrphanRef[]): Promise<Map<string, Sighting>> {
    const out = new Map<string, Sighting>();
    for (const key of orphans.map(sightingKey)) {
      const seen = this.seen.get(key);
      if (seen) out.set(key, { firstSeenAt: seen.firstSeenAt, ageMs: Date.now() - seen.firstSeenAt.getTime() });
    }
    return out;
  }

  /** Every sighting kept is `ms` older. */
  age(ms: number): void {
    for (const seen of this.seen.values()) seen.firstSeenAt = new Date(seen.firstSeenAt.getTime() - ms);
  }

  async forget(orphan: OrphanRef): Promise<void> {
    this.calls.push(`reconciliation.forget ${orphan.id}`);
    this.seen.delete(sightingKey(orphan));
  }

  async driftChecked(instanceIds: string[]): Promise<void> {
    for (const id of instanceIds) this.checked.set(id, new Date());
  }

  async saveReport(report: StoredReport): Promise<void> {
    this.reports.push(report);
  }

  async lastReport(): Promise<StoredReport | undefined> {
    return this.reports.at(-1);
  }

  async exclusive<T>(work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    if (this.locked) return { ran: false };
    this.locked = true;
    try {
      return { ran: true, value: await work() };
    } finally {
      this.locked = false;
    }
  }
}

export class FakeSecrets {
  readonly values = new Map<string, string>();

  constructor(private readonly calls: Trace) {}

  async put(owner: string, name: string, value: string): Promise<void> {
    this.calls.push(`secrets.put ${name}`);
    this.values.set(`${owner}/${name}`, value);
  }

  async putIfAbsent(owner: string, name: string, value: string): Promise<string> {
    const key = `${owner}/${name}`;
    if (!this.values.has(key)) {
      this.calls.push(`secrets.put ${name}`);
      this.values.set(key, value);
    }
    return this.values.get(key)!;
  }

  async get(owner: string, name: string): Promise<string | null> {
    return this.values.get(`${owner}/${name}`) ?? null;
  }

  async delete(owner: string, name: string): Promise<void> {
    this.calls.push(`secrets.delete ${name}`);
    this.values.delete(`${owner}/${name}`);
  }
}

/** A customer's database as the fake keeps it. */
export interface FakeCustomerDb {
  schema: boolean;
  files: Map<string, string>;
  keys: { hash: string; label: string | null; revoked: boolean }[];
  suspendedReason: string | null;
  /** Rows by table, what an export writes into the archive. */
  rows: Record<string, object[]>;
}

/** Customers' databases, reachable (as the real gateway) only while their connection URL is in the secret store. */
export class FakeCustomerDbs implements CustomerDatabases {
  readonly dbs = new Map<string, FakeCustomerDb>();

  constructor(
    private readonly calls: Trace,
    private readonly secrets: FakeSecrets,
  ) {}

  /** A database for the instance, with its connection URL stored as create-branch leaves it. */
  async give(instanceId: string, rows: Record<string, object[]> = {}): Promise<FakeCustomerDb> {
    await this.secrets.put(instanceOwner(instanceId), INSTANCE_SECRETS.databaseUrl, `postgres://claw@db/${instanceId}`);
    return this.db(`postgres://claw@db/${instanceId}`, rows);
  }

  private db(url: string, rows: Record<string, object[]> = {}): FakeCustomerDb {
    let db = this.dbs.get(url);
    if (!db) this.dbs.set(url, (db = { schema: false, files: new Map(), keys: [], suspendedReason: null, rows }));
    return db;
  }

  private async open(instanceId: string): Promise<FakeCustomerDb> {
    return this.db(await this.connectionUrl(instanceId));
  }

  async register(instanceId: string, connectionUrl: string): Promise<void> {
    this.calls.push('customerDbs.register');
    await this.secrets.put(instanceOwner(instanceId), INSTANCE_SECRETS.databaseUrl, connectionUrl);
  }

  async exists(instanceId: string): Promise<boolean> {
    return (await this.secrets.get(instanceOwner(instanceId), INSTANCE_SECRETS.databaseUrl)) !== null;
  }

  async connectionUrl(instanceId: string): Promise<string> {
    const url = await this.secrets.get(instanceOwner(instanceId), INSTANCE_SECRETS.databaseUrl);
    if (!url) throw new Error('no database connection for this instance: create-branch has not completed');
    return url;
  }

  async seedWorkspace(instanceId: string, files: WorkspaceFile[], key: { hash: string; label: string | null }): Promise<void> {
    this.calls.push('customerDbs.seedWorkspace');
    const db = await this.open(instanceId);
    db.schema = true;
    for (const file of files) if (!db.files.has(file.path)) db.files.set(file.path, file.content);
    if (!db.keys.some((k) => k.hash === key.hash)) db.keys.push({ ...key, revoked: false });
  }

  async updateWorkspace(instanceId: string, files: { add: WorkspaceFile[]; replace: WorkspaceFile[] }): Promise<void> {
    this.calls.push('customerDbs.updateWorkspace');
    const db = await this.open(instanceId);
    for (const file of files.add) if (!db.files.has(file.path)) db.files.set(file.path, file.content);
    for (const file of files.replace) db.files.set(file.path, file.content);
  }

  async monthMessages(): Promise<number> {
    return 0;
  }

  async replaceKeys(instanceId: string, key: { hash: string; label: string }): Promise<void> {
    this.calls.push('customerDbs.replaceKeys');
    const db = await this.open(instanceId);
    if (!db.keys.some((k) => k.hash === key.hash)) db.keys.push({ ...key, revoked: false });
    for (const k of db.keys) if (k.hash !== key.hash) k.revoked = true;
  }

  async revokeKeys(instanceId: string): Promise<void> {
    this.calls.push('customerDbs.revokeKeys');
    if (!(await this.exists(instanceId))) return;
    for (const key of (await this.open(instanceId)).keys) key.revoked = true;
  }

  async setSuspension(instanceId: string, reason: string | null): Promise<void> {
    this.calls.push(`customerDbs.setSuspension ${reason === null ? 'lifted' : 'set'}`);
    (await this.open(instanceId)).suspendedReason = reason;
  }

  async exportArchive(instanceId: string, workspaceId: string, write: (stream: Readable) => Promise<StoredArchive>) {
    this.calls.push('customerDbs.exportArchive');
    const db = await this.open(instanceId);
    const rowCounts = Object.fromEntries(ARCHIVED_TABLES.map((table) => [table, (db.rows[table] ?? []).length]));
    const stored = await write(archiveStream(workspaceId, db.rows));
    return { ...stored, rowCounts };
  }

  async restoreArchive(instanceId: string, source: () => Readable): Promise<Record<string, number> | undefined> {
    this.calls.push('customerDbs.restoreArchive');
    const db = await this.open(instanceId);
    db.schema = true;
    if (db.files.size) return undefined;
    return readArchive(source(), async (table, row) => {
      (db.rows[table] ??= []).push(row);
      if (table === 'workspace_files') db.files.set(String(row.path), String(row.content));
    });
  }

  async loadRestore(_instanceId: string, targetUrl: string, source: () => Readable): Promise<Record<string, number> | undefined> {
    this.calls.push(`customerDbs.loadRestore ${targetUrl}`);
    return readArchive(source());
  }
}

/** An archive in the real format (gzip-compressed JSON lines) of the given rows. */
export function archiveStream(workspaceId: string, rows: Record<string, object[]>): Readable {
  const lines = [JSON.stringify({ format: ARCHIVE_FORMAT, version: 1, workspaceId, exportedAt: new Date().toISOString() })];
  const rowCounts: Record<string, number> = {};
  for (const table of ARCHIVED_TABLES) {
    rowCounts[table] = (rows[table] ?? []).length;
    for (const row of rows[table] ?? []) lines.push(JSON.stringify({ table, row }));
  }
  lines.push(JSON.stringify({ end: true, rowCounts }));
  return Readable.from([lines.join('\n') + '\n']).pipe(createGzip());
}

export class FakeArchiveStore {
  readonly files = new Map<string, Buffer>();

  constructor(private readonly calls: Trace) {}

  async write(name: string, source: Readable): Promise<StoredArchive> {
    this.calls.push(`archives.write ${name}`);
    const chunks: Buffer[] = [];
    for await (const chunk of source) chunks.push(chunk as Buffer);
    const bytes = Buffer.concat(chunks);
    this.files.set(name, bytes);
    return { location: name, sizeBytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  }

  async checksum(name: string): Promise<Omit<StoredArchive, 'location'>> {
    const bytes = this.files.get(name);
    if (!bytes) throw new Error(`ENOENT: no archive ${name}`);
    return { sizeBytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  }

  read(name: string): Readable {
    const bytes = this.files.get(name);
    if (!bytes) throw new Error(`ENOENT: no archive ${name}`);
    return Readable.from([bytes]);
  }

  async delete(name: string): Promise<void> {
    this.calls.push(`archives.delete ${name}`);
    this.files.delete(name);
  }
}

export class FakeJobQueue implements JobQueue {
  /** Steps of the instance's flow that are running now (removeProvisionFlow then removes nothing). */
  running: string[] = [];
  readonly added: { name: string; args: unknown[] }[] = [];

  constructor(private readonly calls: Trace) {}

  private add(name: string, ...args: unknown[]): Promise<void> {
    this.added.push({ name, args });
    this.calls.push(`jobs.${name}`);
    return Promise.resolve();
  }

  addProvisionFlow = (...args: unknown[]) => this.add('addProvisionFlow', ...args);
  addStripeEvent = (...args: unknown[]) => this.add('addStripeEvent', ...args);
  addCancel = (...args: unknown[]) => this.add('addCancel', ...args);
  addArchiveAndPurge = (...args: unknown[]) => this.add('addArchiveAndPurge', ...args);
  removeArchiveAndPurge = (...args: unknown[]) => this.add('removeArchiveAndPurge', ...args);
  addResize = (...args: unknown[]) => this.add('addResize', ...args);
  addReactivate = (...args: unknown[]) => this.add('addReactivate', ...args);
  addSuspend = (...args: unknown[]) => this.add('addSuspend', ...args);
  addResume = (...args: unknown[]) => this.add('addResume', ...args);
  addDunningEmail = (...args: unknown[]) => this.add('addDunningEmail', ...args);
  addUsageEmail = (...args: unknown[]) => this.add('addUsageEmail', ...args);
  addAlerts = (...args: unknown[]) => this.add('addAlerts', ...args);
  addAbandon = (...args: unknown[]) => this.add('addAbandon', ...args);
  pause = (...args: unknown[]) => this.add('pause', ...args);
  scheduleFleet = (...args: unknown[]) => this.add('scheduleFleet', ...args);

  async addRotateKey(instance: { workspace_id: string }, requestId: string): Promise<string> {
    await this.add('addRotateKey', instance, requestId);
    return `${instance.workspace_id}-rotate-key-${requestId}`;
  }

  async addReconcile(requestId: string): Promise<string> {
    await this.add('addReconcile', requestId);
    return `reconcile-${requestId}`;
  }

  async addRollout(rolloutId: number): Promise<string> {
    await this.add('addRollout', rolloutId);
    return `rollout-${rolloutId}`;
  }

  addRolloutInstance = (...args: unknown[]) => this.add('addRolloutInstance', ...args);
  scheduleBackups = (...args: unknown[]) => this.add('scheduleBackups', ...args);
  addScheduledBackups = (...args: unknown[]) => this.add('addScheduledBackups', ...args);

  async addBackupNow(instance: { workspace_id: string }, requestId: string): Promise<string> {
    await this.add('addBackupNow', instance, requestId);
    return `${instance.workspace_id}-backup-now-${requestId}`;
  }

  async addRestore(instance: { workspace_id: string }, restoreId: string): Promise<string> {
    await this.add('addRestore', instance, restoreId);
    return `${instance.workspace_id}-restore-${restoreId}`;
  }

  /** What heldJobs answers. */
  held: HeldJobs = { waiting: 0, delayed: 0, active: 1, ids: [] };

  async heldJobs(): Promise<HeldJobs> {
    return this.held;
  }

  async retryFailed(): Promise<boolean> {
    return false;
  }

  async removeProvisionFlow(): Promise<{ running: string[] }> {
    this.calls.push(this.running.length ? `jobs.removeProvisionFlow (running ${this.running.join(',')})` : 'jobs.removeProvisionFlow');
    return { running: [...this.running] };
  }

  /** The arguments of each call of one helper. */
  of(name: string): unknown[][] {
    return this.added.filter((a) => a.name === name).map((a) => a.args);
  }
}

/** Rate-limit periods as the Redis ones keep them, in memory. */
export class FakeRateLimitPeriods implements RateLimitPeriods {
  readonly periods = new Map<string, { since: number; until: number; alerted: boolean }>();

  async limited(provider: string, at: number, retryAfterMs: number): Promise<RateLimitPeriod> {
    const until = at + retryAfterMs + RATE_LIMIT_GAP_MS;
    let period = this.periods.get(provider);
    if (!period || at > period.until) this.periods.set(provider, (period = { since: at, until, alerted: false }));
    else period.until = Math.max(period.until, until);
    return { since: period.since, alerted: period.alerted };
  }

  async alerted(provider: string, since: number): Promise<void> {
    const period = this.periods.get(provider);
    if (period?.since === since) period.alerted = true;
  }

  async answered(at: ReadonlyMap<string, number>): Promise<void> {
    for (const [provider, ms] of at) if ((this.periods.get(provider)?.since ?? Infinity) <= ms) this.periods.delete(provider);
  }
}

export class FakeCompute implements ComputeProvider {
  readonly kind = 'fake';
  readonly services = new Map<string, { variables: Record<string, string>; limits?: object; deployments: string[]; running: boolean }>();
  /** What deploymentState answers. */
  deploymentStates = new Map<string, DeploymentState>();
  latest: { deploymentId: string; createdAt: Date } | null = null;

  constructor(private readonly calls: Trace) {}

  private service(id: string) {
    let service = this.services.get(id);
    if (!service) this.services.set(id, (service = { variables: {}, deployments: [], running: false }));
    return service;
  }

  async createService(name: string, options: { mayExist?: boolean } = {}) {
    this.calls.push(`compute.createService ${name}${options.mayExist ? ' (may exist)' : ''}`);
    const created = !this.services.has(name);
    this.service(name);
    return { serviceId: name, created };
  }

  async accessUrl(serviceId: string, options: { fresh?: boolean } = {}) {
    this.calls.push(`compute.accessUrl ${serviceId}${options.fresh ? ' (fresh)' : ''}`);
    return `http://${serviceId}.test`;
  }

  async configure(serviceId: string, settings: { variables: Record<string, string>; limits: object }): Promise<void> {
    this.calls.push(`compute.configure ${serviceId}`);
    Object.assign(this.service(serviceId).variables, settings.variables);
    this.service(serviceId).limits = settings.limits;
  }

  async deploy(serviceId: string) {
    const deploymentId = nextId('dep');
    this.calls.push(`compute.deploy ${serviceId}`);
    const service = this.service(serviceId);
    service.deployments.push(deploymentId);
    service.running = true;
    this.latest = { deploymentId, createdAt: new Date() };
    return { deploymentId };
  }

  async deploymentState(_serviceId: string, deploymentId: string) {
    return { state: this.deploymentStates.get(deploymentId) ?? ('in_progress' as DeploymentState) };
  }

  async latestDeployment() {
    return this.latest;
  }

  async stop(serviceId: string): Promise<void> {
    this.calls.push(`compute.stop ${serviceId}`);
    this.service(serviceId).running = false;
  }

  async deleteService(serviceId: string): Promise<void> {
    this.calls.push(`compute.deleteService ${serviceId}`);
    this.services.delete(serviceId);
  }

  readonly serviceStateIsCheap = true;

  async serviceState(serviceId: string) {
    const running = this.services.get(serviceId)?.running ?? false;
    return { running, detail: running ? 'running' : 'not running' };
  }

  async restart(serviceId: string) {
    this.calls.push(`compute.restart ${serviceId}`);
    this.service(serviceId).running = true;
    return { action: 'restarted' };
  }

  async listServices(): Promise<ListedService[]> {
    this.calls.push('compute.listServices');
    return [...this.services.keys()].map((id) => ({ serviceId: id, name: id }));
  }

  async readSettings(serviceId: string) {
    const service = this.services.get(serviceId);
    if (!service) return null;
    const limits = service.limits as { cpu?: number; memoryMb?: number } | undefined;
    return { variables: { ...service.variables }, limits: limits?.cpu !== undefined ? { cpu: limits.cpu, memoryMb: limits.memoryMb! } : null };
  }

  async close(): Promise<void> {}
}

export class FakeDatabaseProvider implements DatabaseProvider {
  readonly kind = 'fake';
  /** How many calls answer pending before the database is ready. */
  pendingPolls = 0;
  /** Alerts every answer carries (as the Neon provider hands back its capacity alerts until they are saved). */
  alerts: ProviderAlert[] = [];
  readonly deleted: DatabaseRef[] = [];
  /** The databases it holds, by branch id (what ensureDatabase made, and what a test adds). */
  readonly databases = new Map<string, ListedDatabase>();

  constructor(private readonly calls: Trace) {}

  async ensureDatabase(name: string, progress?: DatabaseProgress): Promise<EnsureDatabaseResult> {
    this.calls.push(`database.ensureDatabase ${name}`);
    if (this.pendingPolls > 0) {
      this.pendingPolls--;
      return { pending: { operation: 'op-1', ...progress }, retryInMs: 500, detail: 'branch creating', ...(this.alerts.length ? { alerts: this.alerts } : {}) };
    }
    this.databases.set(`br-${name}`, { branchId: `br-${name}`, databaseName: name, roleName: name, name, missing: [] });
    return {
      ready: { branchId: `br-${name}`, databaseName: name, roleName: name, connectionUrl: `postgres://${name}@db/${name}` },
      ...(this.alerts.length ? { alerts: this.alerts } : {}),
    };
  }

  async deleteDatabase(ref: DatabaseRef): Promise<void> {
    this.calls.push(`database.deleteDatabase ${ref.databaseName}`);
    this.deleted.push(ref);
    this.databases.delete(ref.branchId);
  }

  async listDatabases(): Promise<ListedDatabase[]> {
    this.calls.push('database.listDatabases');
    return [...this.databases.values()];
  }

  async close(): Promise<void> {}
}

export class FakeMailer implements Mailer {
  readonly sent: MailMessage[] = [];

  constructor(private readonly calls: Trace) {}

  async send(message: MailMessage): Promise<void> {
    this.calls.push(`mailer.send ${message.subject}`);
    this.sent.push(message);
  }

  close(): void {}
}

export class FakeStripe {
  readonly subscriptions = new Map<string, SubscriptionSnapshot>();

  /** Stripe's subscription of an instance, as it is now. */
  set(id: string, status: string, priceId: string | null = null): void {
    this.subscriptions.set(id, { id, customerId: 'cus_x', status, priceId, canceledAt: null });
  }

  async subscription(id: string): Promise<SubscriptionSnapshot> {
    const subscription = this.subscriptions.get(id);
    if (!subscription) throw new Error(`no subscription ${id}`);
    return subscription;
  }

  async customer(id: string): Promise<CustomerSnapshot> {
    return { id, email: null, name: null };
  }
}

/** Key handovers in memory: when each instance's key was emailed and revealed. */
export class FakeKeyHandovers implements KeyHandovers {
  readonly rows = new Map<string, { emailedAt: Date | null; revealedAt: Date | null }>();

  private row(instanceId: string) {
    const row = this.rows.get(instanceId) ?? { emailedAt: null, revealedAt: null };
    this.rows.set(instanceId, row);
    return row;
  }

  async emailed(instanceId: string): Promise<{ revealed: boolean }> {
    const row = this.row(instanceId);
    row.emailedAt ??= new Date();
    return { revealed: row.revealedAt !== null };
  }

  async claimReveal(instanceId: string): Promise<{ emailed: boolean } | null> {
    const row = this.row(instanceId);
    if (row.revealedAt) return null;
    row.revealedAt = new Date();
    return { emailed: row.emailedAt !== null };
  }

  async forget(instanceId: string): Promise<void> {
    this.rows.delete(instanceId);
  }

  async state(instanceId: string): Promise<{ emailed: boolean; revealed: boolean } | null> {
    const row = this.rows.get(instanceId);
    return row ? { emailed: row.emailedAt !== null, revealed: row.revealedAt !== null } : null;
  }

  async deleteFinishedKeys(): Promise<string[]> {
    return []; // the sweep is tested on Postgres
  }
}

/** The monitor's health records, in memory (the monitor itself is tested end to end on Postgres). */
export class FakeHealth implements InstanceHealth {
  readonly records = new Map<string, HealthRecord>();
  async activePage(): Promise<MonitoredInstance[]> {
    return [];
  }
  async save(records: { instanceId: string; health: HealthRecord }[]): Promise<void> {
    for (const r of records) this.records.set(r.instanceId, r.health);
  }
  async forgetInactive(): Promise<number> {
    return 0;
  }
  async view(): Promise<HealthView | null> {
    return null;
  }
  async list(): Promise<{ instances: ListedInstance[]; next: null }> {
    return { instances: [], next: null };
  }
  async clearCrashLoop(): Promise<boolean> {
    return false;
  }
  async exclusively<T>(fn: () => Promise<T>): Promise<T | null> {
    return fn();
  }
}

/** The account pages' access tokens: no job uses them (they are tested on Postgres and end to end). */
export class FakeAccountAccess implements AccountAccess {
  async customerByEmail(): Promise<undefined> {
    return undefined;
  }
  async createSignInLink(): Promise<string | null> {
    throw new Error('not used by jobs');
  }
  async redeemSignInLink(): Promise<undefined> {
    return undefined;
  }
  async createSession(): Promise<string> {
    throw new Error('not used by jobs');
  }
  async sessionCustomer(): Promise<undefined> {
    return undefined;
  }
  async endSession(): Promise<void> {}
  async forgetExpired(): Promise<number> {
    return 0;
  }
}

export interface Fakes {
  ctx: JobContext;
  calls: Trace;
  config: Config;
  instances: FakeInstances;
  subscriptions: FakeSubscriptions;
  steps: FakeSteps;
  audit: FakeAudit;
  archiveRecords: FakeArchiveRecords;
  stripeEvents: FakeStripeEvents;
  usageNotices: FakeUsageNotices;
  timings: FakeTimings;
  health: FakeHealth;
  locks: FakeLocks;
  reconciliation: FakeReconciliation;
  keyHandovers: FakeKeyHandovers;
  secrets: FakeSecrets;
  customerDbs: FakeCustomerDbs;
  archives: FakeArchiveStore;
  jobs: FakeJobQueue;
  compute: FakeCompute;
  database: FakeDatabaseProvider;
  mailer: FakeMailer;
  stripe: FakeStripe;
  rateLimitPeriods: FakeRateLimitPeriods;
  fleet: FakeFleetGenerations;
  rollouts: FakeRollouts;
  backups: FakeBackupRecords;
}

/** Fleet generations in memory, digests as Postgres keeps them (the secrets are kept in clear here). */
export class FakeFleetGenerations implements FleetGenerations {
  readonly generations: Generation[] = [];
  currentId: number | null = null;
  readonly onInstance = new Map<string, { id: number; runtimeVersion: string }>();

  constructor(private readonly key: Buffer) {}

  async ensure(values: FleetValues, source: Generation['source']): Promise<Generation> {
    const digest = generationDigest(values, this.key);
    let found = this.generations.find((g) => g.digest === digest);
    if (!found) {
      found = { ...structuredClone(values), id: this.generations.length + 1, digest, source, createdAt: new Date() };
      this.generations.push(found);
    }
    return found;
  }

  async byId(id: number): Promise<Generation | undefined> {
    return this.generations.find((g) => g.id === id);
  }

  async current(): Promise<Generation | undefined> {
    return this.currentId === null ? undefined : this.byId(this.currentId);
  }

  async setCurrent(id: number, expected?: number | null): Promise<boolean> {
    if (expected !== undefined && expected !== this.currentId) return false;
    this.currentId = id;
    return true;
  }

  async bootstrap(values: FleetValues): Promise<Bootstrap> {
    const generation = await this.ensure(values, 'config');
    const before = await this.current();
    this.currentId = generation.id;
    return { current: generation, replaced: before && before.id !== generation.id ? before : undefined, behind: 0, behindOn: [] };
  }

  async recordOnInstance(instanceId: string, generation: Pick<Generation, 'id' | 'runtimeVersion'>): Promise<void> {
    this.onInstance.set(instanceId, { id: generation.id, runtimeVersion: generation.runtimeVersion });
  }

  async ofInstance(instanceId: string): Promise<number | null> {
    return this.onInstance.get(instanceId)?.id ?? null;
  }

  async behind(id: number): Promise<number> {
    return [...this.onInstance.values()].filter((g) => g.id !== id).length;
  }
}

/** Rollouts are tested end to end (test/e2e/rollouts.test.ts): no unit test reaches this gateway. */
export class FakeRollouts implements Rollouts {
  private none(): never {
    throw new Error('the rollouts gateway is not faked: test rollouts end to end');
  }
  candidates = async () => this.none();
  create = async () => this.none();
  byId = async () => this.none();
  list = async () => this.none();
  instances = async () => this.none();
  instance = async () => this.none();
  setState = async () => this.none();
  setInstances = async () => this.none();
  setRollback = async () => this.none();
}

/** A job context made of fakes only. */
export function fakeContext(env: Record<string, string> = {}): Fakes {
  const calls: Trace = [];
  // Every secret given, so loading the configuration writes nothing (it keeps generated ones under VAR_DIR).
  const config = loadConfig(
    {
      VAR_DIR: '/nonexistent/var',
      SECRETS_KEY: Buffer.alloc(32, 1).toString('base64'),
      STRIPE_WEBHOOK_SECRET: 'whsec_unit',
      ADMIN_PASSWORD: 'unit',
      ADMIN_TOKEN: 'unit',
      ...env,
    },
    '/nonexistent',
  );
  const audit = new FakeAudit(calls);
  const instances = new FakeInstances(calls, audit);
  const secrets = new FakeSecrets(calls);
  const fakes = {
    calls,
    config,
    instances,
    subscriptions: new FakeSubscriptions(calls, instances),
    steps: new FakeSteps(calls),
    audit,
    archiveRecords: new FakeArchiveRecords(calls),
    stripeEvents: new FakeStripeEvents(calls),
    usageNotices: new FakeUsageNotices(),
    timings: new FakeTimings(),
    health: new FakeHealth(),
    locks: new FakeLocks(),
    reconciliation: new FakeReconciliation(calls, instances),
    keyHandovers: new FakeKeyHandovers(),
    accountAccess: new FakeAccountAccess(),
    secrets,
    customerDbs: new FakeCustomerDbs(calls, secrets),
    archives: new FakeArchiveStore(calls),
    jobs: new FakeJobQueue(calls),
    compute: new FakeCompute(calls),
    database: new FakeDatabaseProvider(calls),
    mailer: new FakeMailer(calls),
    stripe: new FakeStripe(),
    rateLimitPeriods: new FakeRateLimitPeriods(),
    fleet: new FakeFleetGenerations(config.secretsKey),
    rollouts: new FakeRollouts(),
    backups: new FakeBackupRecords(calls),
  };
  const ctx: JobContext = {
    ...fakes,
    alerter: {
      slack: async () => void calls.push('alerter.slack'),
      mail: async () => void calls.push('alerter.mail'),
    },
  };
  return { ...fakes, ctx };
}

/** A BullMQ job as handlers see it: its log, its data updates and its delay are kept for the test to read. */
export class FakeJob<D> implements JobHandle<D> {
  id: string;
  timestamp = Date.now();
  attemptsMade = 0;
  opts = { attempts: 3 };
  readonly logs: string[] = [];
  readonly progressed: unknown[] = [];
  /** Set when the job moved itself to the delayed set: when it comes back. */
  delayedUntil: number | undefined;
  childrenValues: Record<string, unknown> = {};

  constructor(
    readonly name: string,
    public data: D,
    readonly queueName = 'lifecycle',
  ) {
    this.id = `${name}-${++counter}`;
  }

  async log(row: string): Promise<number> {
    this.logs.push(row);
    return this.logs.length;
  }

  async updateData(data: D): Promise<void> {
    this.data = data;
  }

  async updateProgress(progress: unknown): Promise<void> {
    this.progressed.push(progress);
  }

  async moveToDelayed(timestamp: number): Promise<void> {
    this.delayedUntil = timestamp;
  }

  async getChildrenValues<CT = unknown>(): Promise<{ [jobKey: string]: CT }> {
    return this.childrenValues as { [jobKey: string]: CT };
  }
}


/** Backup and restore runs in memory, as the Postgres gateway keeps them. */
export class FakeBackupRecords implements BackupRecords {
  readonly runs = new Map<string, BackupRun>();
  readonly restoreRuns = new Map<string, RestoreRun>();
  private clock = 0;

  constructor(private readonly calls: Trace) {}

  async start(instanceId: string, reason: BackupReason): Promise<string> {
    const id = randomUUID();
    this.calls.push(`backups.start ${reason}`);
    const run: BackupRun = {
      id, instanceId, reason, state: 'running', location: null, sizeBytes: null, sha256: null, rowCounts: null, error: null,
      startedAt: new Date(Date.now() + this.clock++), finishedAt: null, durationMs: null, deletedAt: null,
    };
    this.runs.set(id, run);
    return id;
  }

  async stored(id: string, stored: { location: string; sizeBytes: number; sha256: string; rowCounts: Record<string, number> }): Promise<void> {
    Object.assign(this.runs.get(id)!, stored);
  }

  private finish(id: string, set: Partial<BackupRun>): void {
    const run = this.runs.get(id)!;
    if (run.state !== 'running') return;
    Object.assign(run, { finishedAt: new Date(), durationMs: 0 }, set);
  }

  async verified(id: string): Promise<void> {
    this.calls.push('backups.verified');
    this.finish(id, { state: 'verified' });
  }

  async failed(id: string, error: string): Promise<void> {
    this.calls.push('backups.failed');
    this.finish(id, { state: 'failed', error });
  }

  async markDeleted(id: string): Promise<void> {
    this.calls.push('backups.markDeleted');
    Object.assign(this.runs.get(id)!, { state: 'deleted', deletedAt: new Date() });
  }

  async byId(id: string): Promise<BackupRun | undefined> {
    return this.runs.get(id);
  }

  async list(instanceId: string): Promise<BackupRun[]> {
    return [...this.runs.values()].filter((r) => r.instanceId === instanceId).sort((a, b) => b.startedAt.getTime() - a.startedAt.getTime());
  }

  async verifiedOf(instanceId: string): Promise<BackupRun[]> {
    return (await this.list(instanceId)).filter((r) => r.state === 'verified');
  }

  async requestRestore(instanceId: string, backupId: string): Promise<RestoreRun | undefined> {
    if ([...this.restoreRuns.values()].some((r) => r.instanceId === instanceId && r.state === 'running')) return undefined;
    const run: RestoreRun = {
      id: randomUUID(), instanceId, backupId, state: 'running', preBackupId: null, databaseName: null, error: null,
      requestedAt: new Date(), startedAt: null, finishedAt: null, durationMs: null,
    };
    this.restoreRuns.set(run.id, run);
    return run;
  }

  async restoreById(id: string): Promise<RestoreRun | undefined> {
    return this.restoreRuns.get(id);
  }

  async restoreStarted(id: string, set: { databaseName?: string; preBackupId?: string }): Promise<void> {
    const run = this.restoreRuns.get(id)!;
    run.startedAt ??= new Date();
    if (set.databaseName) run.databaseName = set.databaseName;
    if (set.preBackupId) run.preBackupId = set.preBackupId;
  }

  async restoreFinished(id: string, outcome: { state: 'succeeded' } | { state: 'failed'; error: string }): Promise<void> {
    const run = this.restoreRuns.get(id)!;
    if (run.state !== 'running') return;
    Object.assign(run, { state: outcome.state, error: outcome.state === 'failed' ? outcome.error : null, finishedAt: new Date(), durationMs: 0 });
  }

  async restores(instanceId: string): Promise<RestoreRun[]> {
    return [...this.restoreRuns.values()].filter((r) => r.instanceId === instanceId);
  }

  async instancesToBackUp(): Promise<{ id: string; workspace_id: string }[]> {
    return [];
  }
}
