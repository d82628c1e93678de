import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { JobStore } from '../db/jobstore.js';
import { Periodic } from '../maintenance/periodic.js';
import type { PrefetchBuffer } from './buffer.js';
import type { Executor } from './executor.js';
import type { JobRun, LossReason } from './run.js';

export interface LeaseKeeperOptions {
  store: JobStore;
  buffer: PrefetchBuffer;
  executor: Executor;
  leaseMs: number;
  heartbeatMs: number;
  /** A buffered job that waits longer than this for a slot is handed back. */
  maxBufferWaitMs: number;
  logger: Logger;
  /** One line for a database error, without secrets. */
  describe(err: unknown): string;
}

/**
 * The worker's leases: renews every claim it holds (buffered, running, result not yet
 * written) in one statement per heartbeat, turns a claim found gone into a loss (the
 * executor aborts the handler and drops the result), and gives claims back to the queue
 * (stale buffered jobs, shutdown).
 */
export class LeaseKeeper {
  private readonly heartbeat: Periodic;

  constructor(private readonly options: LeaseKeeperOptions) {
    this.heartbeat = new Periodic(options.heartbeatMs, () => this.beat(), (err) =>
      options.logger.error({ err: options.describe(err) }, 'lease renewal failed'),
    );
  }

  start(): void {
    this.heartbeat.start();
  }

  stop(): Promise<void> {
    return this.heartbeat.stop();
  }

  /**
   * Hands claims back to the queue at once, without using up an attempt (one statement, one
   * NOTIFY for idle workers). Buffered runs leave the buffer. Returns the ids handed back;
   * on a database error, none (the jobs come back when their leases expire).
   */
  async handBack(runs: readonly JobRun[]): Promise<Set<string>> {
    if (runs.length === 0) return new Set();
    this.options.buffer.remove(runs);
    for (const run of runs) run.state = 'handedBack';
    try {
      return await this.options.store.handBack(runs);
    } catch (err) {
      this.options.logger.error(
        { err: this.options.describe(err), jobs: runs.map((r) => r.id) },
        'could not hand jobs back; they return to the queue when their leases expire',
      );
      return new Set();
    }
  }

  /** A claim is gone: a buffered run leaves the buffer; the executor drops it either way. */
  lose(run: JobRun, reason: LossReason): void {
    if (run.state === 'buffered') this.options.buffer.remove([run]);
    this.options.executor.lose(run, reason);
  }

  /**
   * One heartbeat: the buffer is reviewed (the running jobs' median time bounds its target;
   * jobs that waited too long go back), then one statement renews every claim held.
   */
  private async beat(): Promise<void> {
    const { buffer, executor, store, leaseMs, maxBufferWaitMs, logger } = this.options;
    const now = performance.now();
    const stale = buffer.review(now, executor.elapsed(now), maxBufferWaitMs);
    if (stale.length > 0) {
      logger.info({ jobs: stale.length }, 'buffered jobs waited too long for a slot; handing them back');
      await this.handBack(stale);
    }
    const runs = [...buffer.runs(), ...executor.held()];
    if (runs.length === 0) return;
    const sentAt = performance.now();
    let lost: Map<string, string | undefined>;
    try {
      lost = await store.renew(runs, leaseMs);
    } catch (err) {
      // Could not reach the database: a lease we could not renew in time is gone.
      for (const run of runs) {
        if ((run.state === 'running' || run.state === 'buffered') && performance.now() - run.renewedAt > leaseMs) this.lose(run, 'expiry');
      }
      throw err;
    }
    for (const run of runs) {
      if (run.state !== 'running' && run.state !== 'buffered') continue;
      if (!lost.has(run.id)) run.renewedAt = sentAt;
      else this.lose(run, lost.get(run.id) === 'cancelled' ? 'cancelled' : 'heartbeat');
    }
  }
}
