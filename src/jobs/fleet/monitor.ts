/**
 * monitor: one scheduled run (every MONITOR_INTERVAL) probes every active instance, a page at a time, with bounded
 * concurrency: the provider's state where asking costs nothing (a local process), and GET <accessUrl>/health. A run
 * acts on what health.ts decides: it restarts through the compute provider, raises one incident per episode (and one
 * for a crash loop) and sends one recovery notice. Runs never overlap (an advisory lock), so two workers never
 * restart one instance twice.
 */
import { errorMessage } from '../../errors.ts';
import { httpRequest } from '../../providers/http.ts';
import { logger, maskSecrets } from '../../../core/logger.ts';
import type { MonitoredInstance } from '../../db/instanceHealth.ts';
import { logInstanceEvent } from '../../instances/eventLog.ts';
import { QUEUES, type FleetData } from '../../queues/catalogue.ts';
import type { JobContext, JobHandle } from '../context.ts';
import { assess, type HealthAction, type HealthRecord, type Probe } from './health.ts';

const log = logger('monitor');
/** Instances read, probed and written per round trip. */
const PAGE = 500;

export interface MonitorReport {
  checked: number;
  healthy: number;
  degraded: number;
  down: number;
  restarted: number;
  crashLoops: number;
  recovered: number;
  ms: number;
  /** Set when another run held the lock: this one did nothing. */
  skipped?: boolean;
}

export async function monitor(ctx: JobContext, job: JobHandle<FleetData>): Promise<MonitorReport> {
  const started = Date.now();
  const report: MonitorReport = { checked: 0, healthy: 0, degraded: 0, down: 0, restarted: 0, crashLoops: 0, recovered: 0, ms: 0 };
  const ran = await ctx.health.exclusively(async () => {
    await ctx.health.forgetInactive();
    for (let after: string | null = null; ; ) {
      const page = await ctx.health.activePage(after, PAGE);
      if (!page.length) break;
      after = page[page.length - 1]!.id;
      const now = new Date();
      const probes = await mapLimited(page, ctx.config.monitor.concurrency, (instance) => probe(ctx, instance));
      const records: { instanceId: string; health: HealthRecord }[] = [];
      for (const [i, instance] of page.entries()) {
        const { next, action } = assess(instance.health, probes[i]!, now, ctx.config.monitor);
        if (action) next.incidentId = await act(ctx, job, instance, next, action, report);
        records.push({ instanceId: instance.id, health: next });
        report.checked++;
        report[next.state]++;
      }
      await ctx.health.save(records);
      if (page.length < PAGE) break;
    }
  });
  report.ms = Date.now() - started;
  if (ran === null) return { ...report, skipped: true };
  if (report.restarted || report.crashLoops || report.recovered) log.info('monitor run', { ...report });
  return report;
}

/** One instance's probe: the provider's state first where that is free, then its /health. */
async function probe(ctx: JobContext, instance: MonitoredInstance): Promise<Probe> {
  const ours = instance.computeProvider === ctx.compute.kind && instance.serviceId !== null;
  if (ours && ctx.compute.serviceStateIsCheap) {
    const state = await ctx.compute.serviceState(instance.serviceId!).catch((err: unknown) => ({ running: true, detail: errorMessage(err) }));
    if (!state.running) return { state: 'down', error: state.detail, notRunning: true };
  }
  if (!instance.accessUrl) return { state: 'down', error: 'the instance has no access URL' };
  let failure: Probe;
  try {
    // A runtime is asked once an interval, longer than it keeps an idle connection: no connection is kept for it.
    const answer = await httpRequest(new URL('/health', instance.accessUrl), { signal: AbortSignal.timeout(ctx.config.monitor.probeTimeoutMs), noKeepAlive: true, provider: 'runtime' });
    if (answer.status === 200) return { state: 'healthy', error: null };
    failure = { state: 'degraded', error: `GET /health answered ${answer.status}` };
  } catch (err) {
    failure = { state: 'down', error: `GET /health failed: ${errorMessage(err)}` };
  }
  // Asked only now, at an episode's first failure, where it costs an API request: what the provider says of it.
  if (ours && !ctx.compute.serviceStateIsCheap && !instance.health?.failures) {
    const state = await ctx.compute.serviceState(instance.serviceId!).catch(() => undefined);
    if (state) failure = { ...failure, error: `${failure.error} (${ctx.compute.kind}: ${state.detail})`, notRunning: !state.running };
  }
  return { ...failure, error: maskSecrets(failure.error!) };
}

