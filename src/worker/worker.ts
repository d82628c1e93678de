import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { Logger } from 'pino';
import { AdminStore } from '../db/adminstore.js';
import { JobStore } from '../db/jobstore.js';
import { createPool, dbErrorDescriber, retrySessionLost } from '../db/pool.js';
import { ProbeStore } from '../db/probestore.js';
import { QueueStore } from '../db/queuestore.js';
import { ScheduleStore } from '../db/schedulestore.js';
import { SkiplockError } from '../errors.js';
import type { ClaimedJob } from '../job.js';
import { Presence } from '../maintenance/presence.js';
import { Pruner } from '../maintenance/pruner.js';
import { Reaper } from '../maintenance/reaper.js';
import { Scheduler } from '../maintenance/scheduler.js';
import { Schedules } from '../producer/schedules.js';
import type { Service } from '../maintenance/service.js';
import { silentLogger } from '../observability/logger.js';
import { Metrics } from '../observability/metrics.js';
import { Tracing } from '../observability/tracing.js';
import { PrefetchBuffer } from './buffer.js';
import { Executor } from './executor.js';
import { LeaseKeeper } from './leases.js';
import { type WorkerConfig, type WorkerOptions, resolveWorkerOptions } from './options.js';
import { QueueStates } from './queues.js';
import { JobRun } from './run.js';
import type { Intake } from './intake.js';
import { JobSource } from './source.js';

export type { WorkerOptions } from './options.js';

type WorkerState = 'idle' | 'running' | 'stopping' | 'stopped';

const REAP_BATCH = 1000;
/** Schedules per scheduler transaction. */
const SCHEDULE_BATCH = 100;
const PRUNE_BATCH = 1000;

/**
 * A worker: the orchestrator of its parts. A claimed job flows one way through them:
 *
 *   JobSource (claim / hand-off) → intake → PrefetchBuffer → Executor (handler) → Completer → JobStore
 *
 * and the executor's one event, onCapacity, asks the source for more. The LeaseKeeper
 * renews every claim held and turns a lost one into a loss; the Reaper and Pruner are
 * maintenance services. This class wires them, starts them, and stops them in order.
 */
export class Worker {
  readonly id: string;
  readonly schema: string;
  readonly metrics: Metrics;
  readonly logger: Logger;
  private readonly config: WorkerConfig;
  private readonly pool: pg.Pool;
  private readonly ownsPool: boolean;
  private readonly describe: (err: unknown) => Error;
  private readonly buffer: PrefetchBuffer;
  private readonly executor: Executor;
  private readonly leases: LeaseKeeper;
  private readonly source: JobSource;
  private readonly queues: QueueStates;
  private readonly services: Service[] = [];
  private readonly presence: Presence;
  private state: WorkerState = 'idle';
  private stopping: Promise<void> | undefined;

