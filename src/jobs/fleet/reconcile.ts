/** reconcile: one scheduled run compares what the providers have with the control plane. */
import type { FleetData } from '../../queues/catalogue.ts';
import type { JobContext, JobHandle } from '../context.ts';

export async function reconcile(_ctx: JobContext, _job: JobHandle<FleetData>): Promise<Record<string, number>> {
  return {};
}
