/**
 * Waiting for what a test caused, by deterministic job ids and states instead of by time: a job settling, the alert
 * jobs of an incident, and the operator's Bull Board actions (retry, promote) that start them.
 */
import type { Job } from 'bullmq';
import type { QueueName } from '../../src/queues/catalogue.ts';
import { ADMIN, waitUntil, type Harness } from './harness.ts';

/** The job once it is in one of `states` (failed, delayed, ...); a job that must complete: `h.completedJob`. */
export async function waitForJob(h: Harness, queue: QueueName, id: string, states: string[], timeoutMs = 30_000): Promise<Job> {
  const find = () => h.plane.ctx.queues.get(queue).getJob(id);
  await waitUntil(async () => {
    const job = await find();
    return job !== undefined && states.includes(await job.getState());
  }, timeoutMs);
  return (await find())!; // read again: what it holds once in that state
}

/**
 * The incidents of one kind raised about an instance (audit rows), once there is one and the Slack and email alert
 * jobs of each have completed: from then on every alert they caused has landed.
 */
export async function waitForIncidents(h: Harness, instanceId: string, action: string): Promise<{ id: string; detail: Record<string, string> }[]> {
  const find = () =>
    h.db.query<{ id: string; detail: Record<string, string> }>('SELECT id, detail FROM audit WHERE instance_id = $1 AND action = $2 ORDER BY id', [
      instanceId,
      action,
    ]);
  await waitUntil(async () => (await find()).rows.length > 0, 30_000);
  const { rows } = await find();
  for (const { id } of rows) {
    for (const channel of ['slack', 'email']) await h.completedJob('alerts', `alert-${id}-${channel}`);
  }
  return rows;
}

/** What the dashboard sends with an action: the operator's basic auth and its own origin. */
export function bullBoardHeaders(h: Pick<Harness, 'url'>): Record<string, string> {
  return { authorization: `Basic ${btoa(`${ADMIN.user}:${ADMIN.password}`)}`, origin: h.url };
}

/** An operator's action on one job in Bull Board (retry, promote), as the dashboard sends it. */
export async function bullBoardAction(h: Harness, queue: QueueName, id: string, action: 'retry' | 'promote'): Promise<number> {
  const response = await fetch(`${h.url}/admin/queues/api/queues/${queue}/${encodeURIComponent(id)}/${action}`, {
    method: 'PUT',
    headers: bullBoardHeaders(h),
  });
  return response.status;
}