  constructor(options: WorkerOptions) {
    const config = resolveWorkerOptions(options);
    this.config = config;
    this.id = config.id;
    this.schema = config.schema;
    this.logger = (options.logger ?? silentLogger()).child({ worker: this.id });
    this.metrics = options.metrics ?? new Metrics();
    const describeError = dbErrorDescriber(options.connectionString);
    this.describe = describeError;
    const describe = (err: unknown): string => describeError(err).message;
    const logger = this.logger;

    this.ownsPool = options.pool === undefined;
    this.pool =
      options.pool ??
      createPool({ ...options, max: config.poolSize, applicationName: options.applicationName ?? 'skiplock worker' }, (err) =>
        logger.warn({ err: describe(err) }, 'idle database connection failed'),
      );
    const store = new JobStore(this.pool, config.schema, { deleteSucceeded: config.retention.succeededMs === 0 });
    const probes = new ProbeStore(this.pool, config.schema);
    const queueStore = new QueueStore(this.pool, config.schema);
    const scheduleStore = new ScheduleStore(this.pool, config.schema);
    this.queues = new QueueStates(queueStore, config.queues);
    this.buffer = new PrefetchBuffer(config.concurrency, config.prefetch);
    this.executor = new Executor({
      store,
      pool: this.pool,
      tasks: config.tasks,
      retryForMs: config.leaseMs,
      logger,
      describe,
      onCapacity: (ranMs) => this.capacityGrew(ranMs),
      tracing: Tracing.create(options.tracing ?? true),
    });
    const { buffer, executor } = this;
    this.leases = new LeaseKeeper({ ...config, store, buffer, executor, logger, describe });
    const intake: Intake = {
      wanted: () => this.wanted(),
      idleSlots: () => config.concurrency - executor.runningCount - buffer.size,
      heldIds: () => [...buffer.runs()].map((r) => r.id).concat(executor.heldIds()),
      accept: (jobs) => this.accept(jobs),
      paused: (queues) => this.queuesPaused(queues),
    };
    const listenTo = options.listenConnectionString ?? options.connectionString;
    const connection: pg.ClientConfig = listenTo !== undefined ? { connectionString: listenTo } : { ...(options.pool?.options ?? {}) };
    this.source = new JobSource({ store, probes, config, connection, intake, queues: this.queues, logger, metrics: this.metrics, describe });
    const { metrics } = this;
    this.presence = new Presence({
      store: new AdminStore(this.pool, config.schema),
      id: this.id,
      tasks: config.taskNames,
      queues: config.queues,
      concurrency: config.concurrency,
      logger,
    });
    this.services.push(this.presence);
    if (config.reaperMs > 0) this.services.push(new Reaper({ store, intervalMs: config.reaperMs, batch: REAP_BATCH, logger, metrics }));
    if (config.pruneMs > 0 && Pruner.needed(config.retention)) {
      this.services.push(new Pruner({ store, retention: config.retention, intervalMs: config.pruneMs, batch: PRUNE_BATCH, logger, metrics }));
    }
    if (config.scheduleMs > 0) {
      this.services.push(new Scheduler({ store: scheduleStore, intervalMs: config.scheduleMs, batch: SCHEDULE_BATCH, logger, metrics }));
    }
    metrics.setQueueDepthSource(() => probes.queueDepth());
    metrics.setListenerSource(() => this.source.listening);
    metrics.setScheduleSource(async () => ({ now: await scheduleStore.now(), schedules: await scheduleStore.list() }));
    metrics.setQueueSettingsSource(() => queueStore.settings());
    metrics.setVacuumHealthSource(() => probes.vacuumHealth());
  }

  /** Jobs running now. */
  get runningCount(): number {
    return this.executor.runningCount;
  }

  get isRunning(): boolean {
    return this.state === 'running';
  }

  /** Health for /healthz. */
  health(): { ok: boolean; state: WorkerState; running: number; buffered: number; listening: boolean | null } {
    const { state } = this;
    return { ok: state === 'running', state, running: this.executor.runningCount, buffered: this.buffer.size, listening: this.source.listening };
  }

  /** Creates or updates the schedules declared with the tasks (a redefinition keeps each one's place). */
  private async declareSchedules(): Promise<void> {
    const { schedules, schema } = this.config;
    if (schedules.length === 0) return;
    const definer = new Schedules(this.pool, schema, this.describe);
    for (const spec of schedules) await definer.define(spec);
    this.logger.info({ schedules: schedules.map((s) => s.name) }, 'declared schedules created or updated');
  }

