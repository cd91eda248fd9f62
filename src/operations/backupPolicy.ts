/** The pure rules of backups: which backups retention deletes, and where in the spread a scheduled backup starts. */
import { createHash } from 'node:crypto';

/**
 * The verified backups retention deletes: all but the `keep` newest. Only verified backups count and only they are
 * ever chosen; fewer than `keep` (or `keep` below 1, taken as 1) deletes nothing of the newest.
 */
export function backupsBeyondKept<B extends { id: string; startedAt: Date; state: string }>(backups: readonly B[], keep: number): B[] {
  const verified = backups
    .filter((b) => b.state === 'verified')
    .sort((a, b) => b.startedAt.getTime() - a.startedAt.getTime() || (a.id < b.id ? -1 : 1));
  return verified.slice(Math.max(1, Math.floor(keep)));
}

/**
 * How long after the sweep an instance's scheduled backup starts: a fixed point of [0, spreadMs) from a hash of its
 * id, so thousands spread evenly over the window and each instance starts at the same time every day.
 */
export function spreadOffset(instanceId: string, spreadMs: number): number {
  if (spreadMs <= 0) return 0;
  const n = createHash('sha256').update(instanceId).digest().readUIntBE(0, 6);
  return n % Math.floor(spreadMs);
}

/** The sweep's slot: when the scheduler meant it to run (its job id ends with that time), else when it was made. */
export function sweepSlot(job: { id?: string | undefined; timestamp: number }): number {
  const planned = /:(\d+)$/.exec(job.id ?? '')?.[1];
  return planned ? Number(planned) : job.timestamp;
}

/** A cron expression as BullMQ's job scheduler reads it: five fields, or six with seconds first. */
export function isCronExpression(value: string): boolean {
  const fields = value.trim().split(/\s+/);
  return (fields.length === 5 || fields.length === 6) && fields.every((f) => /^[\d*/,?LW#A-Za-z-]+$/.test(f));
}
