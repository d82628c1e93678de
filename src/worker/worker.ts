import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import type { Logger } from 'pino';
import {
  DEFAULT_SCHEMA,
  MAX_TIMER_MS,
  channelFor,
  checkDuration,
  checkInteger,
  checkRetention,
  validateName,
  validateSchema,
} from '../config.js';
import { type ClaimedJob, JobStore } from '../db/jobstore.js';
import { type ConnectionOptions, createPool, describeDbError } from '../db/pool.js';
import { loadQueries } from '../db/queries.js';
import { SkiplockError, errorMessage } from '../errors.js';
import { Periodic } from '../maintenance/periodic.js';
import { Pruner, type Retention } from '../maintenance/pruner.js';
import { Reaper } from '../maintenance/reaper.js';
import { Listener } from '../notifications/listener.js';
import { silentLogger } from '../observability/logger.js';
import { Metrics } from '../observability/metrics.js';
import { type BackoffOptions, resolveBackoff } from './backoff.js';
import { Completer } from './completer.js';
import { Executor, type ResolvedTask } from './executor.js';
import { Handoff } from './handoff.js';
import { JobAbortedError, JobRun } from './run.js';
import type { TaskDefinition, TaskHandler, TaskList } from './types.js';

export interface WorkerOptions extends ConnectionOptions {
  /** Handlers by task name; the worker claims jobs of these tasks only. */
  tasks: TaskList;
  /** Use this pool instead of opening one (it is not closed by stop()). */
  pool?: pg.Pool;
  /** Schema of the jobs table (default "skiplock"). */
  schema?: string;
  /** Jobs run at once (default 10). */
  concurrency?: number;
  /**
   * Most claimed jobs held in a local buffer on top of the running ones (default 10 ×
   * `concurrency`; 0 = claim only for free slots). The worker buffers only as many as its
   * recent handler durations say it will start within about 100 ms, so short jobs are
   * claimed in large batches while long ones are never hoarded. Buffered jobs are claimed:
   * their leases are renewed, they count towards their concurrency key, and shutdown hands
   * them back at once.
   */
  prefetch?: number;
  /** Queues to take jobs from (default: all). */
  queues?: readonly string[];
  /** Lease length (default 30 s): a job whose lease is not renewed for this long is reaped. */
  leaseMs?: number;
  /** How often leases are renewed (default lease / 3). */
  heartbeatIntervalMs?: number;
  /** Fallback poll for delayed jobs and missed notifications (default 2 s). */
  pollIntervalMs?: number;
  /** How often this worker's reaper looks for expired leases (default 5 s; 0 = no reaper here). */
  reaperIntervalMs?: number;
  /**
   * How long succeeded jobs stay in the table (default 24 h; 0 = deleted in the statement
   * that records their success, the fastest setting; Infinity = kept forever).
   */
  keepSucceededMs?: number;
  /** How long failed and cancelled jobs stay in the table (default Infinity: kept). */
  keepFailedMs?: number;
  /** How often this worker's pruner deletes jobs past their retention (default 60 s; 0 = no pruner here). */
  pruneIntervalMs?: number;
  /** How long stop() lets running jobs finish before handing them back (default 10 s). */
  shutdownGraceMs?: number;
  /** Retry delays (defaults: 1 s doubling to 1 h, 25% jitter); tasks may override. */
  backoff?: Partial<BackoffOptions>;
  /** Name stored in locked_by (default host:pid:random). */
  workerId?: string;
  logger?: Logger;
  metrics?: Metrics;
  /** Wake on NOTIFY (default true); without it the worker only polls. */
  listen?: boolean;
  /**
   * Take jobs handed over directly by producers while idle (default true; needs `listen`):
   * a single due job enqueued while this worker waits is inserted already claimed for it and
   * sent on its own channel, which saves the claim's round trip. See docs/performance.md.
   */
  handoff?: boolean;
}

type WorkerState = 'idle' | 'running' | 'stopping' | 'stopped';