  /** Connects the listener and starts fetching, renewing and reaping. */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new SkiplockError(`worker cannot start: it is ${this.state}`);
    try {
      // A backend terminated under these first statements is retried on another connection:
      // only a server that cannot be reached at all fails the start.
      await retrySessionLost(() => this.pool.query('SELECT 1'));
      await retrySessionLost(() => this.declareSchedules());
      await retrySessionLost(() => this.presence.register());
      await this.source.connect();
    } catch (err) {
      if (this.ownsPool) await this.pool.end().catch(() => undefined);
      this.state = 'stopped';
      throw this.describe(err);
    }
    this.state = 'running';
    this.leases.start();
    for (const service of this.services) service.start();
    const { taskNames: tasks, queues, concurrency, leaseMs } = this.config;
    this.logger.info({ tasks, queues: queues ?? 'all', concurrency, leaseMs }, 'worker started');
    this.source.start();
  }

  /**
   * Graceful stop: no more claims; running jobs get up to the grace period (default the
   * worker's shutdownGraceMs) to finish; the rest are aborted and handed back to the queue
   * at once. Resolves when connections are closed.
   */
  stop(options: { graceMs?: number } = {}): Promise<void> {
    this.stopping ??= this.shutdown(options.graceMs ?? this.config.graceMs);
    return this.stopping;
  }

  /** Shutdown in two stages: stop fetching (buffered jobs go back), then end the running ones. */
  private async shutdown(graceMs: number): Promise<void> {
    const wasRunning = this.state === 'running';
    this.state = 'stopping';
    this.logger.info({ running: this.executor.runningCount, graceMs }, 'worker stopping');
    await this.source.stop();
    await this.leases.handBack(this.buffer.removeAll());
    if (wasRunning) await this.executor.whenIdle(graceMs);
    const unfinished = this.executor.abortRunning();
    await this.leases.stop();
    await Promise.all(this.services.map((service) => service.stop()));
    await this.presence.remove();
    const back = await this.leases.handBack(unfinished);
    for (const run of unfinished) {
      if (!back.has(run.id)) continue;
      run.metrics.completed('handed_back');
      run.logger.info('job handed back to the queue at shutdown');
    }
    // Results still being written get a moment to land.
    await this.executor.drain(Math.min(this.config.leaseMs, 5000));
    // Jobs handed to this worker whose notification never arrived go back at once.
    await this.source.handBackUnknown();
    this.metrics.setQueueDepthSource(undefined);
    this.metrics.setListenerSource(undefined);
    this.metrics.setQueueSettingsSource(undefined);
    this.metrics.setScheduleSource(undefined);
    this.metrics.setVacuumHealthSource(undefined);
    if (this.ownsPool) await this.pool.end().catch(() => undefined);
    this.state = 'stopped';
    this.logger.info({ handedBack: unfinished.length }, 'worker stopped');
  }

  /**
   * Jobs a claim should ask for now: free slots plus the buffer's target, when that is worth
   * a statement; none while stopping or while too many results wait to be written.
   */
  private wanted(): number {
    if (this.state !== 'running' || this.executor.backlog >= this.config.maxBacklog) return 0;
    const running = this.executor.runningCount;
    return this.buffer.wantsClaim(running) ? this.buffer.claimLimit(running) : 0;
  }

  /** Claimed jobs from the source: buffered in claim order and started while slots are free. */
  private accept(jobs: readonly ClaimedJob[]): void {
    const now = performance.now();
    const runs: JobRun[] = [];
    for (const job of jobs) {
      if (this.buffer.has(job.id) || this.executor.holds(job.id)) continue; // a hand-off adopted already
      runs.push(new JobRun(job, this.logger, this.metrics.forJob(job.queue, job.task), now));
    }
    if (this.state !== 'running') {
      // Claimed (or handed over) while stopping: straight back to the queue.
      void this.leases.handBack(runs);
      return;
    }
    const back: JobRun[] = [];
    for (const run of runs) {
      // A claim or hand-off that raced with its queue's pause: not started.
      if (this.queues.isPaused(run.job.queue)) back.push(run);
      else this.buffer.push(run);
    }
    if (back.length > 0) this.handBackPaused(back);
    this.startBuffered();
  }

  /** Queues just paused: their buffered jobs (not started) go back to the queue. */
  private queuesPaused(queues: readonly string[]): void {
    const paused = new Set(queues);
    const back = [...this.buffer.runs()].filter((run) => paused.has(run.job.queue));
    if (back.length > 0) this.handBackPaused(back);
  }

  private handBackPaused(runs: JobRun[]): void {
    this.logger.info({ jobs: runs.length, queues: [...new Set(runs.map((r) => r.job.queue))] }, 'jobs of paused queues handed back');
    void this.leases.handBack(runs);
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
    const { executor, buffer } = this;
    while (executor.runningCount < this.config.concurrency) {
      const run = buffer.take();
      if (run === undefined) break;
      if (now - run.renewedAt > this.config.maxBufferedSilenceMs) {
        executor.lose(run, 'expiry');
        continue;
      }
      executor.execute(run);
      started = true;
    }
    if (!started) return;
    this.metrics.jobsRunning.set(executor.runningCount);
    if (executor.runningCount >= this.config.concurrency) this.source.full();
  }

  /** The executor's one event: a slot was freed (after `ranMs`) or results were written. */
  private capacityGrew(ranMs: number | undefined): void {
    if (ranMs !== undefined) {
      this.buffer.recordDuration(ranMs);
      this.startBuffered();
      this.metrics.jobsRunning.set(this.executor.runningCount);
    }
    this.source.request();
  }
}
