import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { JobStore } from '../db/jobstore.js';
import { checkout } from '../db/pool.js';
import { SkiplockError, errorMessage } from '../errors.js';
import type { Job } from '../job.js';
import type { Tracing } from '../observability/tracing.js';
import { DEFAULT_BACKOFF, backoffDelay } from './backoff.js';
import { Completer, type FinishStatus, type PendingResult } from './completer.js';
import type { ResolvedTask } from './options.js';
import { JobAbortedError, type JobRun, type LossReason } from './run.js';
import type { TaskContext } from './types.js';

export interface ExecutorOptions {
  store: JobStore;
  pool: pg.Pool;
  tasks: ReadonlyMap<string, ResolvedTask>;
  /** How long the completer keeps retrying a batch the database refuses (the lease). */
  retryForMs: number;
  logger: Logger;
  /** One line for a database error, without secrets. */
  describe(err: unknown): string;
  /**
   * Capacity may have grown: a slot was freed (`ranMs`: how long its run held it) or
   * written results shrank the backlog (`ranMs` undefined). The one event the executor sends.
   */
  onCapacity(ranMs: number | undefined): void;
  /** OpenTelemetry spans per attempt (undefined: off, or the API cannot be loaded). */
  tracing?: Tracing | undefined;
}

type Outcome = { ok: true } | { ok: false; error: unknown };

const SUCCESS: Outcome = { ok: true };
const MAX_ERROR_LENGTH = 4000;

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

  get logger(): Logger {
    return this.run.logger;
  }

  transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.executor.transaction(this.run, fn);
  }
}

/**
 * Runs claimed jobs in the worker's slots: the handler with its context and time limit, then
 * its result to the completer, which records it fenced by the claim. A result flows one way:
 * executor → completer → store, and back only as the outcome to count and log. A slot is
 * held while its run is `running` or `committed` and freed by one move out of those states
 * (release), which sends the one event the worker listens to, onCapacity.
 */
