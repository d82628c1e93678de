import type { Logger } from 'pino';
import type { Job } from './types.js';

/**
 * What a worker knows of one job it claimed. `running` until the handler returns (or times
 * out); then `finishing` while its result is written. `committed` once ctx.transaction
 * committed the completion. `lost` when the lease went to someone else or the job was
 * cancelled (the result is dropped), `handedBack` when shutdown returned it to the queue.
 */
export type RunState = 'running' | 'finishing' | 'committed' | 'lost' | 'handedBack';

export class JobRun {
  state: RunState = 'running';
  /** Whether the handler has called ctx.transaction (allowed once). */
  transactionStarted = false;
  readonly controller = new AbortController();
  /** performance.now() of the claim or of the last renewal that held the lease. */
  renewedAt: number;
  readonly startedAt: number;

  constructor(
    readonly job: Job,
    readonly token: string,
    readonly logger: Logger,
    now: number,
  ) {
    this.renewedAt = now;
    this.startedAt = now;
  }

  get id(): string {
    return this.job.id;
  }

  get labels(): { queue: string; task: string } {
    return { queue: this.job.queue, task: this.job.task };
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
