/**
 * The heartbeat: every HEARTBEAT_INTERVAL, the tasks listed in HEARTBEAT.md run as one background turn and the
 * outcome is appended to the daily log. A HEARTBEAT.md without tasks costs no model call.
 */
import { heartbeatTasks } from '../../core/workspace/formats.ts';
import type { RuntimeContext } from './context.ts';
import { appendToDailyLog } from './workspace.ts';
import { logger } from '../../core/logger.ts';

const log = logger('heartbeat');

export type HeartbeatOutcome = { ran: false; reason: string } | { ran: true; tasks: number; reply: string };

export async function runHeartbeatOnce(ctx: Pick<RuntimeContext, 'workspace' | 'runTurn'>): Promise<HeartbeatOutcome> {
  const tasks = heartbeatTasks(ctx.workspace.get('HEARTBEAT.md') ?? '');
  if (tasks.length === 0) return { ran: false, reason: 'HEARTBEAT.md lists no tasks' };
  const message = [
    'Heartbeat: work through these periodic tasks from HEARTBEAT.md and report briefly what you did or found.',
    ...tasks.map((task) => `- ${task}`),
  ].join('\n');
  const { reply } = await ctx.runTurn({ message, source: 'heartbeat' });
  await appendToDailyLog(ctx.workspace, `Heartbeat (${tasks.length} task${tasks.length === 1 ? '' : 's'}): ${reply.slice(0, 500)}`);
  return { ran: true, tasks: tasks.length, reply };
}

export function startHeartbeat(ctx: Pick<RuntimeContext, 'workspace' | 'runTurn' | 'config'>): { stop(): Promise<void> } {
  const interval = ctx.config.heartbeatIntervalMs;
  if (interval <= 0) return { stop: async () => {} };
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running) return; // a slow turn never overlaps the next beat
    running = runHeartbeatOnce(ctx)
      .then(() => undefined)
      .catch((err: Error) => log.error('heartbeat failed', { error: err.message }))
      .finally(() => {
        running = undefined;
      });
  }, interval);
  timer.unref();
  // Stopping lets a turn in progress finish, so it is stored (or given back) before the database closes.
  return {
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}