export class Executor {
  /** Runs holding a slot, by id. */
  private readonly slots = new Map<string, JobRun>();
  private readonly completer: Completer;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly options: ExecutorOptions) {
    this.completer = new Completer(options.store, {
      retryForMs: options.retryForMs,
      onRetry: (err, attempt) => options.logger.warn({ err: options.describe(err), attempt }, 'recording job results failed; retrying'),
      onWritten: (result, status) => this.written(result, status),
      onGaveUp: (result, err) =>
        result.run.logger.error({ err: options.describe(err) }, 'could not record the job result; it returns to the queue when its lease expires'),
      onFlushed: () => options.onCapacity(undefined),
    });
  }

  /** Slots taken. */
  get runningCount(): number {
    return this.slots.size;
  }

  /** Results waiting to be written or being written. */
  get backlog(): number {
    return this.completer.backlog;
  }

  /** Whether a run of this job holds a slot. */
  holds(id: string): boolean {
    return this.slots.has(id);
  }

  /** Runs whose leases must be renewed: handlers running, and results not yet written. */
  held(): JobRun[] {
    const runs = this.completer.pendingRuns();
    for (const run of this.slots.values()) if (run.state === 'running') runs.push(run);
    return runs;
  }

  /** Ids of every job the executor holds (running, or its result being written). */
  heldIds(): string[] {
    return [...this.slots.keys(), ...this.completer.pendingRuns().map((r) => r.id)];
  }

  /** How long each running handler has run so far, ms. */
  elapsed(now: number): number[] {
    const out: number[] = [];
    for (const run of this.slots.values()) if (run.state === 'running') out.push(now - run.startedAt);
    return out;
  }

  /** Starts a buffered run's handler in a free slot. */
  execute(run: JobRun): void {
    const { job } = run;
    const task = this.options.tasks.get(job.task);
    run.state = 'running';
    run.startedAt = performance.now();
    this.slots.set(job.id, run);
    // Wait: from run_at to the claim (database clock), plus the time spent in the buffer.
    run.metrics.wait.observe(Math.max(0, (job.startedAtMs - job.runAtMs + (run.startedAt - run.claimedAt)) / 1000));
    const ctx = new RunContext(run, this, this.options.pool);
    const timeoutMs = job.timeoutMs ?? task?.timeoutMs;
    const span = this.options.tracing?.startAttempt(job);
    if (span !== undefined) {
      // The attempt's span: the handler runs in its context and it ends with the handler.
      run.span = span;
      span.within(() => this.start(run, task, ctx, timeoutMs));
      return;
    }
    this.start(run, task, ctx, timeoutMs);
  }

  /** Runs the handler, under its time limit when it has one. */
  private start(run: JobRun, task: ResolvedTask | undefined, ctx: TaskContext, timeoutMs: number | undefined): void {
    const { job } = run;
    if (timeoutMs === undefined) {
      runHandler(task, job, ctx, (outcome) => this.settle(run, task, outcome));
      return;
    }
    let finished = false;
    const timer = setTimeout(() => {
      if (finished) return;
      finished = true;
      const error = new JobAbortedError('timeout', `timed out after ${timeoutMs} ms`);
      if (run.state === 'running') run.controller.abort(error);
      this.settle(run, task, { ok: false, error });
    }, timeoutMs);
    runHandler(task, job, ctx, (outcome) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      this.settle(run, task, outcome);
    });
  }

  /** The handler returned (or timed out): free the slot and pass the result on. */
  private settle(run: JobRun, task: ResolvedTask | undefined, outcome: Outcome): void {
    const seconds = (performance.now() - run.startedAt) / 1000;
    const durationMs = Math.round(seconds * 1000);
    run.durationMs = durationMs;
    run.metrics.duration.observe(seconds);
    run.span?.end(outcome);
    switch (run.state) {
      case 'running':
        // The slot is free at once; the result is written by the next batched flush.
        run.state = 'finishing';
        this.release(run);
        this.completer.add(
          outcome.ok
            ? { run, ok: true, delayMs: 0, error: null }
            : { run, ok: false, delayMs: backoffDelay(run.job.attempt, task?.backoff ?? DEFAULT_BACKOFF), error: describeFailure(outcome.error) },
        );
        return;
      case 'committed':
        run.metrics.completed('succeeded');
        if (!outcome.ok) run.logger.warn({ err: describeFailure(outcome.error) }, 'handler threw after its transaction committed; the job stays succeeded');
        run.logger.info({ durationMs }, 'job succeeded');
        this.release(run);
        return;
      case 'finishing': // ctx.transaction is committing: it records the result
        this.release(run);
        return;
      default: {
        // Lost or handed back meanwhile: the slot went with it, and the result goes nowhere.
        const ordinary = run.state === 'handedBack' || run.lostBy === 'cancelled';
        run.logger[ordinary ? 'info' : 'warn']({ durationMs, state: run.state, lostBy: run.lostBy }, 'job ended after its claim was given up; its result is discarded');
      }
    }
  }

  /** Frees a run's slot: the one place that does, once per run. */
  private release(run: JobRun): void {
    if (this.slots.get(run.id) !== run) return;
    this.slots.delete(run.id);
    if (this.slots.size === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
    this.options.onCapacity(performance.now() - run.startedAt);
  }

  /** The completer wrote a result: count it and log it, or find out why it was refused. */
  private written(result: PendingResult, status: FinishStatus): void {
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

  /** A fenced write matched no row: tell a cancellation from a lease lost to someone else. */
  private async refused(run: JobRun, write: 'complete' | 'fail'): Promise<void> {
    const status = await this.options.store.statusOf(run.id).catch(() => undefined);
    this.lose(run, status === 'cancelled' ? 'cancelled' : write);
  }

  /**
   * The claim is gone (reaped, re-claimed or cancelled): abort the handler, drop its result
   * and free its slot. A buffered run must have left the buffer first. Only a loss by
   * someone else's hand counts as a lease loss.
   */
  lose(run: JobRun, reason: LossReason): void {
    if (run.state === 'lost' || run.state === 'handedBack' || run.state === 'committed') return;
    // A run already writing its result (`finishing`) may still lose: the write matched nothing.
    run.state = 'lost';
    run.lostBy = reason;
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
    this.release(run);
  }

  /** Resolves when no slot is taken, or after timeoutMs. */
  whenIdle(timeoutMs: number): Promise<void> {
    if (this.slots.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Shutdown: aborts every handler still running; returns their runs, now handed back. */
  abortRunning(): JobRun[] {
    const unfinished = [...this.slots.values()].filter((run) => run.state === 'running');
    for (const run of unfinished) {
      run.state = 'handedBack';
      run.controller.abort(new JobAbortedError('shutdown', 'the worker is shutting down'));
      this.release(run);
    }
    return unfinished;
  }

  /** Resolves when every result has been written (or given up on), or after timeoutMs. */
  drain(timeoutMs: number): Promise<void> {
    return Promise.race([this.completer.drain(), new Promise<void>((r) => setTimeout(r, timeoutMs).unref())]);
  }

  /** ctx.transaction: the handler's writes and the fenced completion in one transaction. */
  async transaction<T>(run: JobRun, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    if (run.transactionStarted) throw new SkiplockError(`ctx.transaction may be called once per run (job ${run.id})`);
    run.transactionStarted = true;
    if (run.state !== 'running') {
      throw new JobAbortedError(run.state === 'handedBack' ? 'shutdown' : 'lease_lost', `job ${run.id} is ${run.state}: no transaction`);
    }
    const { client, release } = await checkout(this.options.pool);
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      if (run.state !== 'running') throw new JobAbortedError('lease_lost', `job ${run.id} is ${run.state}: rolled back`);
      if (!(await this.options.store.complete(run, client))) {
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