const REAP_BATCH = 1000;
/** How long a hand-off offer stands without renewal (at most; half the lease when shorter). */
const HANDOFF_TTL_MS = 5000;
/** The buffer holds what the worker expects to start within this many ms. */
const BUFFER_HORIZON_MS = 100;
/** Weight of the newest handler duration in the moving average. */
const DURATION_WEIGHT = 0.05;
const PRUNE_BATCH = 1000;
const DAY_MS = 86_400_000;

function toDefinition(entry: TaskHandler<never> | TaskDefinition<never>): TaskDefinition<never> {
  return typeof entry === 'function' ? { handler: entry } : entry;
}

/**
 * A worker: claims due jobs of its tasks up to its free capacity in one statement, runs
 * them, renews their leases in one statement per heartbeat, records each result fenced by
 * the claim's token, and reaps expired leases. Wakes on NOTIFY and polls as a fallback.
 */
export class Worker {
  readonly id: string;
  readonly schema: string;
  readonly metrics: Metrics;
  readonly logger: Logger;
  private readonly pool: pg.Pool;
  private readonly ownsPool: boolean;
  private readonly store: JobStore;
  private readonly tasks: ReadonlyMap<string, ResolvedTask>;
  private readonly taskNames: string[];
  private readonly queues: string[] | undefined;
  private readonly concurrency: number;
  private readonly prefetch: number;
  private readonly leaseMs: number;
  private readonly graceMs: number;
  private readonly connectionString: string | undefined;
  private readonly listener: Listener | undefined;
  private readonly handoff: Handoff | undefined;
  private readonly poller: Periodic;
  private readonly heartbeat: Periodic;
  private readonly reaper: Reaper | undefined;
  private readonly pruner: Pruner | undefined;
  private readonly executor: Executor;
  private readonly completer: Completer;
  /** Results waiting to be written beyond which the worker stops claiming (back-pressure). */
  private readonly maxBacklog: number;
  private readonly active = new Map<string, JobRun>();
  /** Claimed jobs waiting for a slot, by id. */
  private readonly buffer = new Map<string, JobRun>();
  /**
   * The same jobs in claim order, from `bufferHead` on; entries that left the buffer
   * meanwhile (handed back, lost) are skipped. A Map iterated from its start after many
   * deletions walks over every deleted entry, which cost a few per cent of a drain.
   */
  private bufferOrder: JobRun[] = [];
  private bufferHead = 0;
  /** Moving average of handler durations in ms (undefined until a job has finished). */
  private averageRunMs: number | undefined;
  /** Median time the running jobs had run at the last heartbeat. */
  private runningMedianMs = 0;
  /** A buffered job that waits longer than this for a slot is handed back. */
  private readonly maxBufferWaitMs: number;
  /** A buffered job not renewed for this long may have lost its lease: it is not started. */
  private readonly maxBufferedSilenceMs: number;
  private state: WorkerState = 'idle';
  private fetching: Promise<void> | undefined;
  private fetchAgain = false;
  /** True while there may be due jobs we did not take (last claim was full, or a wake-up came). */
  private moreMayBeWaiting = true;
  private idleWaiters: Array<() => void> = [];
  private stopping: Promise<void> | undefined;

