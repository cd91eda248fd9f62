/**
 * When to look again at work a provider is doing (a deployment). With no history, the wait doubles from half a
 * second (so a deployment of d is seen by 2d, in log2(d) looks). With history, the first look is when the fastest
 * usual ones were still under way, then looks come briefly until the slow usual ones were done, and only past that
 * does the wait double again: a deployment of the usual length is seen within the brief interval of its end, in
 * two or three looks.
 */

/** When the usual work ends: between fastMs and slowMs. */
export interface TypicalDuration {
  fastMs: number;
  slowMs: number;
}

export const POLL = {
  initialMs: 500,
  maxMs: 15_000,
  /** The brief interval near the typical end; wider when usual durations spread, so the looks stay few. */
  briefMinMs: 200,
  briefMaxMs: 5_000,
  /** Brief looks go on this long past the slow usual end. */
  graceMs: 1_000,
} as const;

/**
 * From recent samples, each the last time the work was seen under way and the time it was seen done: most work is
 * still under way at `seenWorking` (the 90th percentile of the former) and done by `seenDone` (the 10th of the
 * latter). Looks made near the end narrow each new sample, so the window closes in on the usual end within a few
 * deployments, even from the wide samples of a first deployment seen by doubling waits; when durations spread the
 * two cross, and the window is wide.
 */
export function typicalOf(seenWorking: number, seenDone: number): TypicalDuration {
  return { fastMs: Math.min(seenWorking, seenDone), slowMs: Math.max(seenWorking, seenDone) };
}

/** How long to wait before the next look, `elapsedMs` after the work started. */
export function nextPollDelay(elapsedMs: number, typical: TypicalDuration | null): number {
  if (typical) {
    if (elapsedMs < typical.fastMs) return typical.fastMs - elapsedMs;
    if (elapsedMs < typical.slowMs + POLL.graceMs) {
      return Math.min(Math.max((typical.slowMs - typical.fastMs) / 4, POLL.briefMinMs), POLL.briefMaxMs);
    }
  }
  return Math.min(Math.max(elapsedMs, POLL.initialMs), POLL.maxMs);
}
