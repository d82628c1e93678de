import type { JobRun } from './run.js';

/** The buffer holds what the worker expects to start within this many ms. */
export const BUFFER_HORIZON_MS = 100;
/** Weight of the newest handler duration in the moving average. */
const DURATION_WEIGHT = 0.05;

/**
 * The prefetch buffer: jobs claimed ahead of a free slot, started in claim order. It decides
 * how many jobs a claim should ask for, from how long handlers have been taking:
 *
 *   cold ──first handler returns──▶ warm ◀──▶ holding back
 *
 * - cold: no handler has returned yet, so their length is unknown: the target is 0 and
 *   claims ask only for free slots (a worker never hoards jobs it cannot size).
 * - warm: the target is what the worker expects to start within BUFFER_HORIZON_MS, from
 *   the moving average of handler durations (concurrency × horizon / average), at most
 *   `prefetch`. A claim tops the buffer up to the target once it has run down to half of
 *   it, so short jobs are claimed in large batches.
 * - holding back: the median time the running jobs have run so far (set at each heartbeat)
 *   also bounds the target, so jobs that turn out long stop the buffering before they end.
 *
 * Each buffered run is `buffered` (see run.ts) until it leaves by take() (to be started) or
 * remove() (to be handed back or dropped as lost).
 */
export class PrefetchBuffer {
  /** Buffered runs by id. */
  private readonly held = new Map<string, JobRun>();
  /**
   * The same runs in claim order, from `head` on; entries that left meanwhile are skipped.
   * (A Map iterated from its start after many deletions walks over every deleted entry,
   * which cost a few per cent of a drain.)
   */
  private order: JobRun[] = [];
  private head = 0;
  /** Moving average of handler durations in ms (undefined while cold). */
  private averageRunMs: number | undefined;
  /** Median time the running jobs had run at the last review. */
  private runningMedianMs = 0;

  constructor(
    private readonly concurrency: number,
    /** Most runs held at once (WorkerOptions.prefetch); 0 = never more than free slots. */
    private readonly prefetch: number,
  ) {}

  get size(): number {
    return this.held.size;
  }

  has(id: string): boolean {
    return this.held.has(id);
  }

  /** The buffered runs (their leases must be renewed too). */
  runs(): IterableIterator<JobRun> {
    return this.held.values();
  }

  /** How many buffered runs the worker aims for now (0 while cold). */
  target(): number {
    if (this.prefetch === 0 || this.averageRunMs === undefined) return 0;
    const perSlot = Math.max(this.averageRunMs, this.runningMedianMs, 0.01);
    return Math.min(this.prefetch, Math.floor((this.concurrency * BUFFER_HORIZON_MS) / perSlot));
  }

  /**
   * Whether a claim is worth its statement with `running` slots taken: a slot is free and
   * nothing is buffered for it, or the buffer has run down to half its target.
   */
  wantsClaim(running: number): boolean {
    if (this.held.size === 0 && running < this.concurrency) return true;
    const target = this.target();
    return target > 0 && this.held.size <= target / 2;
  }

  /** How many jobs a claim should ask for with `running` slots taken: free slots plus the target. */
  claimLimit(running: number): number {
    return this.concurrency + this.target() - running - this.held.size;
  }

  /** Adds claimed runs at the end, in claim order. */
  push(run: JobRun): void {
    this.held.set(run.id, run);
    this.order.push(run);
  }

  /** The longest-waiting run, out of the buffer (the caller starts it); undefined when empty. */
  take(): JobRun | undefined {
    const order = this.order;
    let found: JobRun | undefined;
    while (found === undefined && this.head < order.length) {
      const run = order[this.head++]!;
      if (this.held.get(run.id) === run) found = run;
    }
    if (found !== undefined) this.held.delete(found.id);
    if (this.head === order.length) {
      this.order = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > order.length) {
      this.order = order.slice(this.head);
      this.head = 0;
    }
    return found;
  }

  /** Takes runs out without starting them (to hand back or drop); returns those that were here. */
  remove(runs: Iterable<JobRun>): JobRun[] {
    const removed: JobRun[] = [];
    for (const run of runs) {
      if (this.held.get(run.id) !== run) continue;
      this.held.delete(run.id);
      removed.push(run);
    }
    if (this.held.size === 0) {
      this.order = [];
      this.head = 0;
    }
    return removed;
  }

  /** Every buffered run, out of the buffer (shutdown). */
  removeAll(): JobRun[] {
    return this.remove([...this.held.values()]);
  }

  /** A handler returned after `ranMs`: the moving average follows. */
  recordDuration(ranMs: number): void {
    this.averageRunMs = this.averageRunMs === undefined ? ranMs : this.averageRunMs + DURATION_WEIGHT * (ranMs - this.averageRunMs);
  }

  /**
   * The heartbeat's review: `elapsed` is how long each running job has run so far (its
   * median bounds the target); returns the runs that have waited longer than `maxWaitMs`
   * for a slot, which the caller hands back so that idle workers can take them.
   */
  review(now: number, elapsed: number[], maxWaitMs: number): JobRun[] {
    elapsed.sort((a, b) => a - b);
    this.runningMedianMs = elapsed.length > 0 ? elapsed[Math.floor(elapsed.length / 2)]! : 0;
    const stale: JobRun[] = [];
    for (const run of this.held.values()) if (now - run.claimedAt > maxWaitMs) stale.push(run);
    return stale;
  }
}
