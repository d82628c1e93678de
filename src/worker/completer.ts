import type { JobStore } from '../db/jobstore.js';
import type { JobRun } from './run.js';

/** What became of a recorded result: the job's new status, or undefined when the claim was gone. */
export type FinishStatus = 'succeeded' | 'queued' | 'failed' | undefined;

interface Pending {
  run: JobRun;
  ok: boolean;
  delayMs: number;
  error: string | null;
  resolve: (status: FinishStatus) => void;
  reject: (err: unknown) => void;
}

export interface CompleterOptions {
  /** Results per statement at most (default 1000). */
  maxBatch?: number;
  /** How long to keep retrying a batch the database refuses (default: the lease). */
  retryForMs: number;
  onRetry: (err: unknown, attempt: number) => void;
}

/**
 * Records job results in batches: one fenced statement per flush (two when it holds both
 * successes and failures). A flush starts as soon as
 * a result arrives and none is in flight; results that arrive meanwhile go in the next one,
 * so under load each statement carries many results and at low load none waits. A batch the
 * database refuses (connection lost, deadlock) is retried until retryForMs has passed;
 * after that its jobs come back through the reaper.
 */
export class Completer {
  private queue: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private readonly maxBatch: number;

  constructor(
    private readonly store: JobStore,
    private readonly options: CompleterOptions,
  ) {
    this.maxBatch = options.maxBatch ?? 1000;
  }

  /** Results waiting to be written or being written. */
  get backlog(): number {
    return this.queue.length + this.inFlight.length;
  }

  private inFlight: Pending[] = [];

  /** The runs whose results are not recorded yet (their leases must still be renewed). */
  pendingRuns(): JobRun[] {
    return [...this.inFlight, ...this.queue].map((p) => p.run);
  }

  /** Queues a result; resolves with the job's new status once it is written. */
  add(run: JobRun, ok: boolean, delayMs: number, error: string | null): Promise<FinishStatus> {
    return new Promise<FinishStatus>((resolve, reject) => {
      this.queue.push({ run, ok, delayMs, error, resolve, reject });
      this.flushing ??= this.flushLoop().finally(() => {
        this.flushing = undefined;
      });
    });
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
        await this.write(successes, async (batch) => {
          const written = await this.store.completeMany(batch.map((p) => ({ id: p.run.id, token: p.run.token })));
          return (p) => (written.has(p.run.id) ? 'succeeded' : undefined);
        });
      }
      if (failures.length > 0) {
        await this.write(failures, async (batch) => {
          const written = await this.store.finishMany(
            batch.map((p) => ({ id: p.run.id, token: p.run.token, ok: p.ok, delayMs: p.delayMs, error: p.error })),
          );
          return (p) => written.get(p.run.id);
        });
      }
      this.inFlight = [];
    }
  }

  /** Runs one statement for a batch, retrying while the database refuses it, and settles each result. */
  private async write(batch: Pending[], statement: (batch: Pending[]) => Promise<(p: Pending) => FinishStatus>): Promise<void> {
    const startedAt = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        const statusOf = await statement(batch);
        for (const p of batch) p.resolve(statusOf(p));
        return;
      } catch (err) {
        if (Date.now() - startedAt >= this.options.retryForMs) {
          for (const p of batch) p.reject(err);
          return;
        }
        this.options.onRetry(err, attempt);
        await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** attempt)));
      }
    }
  }
}
