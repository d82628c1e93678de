import type { Logger } from 'pino';
import type { JobMetrics } from '../observability/metrics.js';
import type { ClaimedJobRecord } from '../db/jobstore.js';

/**
 * What a worker knows of one job it claimed. `buffered` while it waits in the worker's
 * prefetch buffer (claimed, lease renewed, handler not started); `running` until the handler
 * returns (or times out); then `finishing` while its result is written. `committed` once ctx.transaction
 * committed the completion. `lost` when the lease went to someone else or the job was
 * cancelled (the result is dropped), `handedBack` when shutdown returned it to the queue.
 */
export type RunState = 'buffered' | 'running' | 'finishing' | 'committed' | 'lost' | 'handedBack';

export class JobRun {
  state: RunState = 'buffered';
  /** Whether the handler has called ctx.transaction (allowed once). */
  transactionStarted = false;
  private abortController: AbortController | undefined;
  private childLogger: Logger | undefined;
  /** performance.now() of the claim or of the last renewal that held the lease. */
  renewedAt: number;
  /** performance.now() of the claim. */
  readonly claimedAt: number;
  /** performance.now() of the handler's start (0 while buffered). */
  startedAt = 0;
  /** How long the handler ran, in ms (set when it returns). */
  durationMs = 0;

  constructor(
    readonly job: ClaimedJobRecord,
    readonly token: string,
    private readonly parentLogger: Logger,
    /** This job's metric children (by queue and task). */
    readonly metrics: JobMetrics,
    now: number,
  ) {
    this.renewedAt = now;
    this.claimedAt = now;
  }

  /** Created on first use: most runs of a busy worker never need one. */
  get controller(): AbortController {
    this.abortController ??= new AbortController();
    return this.abortController;
  }

  /** A child logger bound to job id, task, queue and attempt, made on first use. */
  get logger(): Logger {
    this.childLogger ??= this.parentLogger.child({ jobId: this.job.id, task: this.job.task, queue: this.job.queue, attempt: this.job.attempt });
    return this.childLogger;
  }

  get id(): string {
    return this.job.id;
  }

  /** Whether a log line at this level would be written (saves making the child logger). */
  logs(level: 'debug' | 'info'): boolean {
    return this.parentLogger.isLevelEnabled(level);
  }
}

/** The reason an AbortSignal fired, as handlers see it in signal.reason. */
export class JobAbortedError extends Error {
  override readonly name = 'JobAbortedError';
  constructor(
    readonly reason: 'lease_lost' | 'cancelled' | 'timeout' | 'shutdown',
    message: string,
  ) {
    super(message);
  }
}