  constructor(options: WorkerOptions) {
    this.schema = validateSchema(options.schema ?? DEFAULT_SCHEMA);
    this.concurrency = checkInteger(options.concurrency ?? 10, 'concurrency', 1, 10_000);
    this.prefetch = checkInteger(options.prefetch ?? Math.min(100_000, 10 * this.concurrency), 'prefetch', 0, 100_000);
    this.leaseMs = checkDuration(options.leaseMs ?? 30_000, 'lease', 1000);
    const heartbeatMs = checkDuration(options.heartbeatIntervalMs ?? Math.floor(this.leaseMs / 3), 'heartbeat interval', 10);
    if (heartbeatMs >= this.leaseMs) throw new SkiplockError('the heartbeat interval must be shorter than the lease');
    this.maxBufferWaitMs = Math.max(2 * heartbeatMs, 5000);
    this.maxBufferedSilenceMs = this.leaseMs - heartbeatMs;
    const pollMs = checkDuration(options.pollIntervalMs ?? 2000, 'poll interval', 10);
    const reaperMs = checkDuration(options.reaperIntervalMs ?? 5000, 'reaper interval', 0);
    const pruneMs = checkDuration(options.pruneIntervalMs ?? 60_000, 'prune interval', 0);
    const retention: Retention = {
      succeededMs: checkRetention(options.keepSucceededMs ?? DAY_MS, 'succeeded job retention'),
      failedMs: checkRetention(options.keepFailedMs ?? Number.POSITIVE_INFINITY, 'failed job retention'),
    };
    this.graceMs = checkDuration(options.shutdownGraceMs ?? 10_000, 'shutdown grace', 0);
    this.queues = options.queues?.map((q) => validateName('queue', q));
    if (this.queues !== undefined && this.queues.length === 0) throw new SkiplockError('queues must not be empty');
    this.id = options.workerId ?? `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.logger = (options.logger ?? silentLogger()).child({ worker: this.id });
    this.metrics = options.metrics ?? new Metrics();
    this.connectionString = options.connectionString;

    const workerBackoff = resolveBackoff(options.backoff);
    const tasks = new Map<string, ResolvedTask>();
    for (const [name, entry] of Object.entries(options.tasks)) {
      validateName('task', name);
      const def = toDefinition(entry);
      if (typeof def.handler !== 'function') throw new SkiplockError(`task ${name} has no handler function`);
      const timeoutMs = def.options?.timeoutMs;
      if (timeoutMs !== undefined) {
        checkDuration(timeoutMs, `task ${name} timeout`, 1, MAX_TIMER_MS);
        if (timeoutMs > this.leaseMs) {
          throw new SkiplockError(`the lease (${this.leaseMs} ms) is shorter than task ${name}'s timeout (${timeoutMs} ms)`);
        }
      }
      tasks.set(name, { handler: def.handler, backoff: resolveBackoff(workerBackoff, def.options?.backoff), timeoutMs });
    }
    if (tasks.size === 0) throw new SkiplockError('a worker needs at least one task handler');
    this.tasks = tasks;
    this.taskNames = [...tasks.keys()];

    this.ownsPool = options.pool === undefined;
    this.pool =
      options.pool ??
      createPool({ ...options, max: options.max ?? this.concurrency + 4, applicationName: options.applicationName ?? 'skiplock worker' }, (err) =>
        this.logger.warn({ err: errorMessage(err) }, 'idle database connection failed'),
      );
    this.store = new JobStore(this.pool, loadQueries(this.schema), retention.succeededMs === 0, channelFor(this.schema));
    this.completer = new Completer(this.store, {
      retryForMs: this.leaseMs,
      onRetry: (err, attempt) =>
        this.logger.warn({ err: describeDbError(err, this.connectionString).message, attempt }, 'recording job results failed; retrying'),
      onWritten: (result, status) => this.executor.written(result, status),
      onGaveUp: (result, err) => this.executor.gaveUp(result, err),
      onFlushed: () => {
        if (this.moreMayBeWaiting) this.requestFetch();
      },
    });
    this.maxBacklog = this.concurrency * 4 + 100 + 2 * this.prefetch;
    this.executor = new Executor({
      store: this.store,
      pool: this.pool,
      completer: this.completer,
      describe: (err) => describeDbError(err, this.connectionString).message,
      release: (run) => this.release(run),
    });
    this.metrics.setQueueDepthSource(() => this.store.queueDepth());

    const logError = (what: string) => (err: unknown) =>
      this.logger.error({ err: describeDbError(err, this.connectionString).message }, `${what} failed`);
    this.poller = new Periodic(pollMs, async () => this.requestFetch(), logError('poll'), 0.1);
    this.heartbeat = new Periodic(heartbeatMs, () => this.renewLeases(), logError('lease renewal'));
    this.reaper =
      reaperMs > 0 ? new Reaper({ store: this.store, intervalMs: reaperMs, batch: REAP_BATCH, logger: this.logger, metrics: this.metrics }) : undefined;
    this.pruner =
      pruneMs > 0 && Pruner.needed(retention)
        ? new Pruner({ store: this.store, retention, intervalMs: pruneMs, batch: PRUNE_BATCH, logger: this.logger, metrics: this.metrics })
        : undefined;
    const listen = options.listen ?? true;
    this.handoff =
      listen && (options.handoff ?? true)
        ? new Handoff({
            store: this.store,
            workerId: this.id,
            channel: `skiplock_w_${randomBytes(8).toString('hex')}`,
            tasks: this.taskNames,
            queues: this.queues,
            leaseMs: this.leaseMs,
            ttlMs: Math.min(HANDOFF_TTL_MS, Math.max(1000, this.leaseMs / 2)),
            logger: this.logger,
            free: () => this.concurrency - this.active.size - this.buffer.size,
            known: () => [...this.buffer.keys(), ...this.active.keys(), ...this.completer.pendingRuns().map((r) => r.id)],
            adopt: (claimed) => this.takeHandoff(claimed),
            describe: (err) => describeDbError(err, this.connectionString).message,
          })
        : undefined;
    if (listen) {
      const connection: pg.ClientConfig =
        options.connectionString !== undefined ? { connectionString: options.connectionString } : { ...(options.pool?.options ?? {}) };
      const handoff = this.handoff;
      this.listener = new Listener({
        connection: { ...connection, application_name: `skiplock listener ${this.id}`.slice(0, 63) },
        channel: channelFor(this.schema),
        logger: this.logger,
        onNotify: () => {
          this.metrics.notifications.inc();
          this.moreMayBeWaiting = true;
          this.requestFetch();
        },
        onReconnect: () => {
          this.metrics.notifyReconnects.inc();
          handoff?.listenerBack();
          this.moreMayBeWaiting = true;
          this.requestFetch();
        },
        onLost: () => handoff?.listenerLost(),
        handoff: handoff ? { channel: handoff.channel, onPayload: (text) => this.receiveHandoff(text) } : undefined,
      });
    }
  }

  /** Jobs running now. */
  get runningCount(): number {
    return this.active.size;
  }

  get isRunning(): boolean {
    return this.state === 'running';
  }

  /** Health for /healthz. */
  health(): { ok: boolean; state: WorkerState; running: number; buffered: number; listening: boolean | null } {
    return {
      ok: this.state === 'running',
      state: this.state,
      running: this.active.size,
      buffered: this.buffer.size,
      listening: this.listener ? this.listener.isConnected : null,
    };
  }

  /** Connects the listener and starts fetching, renewing and reaping. */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new SkiplockError(`worker cannot start: it is ${this.state}`);
    try {
      await this.pool.query('SELECT 1');
      await this.listener?.start();
    } catch (err) {
      if (this.ownsPool) await this.pool.end().catch(() => undefined);
      this.state = 'stopped';
      throw describeDbError(err, this.connectionString);
    }
    this.state = 'running';
    this.handoff?.start();
    this.poller.start();
    this.heartbeat.start();
    this.reaper?.start();
    this.pruner?.start();
    this.logger.info(
      { tasks: this.taskNames, queues: this.queues ?? 'all', concurrency: this.concurrency, leaseMs: this.leaseMs },
      'worker started',
    );
    this.requestFetch();
  }

  /**
   * Graceful stop: no more claims; running jobs get up to the grace period (default the
   * worker's shutdownGraceMs) to finish; the rest are aborted and handed back to the queue
   * at once. Resolves when connections are closed.
   */
  stop(options: { graceMs?: number } = {}): Promise<void> {
    this.stopping ??= this.shutdown(options.graceMs ?? this.graceMs);
    return this.stopping;
  }

  private async shutdown(graceMs: number): Promise<void> {
    const wasRunning = this.state === 'running';
    this.state = 'stopping';
    this.logger.info({ running: this.active.size, graceMs }, 'worker stopping');
    await this.poller.stop();
    // No more hand-offs; any still on their way are handed back as they arrive.
    await this.handoff?.close();
    await this.listener?.stop();
    await this.fetching;
    await this.handBackBuffered();
    if (wasRunning && this.active.size > 0) {
      await this.waitForIdle(graceMs);
    }
    const unfinished = [...this.active.values()].filter((run) => run.state === 'running');
    for (const run of unfinished) {
      run.state = 'handedBack';
      run.controller.abort(new JobAbortedError('shutdown', 'the worker is shutting down'));
    }
    await this.heartbeat.stop();
    await this.reaper?.stop();
    await this.pruner?.stop();
    if (unfinished.length > 0) {
      try {
        const back = await this.store.handBack(unfinished.map((r) => ({ id: r.id, token: r.token })));
        for (const run of unfinished) {
          if (back.has(run.id)) {
            run.metrics.completed('handed_back');
            run.logger.warn('job handed back to the queue at shutdown');
          }
        }
      } catch (err) {
        this.logger.error(
          { err: describeDbError(err, this.connectionString).message, jobs: unfinished.map((r) => r.id) },
          'could not hand jobs back; they return to the queue when their lease expires',
        );
      }
      for (const run of unfinished) this.release(run);
    }
    // Results still being written get a moment to land.
    await Promise.race([this.completer.drain(), new Promise((r) => setTimeout(r, Math.min(this.leaseMs, 5000)).unref())]);
    // Jobs handed to this worker whose notification never arrived go back at once.
    await this.handoff?.handBackUnknown().catch((err: unknown) =>
      this.logger.warn({ err: describeDbError(err, this.connectionString).message }, 'could not check for hand-offs that never arrived'),
    );
    this.metrics.setQueueDepthSource(undefined);
    if (this.ownsPool) await this.pool.end().catch(() => undefined);
    this.state = 'stopped';
    this.logger.info({ handedBack: unfinished.length }, 'worker stopped');
  }

  /** Shutdown: buffered jobs never started, so they go back to the queue at once. */
  private handBackBuffered(): Promise<void> {
    return this.handBackFromBuffer([...this.buffer.values()]);
  }

  /**
   * On each heartbeat: the median time the running jobs have run so far bounds the buffer
   * (jobs that turn out long stop the buffering before they finish), and buffered jobs that
   * have waited too long go back to the queue, where idle workers can take them.
   */
  private async reviewBuffer(): Promise<void> {
    const now = performance.now();
    const elapsed: number[] = [];
    for (const run of this.active.values()) if (run.state === 'running') elapsed.push(now - run.startedAt);
    elapsed.sort((a, b) => a - b);
    this.runningMedianMs = elapsed.length > 0 ? elapsed[Math.floor(elapsed.length / 2)]! : 0;
    const stale = [...this.buffer.values()].filter((run) => now - run.claimedAt > this.maxBufferWaitMs);
    if (stale.length > 0) {
      this.logger.info({ jobs: stale.length }, 'buffered jobs waited too long for a slot; handing them back');
      await this.handBackFromBuffer(stale);
    }
  }

  private async handBackFromBuffer(runs: JobRun[]): Promise<void> {
    if (runs.length === 0) return;
    for (const run of runs) {
      this.buffer.delete(run.id);
      run.state = 'handedBack';
    }
    if (this.buffer.size === 0) {
      this.bufferOrder = [];
      this.bufferHead = 0;
    }
    try {
      await this.store.handBack(runs.map((r) => ({ id: r.id, token: r.token })));
    } catch (err) {
      this.logger.error(
        { err: describeDbError(err, this.connectionString).message, jobs: runs.map((r) => r.id) },
        'could not hand buffered jobs back; they return to the queue when their lease expires',
      );
    }
  }

  private waitForIdle(timeoutMs: number): Promise<void> {
    if (this.active.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const waiter = (): void => done();
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.idleWaiters.push(waiter);
    });
  }

  /** Asks for a claim round; rounds never overlap, a request during one starts another. */
  requestFetch(): void {
    if (this.state !== 'running') return;
    if (this.fetching) {
      this.fetchAgain = true;
      return;
    }
    if (!this.wantsJobs()) return;
    this.fetching = this.fetchLoop().finally(() => {
      this.fetching = undefined;
      // A request that came after the loop's last check and before this point would be lost.
      if (this.fetchAgain) {
        this.fetchAgain = false;
        this.requestFetch();
      } else if (!this.moreMayBeWaiting) {
        // Nothing more to claim: offer the free slots for hand-offs.
        this.handoff?.offer();
      }
    });
  }

  /**
   * How many claimed jobs to keep buffered: as many as the worker expects to start within
   * BUFFER_HORIZON_MS by its recent handler durations, up to `prefetch`. None until a job
   * has finished, so a worker never hoards jobs whose length it does not know.
   */
  private bufferTarget(): number {
    if (this.prefetch === 0 || this.averageRunMs === undefined) return 0;
    const perSlot = Math.max(this.averageRunMs, this.runningMedianMs, 0.01);
    return Math.min(this.prefetch, Math.floor((this.concurrency * BUFFER_HORIZON_MS) / perSlot));
  }

  /**
   * Whether a claim round is worth its statement: a slot is free and nothing is buffered
   * for it, or the buffer has run down to half its target (so claims come in batches).
   */
  private wantsJobs(): boolean {
    if (this.state !== 'running' || this.completer.backlog >= this.maxBacklog) return false;
    if (this.buffer.size === 0 && this.active.size < this.concurrency) return true;
    const target = this.bufferTarget();
    return target > 0 && this.buffer.size <= target / 2;
  }

  private async fetchLoop(): Promise<void> {
    do {
      this.fetchAgain = false;
      if (!this.wantsJobs()) return;
      const limit = this.concurrency + this.bufferTarget() - this.active.size - this.buffer.size;
      if (limit <= 0) return;
      let claimed: ClaimedJob[];
      try {
        claimed = await this.store.claim({
          tasks: this.taskNames,
          queues: this.queues,
          limit,
          leaseMs: this.leaseMs,
          workerId: this.id,
        });
      } catch (err) {
        this.logger.warn({ err: describeDbError(err, this.connectionString).message }, 'claim failed; will retry at the next poll');
        return;
      }
      this.metrics.claims.inc({ result: claimed.length > 0 ? 'jobs' : 'empty' });
      this.moreMayBeWaiting = claimed.length === limit;
      if (this.state !== 'running') {
        await this.store.handBack(claimed.map((c) => ({ id: c.job.id, token: c.token }))).catch(() => undefined);
        return;
      }
      const now = performance.now();
      for (const { job, token } of claimed) {
        const run = new JobRun(job, token, this.logger, this.metrics.forJob(job.queue, job.task), now);
        this.buffer.set(job.id, run);
        this.bufferOrder.push(run);
      }
      this.startBuffered();
    } while (this.fetchAgain || (this.moreMayBeWaiting && this.wantsJobs()));
  }

  /**
   * Fills free slots from the buffer, in claim order. A buffered job whose lease has not been
   * renewed for most of its length (the database unreachable) may already be reaped and
   * re-claimed elsewhere: it is dropped, not started.
   */
  private startBuffered(): void {
    if (this.state !== 'running') return;
    let started = false;
    const now = performance.now();
    const order = this.bufferOrder;
    while (this.bufferHead < order.length && this.active.size < this.concurrency) {
      const run = order[this.bufferHead++]!;
      if (this.buffer.get(run.id) !== run) continue; // left the buffer already
      this.buffer.delete(run.id);
      if (now - run.renewedAt > this.maxBufferedSilenceMs) {
        this.executor.lose(run, 'expiry');
        continue;
      }
      this.startJob(run);
      started = true;
    }
    if (this.bufferHead === order.length) {
      this.bufferOrder = [];
      this.bufferHead = 0;
    } else if (this.bufferHead > 1024 && this.bufferHead * 2 > order.length) {
      this.bufferOrder = order.slice(this.bufferHead);
      this.bufferHead = 0;
    }
    if (started) {
      this.metrics.jobsRunning.set(this.active.size);
      if (this.active.size >= this.concurrency) this.handoff?.withdraw();
    }
  }

  private startJob(run: JobRun): void {
    const { job } = run;
    run.state = 'running';
    run.startedAt = performance.now();
    this.active.set(job.id, run);
    // Wait: from run_at to the claim (database clock), plus the time spent in the buffer.
    const waitMs = job.startedAtMs - job.runAtMs + (run.startedAt - run.claimedAt);
    run.metrics.wait.observe(Math.max(0, waitMs / 1000));
    this.executor.execute(run, this.tasks.get(job.task));
  }

  /** Forgets a run, frees its slot (or buffer place), starts a buffered job and, if more work may be waiting, fetches. */
  private release(run: JobRun): void {
    if (this.buffer.get(run.id) === run) {
      this.buffer.delete(run.id);
    } else {
      if (this.active.get(run.id) !== run) return;
      this.active.delete(run.id);
      const ranMs = performance.now() - run.startedAt;
      this.averageRunMs = this.averageRunMs === undefined ? ranMs : this.averageRunMs + DURATION_WEIGHT * (ranMs - this.averageRunMs);
      this.startBuffered();
      this.metrics.jobsRunning.set(this.active.size);
      if (this.active.size === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    }
    if (this.moreMayBeWaiting) this.requestFetch();
    else if (this.fetching === undefined) this.handoff?.offer();
  }

  /**
   * A job handed over by a producer (already claimed for us): started like a claimed one,
   * or handed back at once when the worker is stopping.
   */
  private receiveHandoff(text: string): void {
    const claimed = this.handoff?.accept(text);
    if (claimed !== undefined) this.takeHandoff(claimed);
  }

  private takeHandoff(claimed: ClaimedJob): void {
    const { job, token } = claimed;
    if (this.buffer.has(job.id) || this.active.has(job.id)) return;
    this.metrics.handoffs.inc();
    if (this.state !== 'running') {
      void this.store.handBack([{ id: job.id, token }]).catch((err: unknown) =>
        this.logger.warn({ err: describeDbError(err, this.connectionString).message, jobId: job.id }, 'could not hand a job back; it returns when its lease expires'),
      );
      return;
    }
    const run = new JobRun(job, token, this.logger, this.metrics.forJob(job.queue, job.task), performance.now());
    this.buffer.set(job.id, run);
    this.bufferOrder.push(run);
    this.startBuffered();
  }

  /** One statement renews every running job's lease; jobs not renewed are lost or cancelled. */
  private async renewLeases(): Promise<void> {
    await this.reviewBuffer();
    // Buffered and running jobs, and finished ones whose results are still being written.
    const runs = [...this.buffer.values(), ...[...this.active.values()].filter((run) => run.state === 'running'), ...this.completer.pendingRuns()];
    if (runs.length === 0) return;
    const sentAt = performance.now();
    let lost: Map<string, string | undefined>;
    try {
      lost = await this.store.renew(
        runs.map((r) => ({ id: r.id, token: r.token })),
        this.leaseMs,
      );
    } catch (err) {
      // Could not reach the database: a lease we could not renew in time is gone.
      for (const run of runs) {
        if ((run.state === 'running' || run.state === 'buffered') && performance.now() - run.renewedAt > this.leaseMs) this.executor.lose(run, 'expiry');
      }
      throw err;
    }
    for (const run of runs) {
      if (run.state !== 'running' && run.state !== 'buffered') continue;
      if (!lost.has(run.id)) run.renewedAt = sentAt;
      else this.executor.lose(run, lost.get(run.id) === 'cancelled' ? 'cancelled' : 'heartbeat');
    }
  }
}
