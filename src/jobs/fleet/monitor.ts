/** monitor: one scheduled run probes every active instance (see docs/operations.md#health-monitor). */
import type { FleetData } from '../../queues/catalogue.ts';
import type { JobContext, JobHandle } from '../context.ts';

export async function monitor(_ctx: JobContext, _job: JobHandle<FleetData>): Promise<Record<string, number>> {
  return {};
}
