import type { Logger } from 'pino';
import type { ClaimedJob } from '../job.js';
import type { JobMetrics } from '../observability/metrics.js';
import type { AttemptSpan } from '../observability/tracing.js';

/**
 * What a worker knows of one job it claimed. A run moves only forward:
 *
 *   buffered ──start──▶ running ──handler returns──▶ finishing ──result written──▶ (done)
 *      │                  │  └──ctx.transaction commits──▶ committed ──handler returns──▶ (done)
 *      │                  ├──lease lost / cancelled──▶ lost        (its result is dropped)
 *      │                  └──shutdown grace over──▶ handedBack
 *      ├──lease lost / not renewed──▶ lost
 *      └──shutdown / waited too long──▶ handedBack
 *   finishing ──write refused (claim gone)──▶ lost
 *
 * `buffered`: claimed, in the worker's prefetch buffer, lease renewed, handler not started.
 * A run holds one of the worker's slots exactly while it is `running` or `committed`; the
 * executor frees the slot on the one move out of those states (src/worker/executor.ts).
 */
/** What ended a claim before its result was recorded: a cancel, or whoever noticed the lease was gone. */
export type LossReason = 'heartbeat' | 'complete' | 'fail' | 'expiry' | 'cancelled';

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
  /** Why the run was lost (state `lost`). */
  lostBy: LossReason | undefined;
  /** The attempt's trace span while the handler runs (tracing on and recording). */
  span: AttemptSpan | undefined;

  constructor(
    readonly job: ClaimedJob,
    private readonly parentLogger: Logger,
    /** This job's metric children (by queue and task). */
    readonly metrics: JobMetrics,
    now: number,
  ) {
    this.renewedAt = now;
    this.claimedAt = now;
  }

  get id(): string {
    return this.job.id;
  }

  /** The claim's fencing token. */
  get token(): string {
    return this.job.token;
  }

  /** Created on first use: most runs of a busy worker never need one. */
  get controller(): AbortController {
    this.abortController ??= new AbortController();
    return this.abortController;
  }

  /** A child logger bound to job id, task, queue and attempt (and schedule and slot), made on first use. */
  get logger(): Logger {
    if (this.childLogger === undefined) {
      const { id, task, queue, attempt, scheduleName, scheduleSlotMs } = this.job;
      const bindings: Record<string, unknown> = { jobId: id, task, queue, attempt };
      // a scheduled job's lines say which schedule and slot it is for
      if (scheduleName !== null && scheduleSlotMs !== null) Object.assign(bindings, { schedule: scheduleName, slot: new Date(scheduleSlotMs).toISOString() });
      this.childLogger = this.parentLogger.child(bindings);
    }
    return this.childLogger;
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