/** Does what the assessment asked; answers the episode's incident id as it stands after. */
async function act(ctx: JobContext, job: JobHandle<FleetData>, instance: MonitoredInstance, health: HealthRecord, action: HealthAction, report: MonitorReport): Promise<string | null> {
  const where = { queue: QUEUES.fleet, jobId: job.id! };
  const incident = async (kind: 'down' | 'crash_loop' | 'recovered', key: string, title: string, reason: string) => {
    const auditId = await ctx.audit.recordIncidentOnce(`instance.${kind}`, key, { step: 'monitor', jobId: job.id!, title, reason: maskSecrets(reason).slice(0, 4000) }, instance.id);
    if (auditId) await ctx.jobs.addAlerts(auditId, where);
    return auditId;
  };
  const ids = { instance: instance.id, workspace: instance.workspaceId, customer: instance.customerId };
  const episode = `${instance.id}:${health.since.toISOString()}`;

  if (action.kind === 'recovered') {
    report.recovered++;
    logInstanceEvent('recovered', ids, { incident: action.incidentId });
    await incident('recovered', `recovered:${action.incidentId}`, 'A customer’s assistant is healthy again', `healthy again after incident ${action.incidentId} (last error: ${health.lastError ?? 'none'})`);
    return null;
  }

  if (action.kind === 'crash-loop') {
    report.crashLoops++;
    const evidence = instance.serviceId ? await crashEvidence(ctx, instance.serviceId) : '';
    log.warn('instance in a crash loop: restarts stopped', { ...ids, restarts: health.restarts.length });
    const id = await incident(
      'crash_loop',
      `crash-loop:${episode}`,
      'A customer’s assistant is in a crash loop: restarts stopped',
      `${health.restarts.length} restarts within the hour did not keep it up (limit ${ctx.config.monitor.maxRestarts}); last error: ${health.lastError}${evidence}`,
    );
    return health.incidentId ?? id;
  }

  report.restarted++;
  let tried: string;
  try {
    // Under the instance's lifecycle lock and only while it is still active: a cancellation or suspension that
    // stopped the service since the probe is never undone by a restart.
    const locked = await ctx.locks.withLock(instance.id, async () => {
      const now = await ctx.instances.byId(instance.id);
      if (now?.status !== 'active' || !now.service_id) return `nothing: the instance is ${now?.status ?? 'gone'}${now?.service_id ? '' : ' (no service)'}`;
      return (await ctx.compute.restart(now.service_id)).action;
    });
    tried = locked.ran ? locked.value : 'nothing yet: a lifecycle job holds the instance';
    logInstanceEvent('restarted', ids, { failures: ctx.config.monitor.failures, reason: health.lastError, action: tried });
  } catch (err) {
    tried = `a restart, which failed: ${errorMessage(err)}`;
    log.error('instance restart failed', { ...ids, error: errorMessage(err) });
  }
  if (!action.raiseIncident) return health.incidentId;
  return incident(
    'down',
    `down:${episode}`,
    'A customer’s assistant was down and was restarted',
    `${ctx.config.monitor.failures} failed health checks in a row; last error: ${health.lastError}. Tried: ${tried}.`,
  );
}

/** What shows operators why it keeps crashing: the runtime's last log lines where kept, else the provider's state. */
async function crashEvidence(ctx: JobContext, serviceId: string): Promise<string> {
  try {
    const lines = (await ctx.compute.recentLog?.(serviceId)) ?? [];
    if (lines.length) return `\nlast log lines:\n${lines.join('\n')}`;
    return `\n${ctx.compute.kind}: ${(await ctx.compute.serviceState(serviceId)).detail}`;
  } catch (err) {
    return `\n(the provider could not be asked: ${errorMessage(err)})`;
  }
}

/** fn over items, at most `limit` at a time, answers in the items' order. */
export async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  });
  await Promise.all(lanes);
  return results;
}
