/**
 * reconcile: one run lists what the providers hold under our naming (services, customer databases) and compares it
 * with the instances (see docs/operations.md#reconciler). Orphans are deleted once ORPHAN_GRACE has passed since a run
 * first saw them; an active or suspended instance missing its service or database raises one incident (nothing is
 * recreated); a service drifted from its plan is configured again. A dry run (the admin API's) reports what a run
 * would do and changes nothing. One acting run at a time, whatever the number of workers (the reconciler's lock).
 */
import { logger } from '../../../core/logger.ts';
import type { FleetInstance } from '../../db/reconciliation.ts';
import type { DatabaseRef } from '../../providers/types.ts';
import type { FleetData, QueueName } from '../../queues/catalogue.ts';
import type { JobContext, JobHandle } from '../context.ts';
import { driftBatch, findMissing, findOrphans, holdBack, ourResources, type MissingResource, type OwnedResource } from './reconcileCompare.ts';
import { correctDrift, DRIFT_CHECKS_PER_RUN, findDrift, type DriftEntry, type DriftReadContext } from './reconcileDrift.ts';
import { deleteDueOrphans, orphanEntries, type OrphanEntry } from './reconcileOrphans.ts';

const log = logger('reconcile');

/** An instance missing a resource, in a report. */
export interface MissingEntry extends MissingResource {
  /** would-raise: a dry run's; raised-before: this incident was raised by an earlier run; skipped: the instance changed. */
  outcome: 'raised' | 'raised-before' | 'would-raise' | 'skipped';
  auditId?: string;
}

/** What one run found and did (kept in Postgres; GET /api/admin/reconcile shows the newest). */
export interface ReconcileReport {
  dryRun: boolean;
  startedAt: string;
  finishedAt: string;
  providers: { compute: string; database: string };
  orphanGraceMs: number;
  instances: number;
  /** What the providers hold under our naming. */
  listed: { services: number; databases: number };
  orphans: OrphanEntry[];
  /** A second resource under a live instance's name, not the one it recorded: reported only. */
  duplicates: Pick<OwnedResource, 'kind' | 'provider' | 'id' | 'name' | 'instanceId' | 'instanceStatus'>[];
  missing: MissingEntry[];
  drift: { checked: number; found: DriftEntry[] };
  /** Why nothing was deleted this run, when most of what is listed looks orphaned. */
  heldBack: string | null;
}

/** What a dry run reads: the web process runs one, with no job queue or lock. */
export type InspectContext = DriftReadContext & Pick<JobContext, 'reconciliation' | 'database'>;

type Where = { queue: QueueName; jobId: string };

export async function reconcile(ctx: JobContext, job: JobHandle<FleetData>): Promise<Record<string, number | string>> {
  const ran = await reconcileFleet(ctx, { queue: job.queueName as QueueName, jobId: job.id! });
  return 'skipped' in ran ? ran : summary(ran);
}

/** A dry run: the report of what a run would do now, changing nothing (no sighting recorded, no drift marked checked). */
export async function inspectFleet(ctx: InspectContext): Promise<ReconcileReport> {
  const startedAt = new Date();
  const survey = await surveyFleet(ctx);
  const orphans = orphanEntries(survey.orphans, await ctx.reconciliation.sightings(survey.orphans), ctx.config.reconcile.orphanGraceMs);
  const heldBack = holdingBack(orphans, survey);
  const missing: MissingEntry[] = survey.missing.map((m) => ({ ...m, outcome: 'would-raise' }));
  const found = await findDrift(ctx, survey.driftBatch);
  const report = reportOf(ctx, survey, { startedAt, dryRun: true, orphans, missing, found, heldBack });
  await ctx.reconciliation.saveReport(report);
  return report;
}

/** An acting run; another run holding the lock makes this one a no-op. */
export async function reconcileFleet(ctx: JobContext, where: Where): Promise<ReconcileReport | { skipped: string }> {
  const ran = await ctx.reconciliation.exclusive(() => actOnFleet(ctx, where));
  return ran.ran ? ran.value : { skipped: 'another reconcile run holds the lock' };
}

async function actOnFleet(ctx: JobContext, where: Where): Promise<ReconcileReport> {
  const startedAt = new Date();
  const survey = await surveyFleet(ctx);
  const orphans = orphanEntries(survey.orphans, await ctx.reconciliation.sighted(survey.orphans), ctx.config.reconcile.orphanGraceMs);
  const heldBack = holdingBack(orphans, survey);
  if (heldBack) {
    await raiseIncident(ctx, where, 'reconcile.held_back', `reconcile-held-back/${startedAt.toISOString().slice(0, 10)}`, null, {
      title: 'The reconciler deleted nothing: most resources look orphaned',
      reason: heldBack,
    });
  } else {
    await deleteDueOrphans(ctx, orphans, survey.databases);
  }
  const missing: MissingEntry[] = [];
  for (const m of survey.missing) missing.push(await reportMissing(ctx, where, m));
  const found = await findDrift(ctx, survey.driftBatch);
  await correctDrift(ctx, found, survey.driftBatch);
  const failed = new Set(found.filter((f) => f.outcome === 'failed').map((f) => f.instanceId));
  await ctx.reconciliation.driftChecked(survey.driftBatch.map((i) => i.id).filter((id) => !failed.has(id)));

  const report = reportOf(ctx, survey, { startedAt, dryRun: false, orphans, missing, found, heldBack });
  await ctx.reconciliation.saveReport(report);
  const counts = summary(report);
  // A line each run that acted or raised something; quiet runs only at debug.
  if (counts.deleted || counts.incidents || counts.corrected || counts.failed || counts.heldBack) log.info('reconciled', counts);
  else log.debug('reconciled', counts);
  return report;
}

