import type { FinishedStatus, JobStore } from '../db/jobstore.js';
import type { JobRun } from './run.js';

/** What became of a recorded result: the job's new status, or undefined when the claim was gone. */
export type FinishStatus = FinishedStatus | undefined;

/** The statements a completer runs (a JobStore; tests give a fake). */
export type ResultWriter = Pick<JobStore, 'completeMany' | 'finishMany'>;

/** One result waiting to be written. */
export interface PendingResult {
  readonly run: JobRun;
  readonly ok: boolean;
  /** Retry delay (failures). */
  readonly delayMs: number;
  /** Error message (failures). */
  readonly error: string | null;
}

export interface CompleterOptions {
  /** Results per statement at most (default 1000). */
  maxBatch?: number;
  /** How long to keep retrying a batch the database refuses (default: the lease). */
  retryForMs: number;
  onRetry: (err: unknown, attempt: number) => void;
  /** A result was written: `status` is the job's new status, undefined when the claim was gone. */
  onWritten: (result: PendingResult, status: FinishStatus) => void;
  /** A result could not be written before retryForMs ran out. */
  onGaveUp: (result: PendingResult, err: unknown) => void;
  /** A batch was settled (written or given up on): the backlog has shrunk. */
  onFlushed: () => void;
}

/**
 * Records job results in batches: one fenced statement per flush (two when it holds both
 * successes and failures). A flush starts as soon as a result arrives and none is in
 * flight (after the current event-loop turn); results that arrive meanwhile go in the next one, so under load each statement
 * carries many results and at low load none waits. A batch the database refuses (connection
 * lost, deadlock) is retried until retryForMs has passed; after that its jobs come back
 * through the reaper. Results are reported through callbacks, not one promise per job.
 */
export class Completer {
  private queue: PendingResult[] = [];
  private inFlight: PendingResult[] = [];
  private flushing: Promise<void> | undefined;
  private readonly maxBatch: number;

  constructor(
    private readonly store: ResultWriter,
    private readonly options: CompleterOptions,
  ) {
    this.maxBatch = options.maxBatch ?? 1000;
  }

  /** Results waiting to be written or being written. */
  get backlog(): number {
    return this.queue.length + this.inFlight.length;
  }

  /** The runs whose results are not recorded yet (their leases must still be renewed). */
  pendingRuns(): JobRun[] {
    return [...this.inFlight, ...this.queue].map((p) => p.run);
  }

  /** Queues a result; options.onWritten reports it once written. */
  add(result: PendingResult): void {
    this.queue.push(result);
    this.flushing ??= this.flushSoon();
  }

  /**
   * Starts a flush after the current turn of the event loop: the results of every handler
   * that finishes in this turn (a batch of short jobs finishes together) share its statement.
   */
  private async flushSoon(): Promise<void> {
    try {
      await new Promise<void>((resolve) => setImmediate(resolve));
      await this.flushLoop();
    } finally {
      this.flushing = undefined;
      // A result added after the loop's last check and before this point must not wait
      // for the next one.
      if (this.queue.length > 0) this.flushing = this.flushSoon();
    }
  }

  /** Resolves when every queued result has been written (or given up on). */
  async drain(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  private async flushLoop(): Promise<void> {
    while (this.queue.length > 0) {
      this.inFlight = this.queue.splice(0, this.maxBatch);
      const successes = this.inFlight.filter((p) => p.ok);
      const failures = successes.length === this.inFlight.length ? [] : this.inFlight.filter((p) => !p.ok);
      // Successes (the bulk) go in a lean statement of ids and tokens; failures in another.
      if (successes.length > 0) {
        await this.write(successes, failures, async (batch) => {
          const written = await this.store.completeMany(batch.map((p) => p.run));
          return (p) => (written(p.run.id) ? 'succeeded' : undefined);
        });
      }
      if (failures.length > 0) {
        await this.write(failures, [], async (batch) => {
          const written = await this.store.finishMany(
            batch.map((p) => ({ id: p.run.id, token: p.run.token, ok: p.ok, delayMs: p.delayMs, error: p.error })),
          );
          return (p) => written.get(p.run.id);
        });
      }
      this.inFlight = [];
    }
  }

  /**
   * Runs one statement for a batch, retrying while the database refuses it, and reports each
   * result. `rest` is what stays in flight afterwards: the backlog shrinks before anyone
   * hears of the results, so a worker that waited for it to shrink can claim at once.
   */
  private async write(
    batch: PendingResult[],
    rest: PendingResult[],
    statement: (batch: PendingResult[]) => Promise<(p: PendingResult) => FinishStatus>,
  ): Promise<void> {
    const startedAt = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        const statusOf = await statement(batch);
        this.inFlight = rest;
        for (const p of batch) this.options.onWritten(p, statusOf(p));
        break;
      } catch (err) {
        if (Date.now() - startedAt >= this.options.retryForMs) {
          this.inFlight = rest;
          for (const p of batch) this.options.onGaveUp(p, err);
          break;
        }
        this.options.onRetry(err, attempt);
        await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** attempt)));
      }
    }
    this.options.onFlushed();
  }
}
