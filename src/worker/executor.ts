import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { JobStore } from '../db/jobstore.js';
import { checkout } from '../db/pool.js';
import type { Completer, FinishStatus, PendingResult } from './completer.js';
import { SkiplockError, errorMessage } from '../errors.js';
import { type BackoffOptions, backoffDelay, resolveBackoff } from './backoff.js';
import { JobAbortedError, type JobRun } from './run.js';
import type { Job, TaskContext, TaskHandler } from './types.js';

/** A task as the worker runs it: handler plus its resolved settings. */
export interface ResolvedTask {
  handler: TaskHandler<never>;
  backoff: BackoffOptions;
  timeoutMs: number | undefined;
}

export interface ExecutorDeps {
  store: JobStore;
  pool: pg.Pool;
  /** One line for a database error, without secrets. */
  describe(err: unknown): string;
  /** Batches results into fenced statements. */
  completer: Completer;
  /** Called once a run no longer holds a slot (its result may still be being written). */
  release(run: JobRun): void;
}

/** Why a run stopped holding its claim before recording a result. */
export type LossReason = 'heartbeat' | 'complete' | 'fail' | 'expiry' | 'cancelled';

type Outcome = { ok: true } | { ok: false; error: unknown; timedOut?: boolean };

const SUCCESS: Outcome = { ok: true };

/**
 * Starts the handler and calls `done` once with its outcome; a synchronous throw counts as a
 * failure too. `done` always runs in a later microtask, never inside this call, so a
 * handler that returns at once cannot make the caller's loop recurse. One promise per run
 * (rather than an async wrapper per layer): this is the hot path of short jobs.
 */
function runHandler(task: ResolvedTask | undefined, job: Job, ctx: TaskContext, done: (outcome: Outcome) => void): void {
  let result: unknown;
  try {
    if (task === undefined) throw new SkiplockError(`no handler for task ${job.task}`);
    result = task.handler(job.payload as never, ctx);
  } catch (error) {
    result = Promise.reject(error);
  }
  Promise.resolve(result).then(
    () => done(SUCCESS),
    (error: unknown) => done({ ok: false, error }),
  );
}

const MAX_ERROR_LENGTH = 4000;

function describeFailure(err: unknown): string {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : `thrown: ${errorMessage(err)}`;
  return text.length > MAX_ERROR_LENGTH ? `${text.slice(0, MAX_ERROR_LENGTH)}…` : text;
}

/** A handler's context. Signal and logger are made on first use: most handlers of a busy worker touch neither. */
class RunContext implements TaskContext {
  constructor(
    private readonly run: JobRun,
    private readonly executor: Executor,
    readonly pool: pg.Pool,
  ) {}

  get job(): Job {
    return this.run.job;
  }

  get signal(): AbortSignal {
    return this.run.controller.signal;
  }

  get logger(): JobRun['logger'] {
    return this.run.logger;
  }

  transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.executor.transaction(this.run, fn);
  }
}

/** Runs claimed jobs: the handler with its context and time limit, then the fenced result. */
export class Executor {
  constructor(private readonly deps: ExecutorDeps) {}