/** Why this run deletes nothing (see holdBack), the due orphans then kept; or null. */
function holdingBack(orphans: OrphanEntry[], survey: Survey): string | null {
  const reason = holdBack(orphans.length, survey.listed.services + survey.listed.databases);
  if (reason) for (const entry of orphans) if (entry.outcome === 'due') Object.assign(entry, { outcome: 'kept', reason: 'held back' });
  return reason;
}

interface Survey {
  instances: number;
  listed: { services: number; databases: number };
  orphans: OwnedResource[];
  duplicates: OwnedResource[];
  missing: MissingResource[];
  /** The listed databases by id, as deleting one takes them. */
  databases: Map<string, DatabaseRef>;
  driftBatch: FleetInstance[];
}

/**
 * The listing and what it means. Instances are read before the listing (an instance active then had its resources
 * before it began, so one not listed is missing) and after it (a resource made during the listing has its instance
 * recorded by then, so it is no orphan).
 */
async function surveyFleet(ctx: InspectContext): Promise<Survey> {
  const providers = { compute: ctx.compute.kind, database: ctx.database.kind };
  const before = await ctx.reconciliation.fleet();
  const [services, databases] = await Promise.all([ctx.compute.listServices(), ctx.database.listDatabases()]);
  const after = await ctx.reconciliation.fleet();
  const resources = ourResources({ services, databases }, providers);
  const { orphans, duplicates } = findOrphans(resources, after);
  const missing = findMissing(resources, { before, after }, providers);
  const missingServices = new Set(missing.filter((m) => m.kind === 'service').map((m) => m.instanceId));
  return {
    instances: after.length,
    listed: { services: resources.filter((r) => r.kind === 'service').length, databases: resources.filter((r) => r.kind === 'database').length },
    orphans,
    duplicates,
    missing,
    databases: new Map(databases.map((d) => [d.branchId, d])),
    driftBatch: driftBatch(after, providers.compute, DRIFT_CHECKS_PER_RUN).filter((i) => !missingServices.has(i.id)),
  };
}

/**
 * One incident per instance, resource and generation, however many runs see it gone; raised only while the
 * instance is still as it was read (a cancellation and archive may have deleted it meanwhile).
 */
async function reportMissing(ctx: JobContext, where: Where, missing: MissingResource): Promise<MissingEntry> {
  const instance = await ctx.instances.byId(missing.instanceId);
  if (!instance || instance.status !== missing.status) return { ...missing, outcome: 'skipped' };
  const provider = missing.kind === 'service' ? ctx.compute.kind : ctx.database.kind;
  const auditId = await raiseIncident(ctx, where, 'reconcile.missing', `reconcile-missing/${missing.instanceId}/${missing.kind}/g${missing.generation}`, missing.instanceId, {
    title: `An ${missing.status} instance is missing its ${missing.kind}`,
    reason:
      `The ${missing.kind} ${missing.expected} of ${missing.status} instance ${missing.workspaceId} is not whole on ${provider} ` +
      `(gone: ${missing.gone.join(', ')}). Nothing was recreated: restore it, or deprovision the customer.`,
  });
  return { ...missing, outcome: auditId ? 'raised' : 'raised-before', ...(auditId && { auditId }) };
}

async function raiseIncident(
  ctx: Pick<JobContext, 'audit' | 'jobs'>,
  where: Where,
  action: string,
  key: string,
  instanceId: string | null,
  what: { title: string; reason: string },
): Promise<string | null> {
  const auditId = await ctx.audit.recordIncidentOnce(action, key, { step: 'reconcile', jobId: where.jobId, ...what }, instanceId);
  if (auditId) await ctx.jobs.addAlerts(auditId, where);
  return auditId;
}

function reportOf(
  ctx: Pick<JobContext, 'config' | 'compute' | 'database'>,
  survey: Survey,
  run: { startedAt: Date; dryRun: boolean; orphans: OrphanEntry[]; missing: MissingEntry[]; found: DriftEntry[]; heldBack?: string | null },
): ReconcileReport {
  return {
    dryRun: run.dryRun,
    startedAt: run.startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    providers: { compute: ctx.compute.kind, database: ctx.database.kind },
    orphanGraceMs: ctx.config.reconcile.orphanGraceMs,
    instances: survey.instances,
    listed: survey.listed,
    orphans: run.orphans,
    duplicates: survey.duplicates.map(({ kind, provider, id, name, instanceId, instanceStatus }) => ({ kind, provider, id, name, instanceId, instanceStatus })),
    missing: run.missing,
    drift: { checked: survey.driftBatch.length, found: run.found },
    heldBack: run.heldBack ?? null,
  };
}

/** A run in a few counts (the job's result in Bull Board, and the log line). */
function summary(report: ReconcileReport): Record<string, number> {
  const count = <T extends { outcome: string }>(list: T[], ...outcomes: string[]) => list.filter((e) => outcomes.includes(e.outcome)).length;
  return {
    orphans: report.orphans.length,
    deleted: count(report.orphans, 'deleted'),
    waiting: count(report.orphans, 'waiting', 'due', 'kept'),
    failed: count(report.orphans, 'failed') + count(report.drift.found, 'failed'),
    missing: report.missing.length,
    incidents: count(report.missing, 'raised'),
    duplicates: report.duplicates.length,
    driftChecked: report.drift.checked,
    drifted: report.drift.found.filter((f) => f.outcome !== 'failed').length,
    corrected: count(report.drift.found, 'corrected'),
    heldBack: report.heldBack ? 1 : 0,
  };
}