  /**
   * Runs the handler, then hands its result to the completer (or drops it when the claim is
   * gone). Calls deps.release(run) once the run no longer holds its slot.
   */
  execute(run: JobRun, task: ResolvedTask | undefined): void {
    const { job } = run;
    const ctx = new RunContext(run, this, this.deps.pool);
    const t0 = performance.now();
    const timeoutMs = job.timeoutMs ?? task?.timeoutMs;
    const settle = (outcome: Outcome): void => {
      try {
        this.settle(run, task, t0, outcome);
      } finally {
        this.deps.release(run);
      }
    };
    if (timeoutMs === undefined) {
      runHandler(task, job, ctx, settle);
      return;
    }
    let finished = false;
    const timer = setTimeout(() => {
      if (finished) return;
      finished = true;
      const error = new JobAbortedError('timeout', `timed out after ${timeoutMs} ms`);
      if (run.state === 'running') run.controller.abort(error);
      settle({ ok: false, error, timedOut: true });
    }, timeoutMs);
    runHandler(task, job, ctx, (outcome) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      settle(outcome);
    });
  }

  private settle(run: JobRun, task: ResolvedTask | undefined, t0: number, outcome: Outcome): void {
    const { job } = run;
    const seconds = (performance.now() - t0) / 1000;
    const durationMs = Math.round(seconds * 1000);
    run.durationMs = durationMs;
    run.metrics.duration.observe(seconds);

    if (run.state === 'committed') {
      run.metrics.completed('succeeded');
      if (!outcome.ok) run.logger.warn({ err: describeFailure(outcome.error) }, 'handler threw after its transaction committed; the job stays succeeded');
      run.logger.info({ durationMs }, 'job succeeded');
      return;
    }
    if (run.state !== 'running') {
      run.logger.warn({ durationMs, state: run.state }, 'job ended after its claim was lost; its result is discarded');
      return;
    }
    // The slot is free at once; the result is written by the next batched flush.
    run.state = 'finishing';
    this.deps.release(run);
    if (outcome.ok) {
      this.deps.completer.add({ run, ok: true, delayMs: 0, error: null });
    } else {
      const delayMs = backoffDelay(job.attempt, task?.backoff ?? resolveBackoff());
      this.deps.completer.add({ run, ok: false, delayMs, error: describeFailure(outcome.error) });
    }
  }

  /** The completer wrote a result: count it and log it, or find out why it was refused. */
  written(result: PendingResult, status: FinishStatus): void {
    const { run } = result;
    const durationMs = run.durationMs;
    if (status === undefined) {
      void this.refused(run, result.ok ? 'complete' : 'fail');
    } else if (status === 'succeeded') {
      run.metrics.completed('succeeded');
      if (run.logs('info')) run.logger.info({ durationMs }, 'job succeeded');
    } else if (status === 'queued') {
      run.metrics.completed('retried');
      run.logger.warn({ err: result.error, durationMs, retryInMs: result.delayMs }, 'job failed; will retry');
    } else {
      run.metrics.completed('failed');
      run.logger.error({ err: result.error, durationMs }, 'job failed; no attempts left');
    }
  }

  /** The completer could not write a result in time. */
  gaveUp(result: PendingResult, err: unknown): void {
    result.run.logger.error(
      { err: this.deps.describe(err) },
      'could not record the job result; it returns to the queue when its lease expires',
    );
  }

  /**
   * The claim is gone (reaped, re-claimed or cancelled): drop the result, abort the
   * handler and free the slot. Only a loss by someone else's hand counts as a lease loss.
   */
  lose(run: JobRun, reason: LossReason): void {
    if (run.state === 'lost' || run.state === 'handedBack' || run.state === 'committed') return;
    // A run already writing its result (`finishing`) may still lose: the write matched nothing.
    run.state = 'lost';
    if (reason === 'cancelled') {
      run.controller.abort(new JobAbortedError('cancelled', 'the job was cancelled'));
      run.metrics.completed('cancelled');
      run.logger.info('job cancelled while running; its handler was aborted');
    } else {
      run.controller.abort(new JobAbortedError('lease_lost', `lease lost (detected by ${reason})`));
      run.metrics.leaseLosses.inc();
      run.metrics.completed('lease_lost');
      run.logger.warn({ detectedBy: reason }, 'lease lost: the job was reaped or re-claimed; this worker changes nothing');
    }
    this.deps.release(run);
  }

  /** A fenced write matched no row: tell a cancellation from a lease lost to someone else. */
  private async refused(run: JobRun, write: 'complete' | 'fail'): Promise<void> {
    const status = await this.deps.store.statusOf(run.id).catch(() => undefined);
    this.lose(run, status === 'cancelled' ? 'cancelled' : write);
  }

  /** ctx.transaction: the handler's writes and the fenced completion in one transaction. */
  async transaction<T>(run: JobRun, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    if (run.transactionStarted) throw new SkiplockError(`ctx.transaction may be called once per run (job ${run.id})`);
    run.transactionStarted = true;
    if (run.state !== 'running') {
      throw new JobAbortedError(run.state === 'handedBack' ? 'shutdown' : 'lease_lost', `job ${run.id} is ${run.state}: no transaction`);
    }
    const { client, release } = await checkout(this.deps.pool);
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      if (run.state !== 'running') throw new JobAbortedError('lease_lost', `job ${run.id} is ${run.state}: rolled back`);
      if (!(await this.deps.store.complete(run.id, run.token, client))) {
        await client.query('ROLLBACK');
        await this.refused(run, 'complete');
        throw new JobAbortedError('lease_lost', `lease lost before commit: job ${run.id} rolled back`);
      }
      run.state = 'finishing'; // the heartbeat must not take our own completion for a loss
      await client.query('COMMIT');
      run.state = 'committed';
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      release();
    }
  }
}
