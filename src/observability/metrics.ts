import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const PREFIX = 'skiplock_';
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900];
const WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600];

export type JobOutcome = 'succeeded' | 'retried' | 'failed' | 'cancelled' | 'lease_lost' | 'handed_back';
const OUTCOMES: readonly JobOutcome[] = ['succeeded', 'retried', 'failed', 'cancelled', 'lease_lost', 'handed_back'];

/** The metric children of one queue and task, looked up once and reused for every job. */
export interface JobMetrics {
  readonly duration: { observe(seconds: number): void };
  readonly wait: { observe(seconds: number): void };
  readonly leaseLosses: { inc(): void };
  completed(outcome: JobOutcome): void;
}

/** A source of queue depth rows for the skiplock_queue_depth gauge, read on each scrape. */
export type QueueDepthSource = () => Promise<ReadonlyArray<{ queue: string; status: string; jobs: number; oldestDueSeconds?: number | null }>>;
/** Whether the worker's LISTEN connection is up now (null: the worker does not listen). */
export type ListenerSource = () => boolean | null;
export type QueueSettingsSource = () => Promise<ReadonlyArray<{ name: string; paused: boolean }>>;

/**
 * The vacuum health read at scrape time: the jobs table's dead and live tuples, its size on
 * disk (indexes and TOAST included) and the age of the oldest transaction holding a snapshot
 * (0 when none).
 */
export type VacuumHealthSource = () => Promise<{ deadTuples: number; liveTuples: number; sizeBytes: number; oldestTransactionSeconds: number }>;

/** Schedules as skiplock_schedule_last_slot_timestamp_seconds and skiplock_schedule_lag_seconds read them at scrape time. */
export type ScheduleSource = () => Promise<{
  now: Date;
  schedules: ReadonlyArray<{ name: string; paused: boolean; nextSlot: Date | null; lastSlot: Date | null }>;
}>;

/**
 * A read that the gauges collected in one scrape share: the first collect() starts it, the
 * others of the same scrape get the same promise; the next scrape reads again. Undefined
 * while there is no source.
 */
function sharedRead<T>(source: () => (() => Promise<T>) | undefined): () => Promise<T> | undefined {
  let pending: Promise<T> | undefined;
  return () => {
    const read = source();
    if (read === undefined) return undefined;
    pending ??= read().finally(() => setImmediate(() => (pending = undefined)));
    return pending;
  };
}

/** The metrics of one worker process, in a registry of its own. */
export class Metrics {
  readonly registry: Registry;
  readonly jobsCompleted: Counter<'queue' | 'task' | 'outcome'>;
  readonly jobDuration: Histogram<'queue' | 'task'>;
  readonly jobWait: Histogram<'queue' | 'task'>;
  readonly jobsRunning: Gauge;
  readonly leaseLosses: Counter<'queue' | 'task'>;
  readonly reaperActions: Counter<'outcome'>;
  readonly pruned: Counter<'status'>;
  readonly notifyReconnects: Counter;
  readonly notifications: Counter;
  readonly handoffs: Counter;
  readonly claims: Counter<'result'>;
  readonly queueDepth: Gauge<'queue' | 'status'>;
  readonly queueOldestDue: Gauge<'queue'>;
  private depthSource: QueueDepthSource | undefined;
  readonly listenerConnected: Gauge;
  private listenerSource: ListenerSource | undefined;
  readonly queuePaused: Gauge<'queue'>;
  private settingsSource: QueueSettingsSource | undefined;
  readonly scheduleEnqueued: Counter<'schedule'>;
  readonly scheduleSkipped: Counter<'schedule'>;
  readonly scheduleErrors: Counter;
  readonly scheduleLastSlot: Gauge<'schedule'>;
  readonly scheduleLag: Gauge<'schedule'>;
  private scheduleSource: ScheduleSource | undefined;
  readonly oldestTransactionAge: Gauge;
  readonly tableDeadTuples: Gauge<'table'>;
  readonly tableLiveTuples: Gauge<'table'>;
  readonly tableSize: Gauge<'table'>;
  private vacuumSource: VacuumHealthSource | undefined;
  private readonly byJobKind = new Map<string, JobKindMetrics>();

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registry = new Registry();
    this.registry = registry;
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: PREFIX });
    const registers = [registry];
    const self = this;
    this.jobsCompleted = new Counter({
      name: `${PREFIX}jobs_completed_total`,
      help: 'Jobs this worker finished running, by queue, task and outcome (succeeded, retried, failed, cancelled, lease_lost, handed_back).',
      labelNames: ['queue', 'task', 'outcome'],
      registers,
      // Completions are counted locally (a prom-client increment costs about as much as a
      // whole no-op job's bookkeeping) and added here, whenever the counter is read.
      collect() {
        for (const kind of self.byJobKind.values()) kind.flush();
      },
    });
    this.jobDuration = new Histogram({
      name: `${PREFIX}job_duration_seconds`,
      help: 'Time from handler start to handler end.',
      labelNames: ['queue', 'task'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.jobWait = new Histogram({
      name: `${PREFIX}job_wait_seconds`,
      help: 'Time from a job becoming due (run_at) to its handler start (database clock to the claim, then local time in the prefetch buffer).',
      labelNames: ['queue', 'task'],
      buckets: WAIT_BUCKETS,
      registers,
    });
    this.jobsRunning = new Gauge({ name: `${PREFIX}jobs_running`, help: 'Jobs this worker is running now.', registers });
    this.leaseLosses = new Counter({
      name: `${PREFIX}lease_losses_total`,
      help: 'Jobs whose lease this worker lost (reaped or re-claimed by another worker) while running them.',
      labelNames: ['queue', 'task'],
      registers,
    });
    this.reaperActions = new Counter({
      name: `${PREFIX}reaper_jobs_total`,
      help: "Jobs with an expired lease this worker's reaper requeued or failed, by outcome (requeued, failed).",
      labelNames: ['outcome'],
      registers,
    });
    this.pruned = new Counter({
      name: `${PREFIX}pruned_jobs_total`,
      help: "Finished jobs this worker's pruner deleted after their retention, by status.",
      labelNames: ['status'],
      registers,
    });
    this.notifyReconnects = new Counter({
      name: `${PREFIX}notify_reconnects_total`,
      help: 'Times the LISTEN connection was re-established after a loss.',
      registers,
    });
    this.notifications = new Counter({
      name: `${PREFIX}notifications_total`,
      help: 'NOTIFY wake-ups received.',
      registers,
    });
    this.handoffs = new Counter({
      name: `${PREFIX}handoffs_total`,
      help: 'Jobs a producer handed to this worker directly (claimed for it at insert, no claim statement).',
      registers,
    });
    this.claims = new Counter({
      name: `${PREFIX}claim_queries_total`,
      help: 'Claim statements run, by result (jobs, empty).',
      labelNames: ['result'],
      registers,
    });
    // One read of the table per scrape serves both queue gauges.
    const readDepth = sharedRead(() => self.depthSource);
    this.queueDepth = new Gauge({
      name: `${PREFIX}queue_depth`,
      help: "Jobs in the table by queue and status, read from the database at scrape time; status 'queued' counts due jobs, 'scheduled' queued jobs not yet due.",
      labelNames: ['queue', 'status'],
      registers,
      async collect() {
        const pending = readDepth();
        if (pending === undefined) return;
        const rows = await pending;
        this.reset();
        for (const row of rows) this.set({ queue: row.queue, status: row.status }, row.jobs);
      },
    });
    this.queueOldestDue = new Gauge({
      name: `${PREFIX}queue_oldest_due_age_seconds`,
      help: 'How long the longest-due queued job of each queue has been due (0 when none waits), read from the database at scrape time.',
      labelNames: ['queue'],
      registers,
      async collect() {
        const pending = readDepth();
        if (pending === undefined) return;
        const rows = await pending;
        this.reset();
        const queues = new Set(rows.filter((r) => r.status === 'queued' || r.status === 'scheduled' || r.status === 'running').map((r) => r.queue));
        for (const queue of queues) this.set({ queue }, 0);
        for (const row of rows) if (row.status === 'queued') this.set({ queue: row.queue }, row.oldestDueSeconds ?? 0);
      },
    });
    this.listenerConnected = new Gauge({
      name: `${PREFIX}listener_connected`,
      help: "Whether the worker's LISTEN connection is up (1) or not (0); absent when the worker polls only.",
      registers,
      collect() {
        const source = self.listenerSource;
        const up = source === undefined ? null : source();
        this.reset();
        if (up !== null) this.set(up ? 1 : 0);
      },
    });
    this.queuePaused = new Gauge({
      name: `${PREFIX}queue_paused`,
      help: 'Whether a queue is paused (1) or not (0), for every queue with settings, read from the database at scrape time.',
      labelNames: ['queue'],
      registers,
      async collect() {
        const source = self.settingsSource;
        if (source === undefined) return;
        const rows = await source();
        this.reset();
        for (const row of rows) this.set({ queue: row.name }, row.paused ? 1 : 0);
      },
    });
    this.scheduleEnqueued = new Counter({
      name: `${PREFIX}schedule_jobs_enqueued_total`,
      help: "Jobs this worker's scheduler enqueued, by schedule (one per slot).",
      labelNames: ['schedule'],
      registers,
    });
    this.scheduleSkipped = new Counter({
      name: `${PREFIX}schedule_slots_skipped_total`,
      help: "Missed slots this worker's scheduler left out by the schedule's catch-up policy, by schedule.",
      labelNames: ['schedule'],
      registers,
    });
    this.scheduleErrors = new Counter({
      name: `${PREFIX}schedule_errors_total`,
      help: "Scheduler rounds of this worker that failed (database errors, or a stored expression that no longer parses).",
      registers,
    });
    // One read of the schedules per scrape serves both gauges.
    const readSchedules = sharedRead(() => self.scheduleSource);
    this.scheduleLastSlot = new Gauge({
      name: `${PREFIX}schedule_last_slot_timestamp_seconds`,
      help: 'The last slot each schedule enqueued, as a Unix time, read from the database at scrape time.',
      labelNames: ['schedule'],
      registers,
      async collect() {
        const pending = readSchedules();
        if (pending === undefined) return;
        const { schedules } = await pending;
        this.reset();
        for (const s of schedules) if (s.lastSlot !== null) this.set({ schedule: s.name }, s.lastSlot.getTime() / 1000);
      },
    });
    this.scheduleLag = new Gauge({
      name: `${PREFIX}schedule_lag_seconds`,
      help: 'How long the oldest slot of each active schedule has been due and not enqueued (0: on time), by the database clock, at scrape time.',
      labelNames: ['schedule'],
      registers,
      async collect() {
        const pending = readSchedules();
        if (pending === undefined) return;
        const { now, schedules } = await pending;
        this.reset();
        for (const s of schedules) {
          if (s.paused) continue;
          const lag = s.nextSlot === null ? 0 : Math.max(0, now.getTime() - s.nextSlot.getTime()) / 1000;
          this.set({ schedule: s.name }, lag);
        }
      },
    });
    // One query per scrape serves the four vacuum gauges.
    const readVacuum = sharedRead(() => self.vacuumSource);
    type Health = Awaited<ReturnType<VacuumHealthSource>>;
    const vacuumGauge = <L extends string>(name: string, help: string, labelNames: readonly L[], value: (health: Health) => number): Gauge<L> =>
      new Gauge<L>({
        name: `${PREFIX}${name}`,
        help,
        labelNames,
        registers,
        async collect() {
          const pending = readVacuum();
          if (pending === undefined) return;
          const health = await pending;
          this.reset();
          // The table gauges are of the jobs table; the transaction age is the server's.
          const labels = Object.fromEntries(labelNames.map((l) => [l, 'jobs'])) as Partial<Record<L, string>>;
          this.set(labels, value(health));
        },
      });
    this.oldestTransactionAge = vacuumGauge(
      'oldest_transaction_age_seconds',
      "Age of the database's oldest transaction holding a snapshot (0 when none), read at scrape time: while it stays open, vacuum removes no row version that died after it began.",
      [],
      (h) => h.oldestTransactionSeconds,
    );
    this.tableDeadTuples = vacuumGauge(
      'table_dead_tuples',
      "Dead row versions in the table, as PostgreSQL's statistics estimate them (pg_stat_user_tables.n_dead_tup), read at scrape time.",
      ['table'],
      (h) => h.deadTuples,
    );
    this.tableLiveTuples = vacuumGauge(
      'table_live_tuples',
      "Live rows in the table, as PostgreSQL's statistics estimate them (pg_stat_user_tables.n_live_tup), read at scrape time.",
      ['table'],
      (h) => h.liveTuples,
    );
    this.tableSize = vacuumGauge(
      'table_size_bytes',
      'Size of the table on disk, its indexes and TOAST included (pg_total_relation_size), read at scrape time.',
      ['table'],
      (h) => h.sizeBytes,
    );
  }

  /** The children for jobs of one queue and task (label validation and hashing happen once). */
  forJob(queue: string, task: string): JobMetrics {
    const key = `${queue}\u0000${task}`;
    let found = this.byJobKind.get(key);
    if (found === undefined) {
      found = new JobKindMetrics(this, queue, task);
      this.byJobKind.set(key, found);
    }
    return found;
  }

  /** Sets where skiplock_queue_depth reads from. */
  setQueueDepthSource(source: QueueDepthSource | undefined): void {
    this.depthSource = source;
  }

  /** Where skiplock_listener_connected reads the listener's state (undefined: not served). */
  setListenerSource(source: ListenerSource | undefined): void {
    this.listenerSource = source;
  }

  /** Where skiplock_queue_paused reads the queues' settings at scrape time (undefined: not at all). */
  setQueueSettingsSource(source: QueueSettingsSource | undefined): void {
    this.settingsSource = source;
  }

  /** Where the schedule gauges read at scrape time (undefined: not at all). */
  setScheduleSource(source: ScheduleSource | undefined): void {
    this.scheduleSource = source;
  }

  /** Where the vacuum gauges (oldest transaction age, dead and live tuples, table size) read at scrape time (undefined: not at all). */
  setVacuumHealthSource(source: VacuumHealthSource | undefined): void {
    this.vacuumSource = source;
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** The metrics of one queue and task; completions wait in local counts until a read. */
class JobKindMetrics implements JobMetrics {
  readonly duration: { observe(seconds: number): void };
  readonly wait: { observe(seconds: number): void };
  readonly leaseLosses: { inc(): void };
  private readonly pending = OUTCOMES.map(() => 0);
  private readonly counters: Array<{ inc(value: number): void } | undefined> = OUTCOMES.map(() => undefined);

  constructor(
    private readonly metrics: Metrics,
    private readonly queue: string,
    private readonly task: string,
  ) {
    const labels = { queue, task };
    this.duration = metrics.jobDuration.labels(labels);
    this.wait = metrics.jobWait.labels(labels);
    this.leaseLosses = metrics.leaseLosses.labels(labels);
  }

  completed(outcome: JobOutcome): void {
    this.pending[OUTCOMES.indexOf(outcome)]! += 1;
  }

  /** Adds the completions counted since the last read to skiplock_jobs_completed_total. */
  flush(): void {
    for (let i = 0; i < OUTCOMES.length; i++) {
      const n = this.pending[i]!;
      if (n === 0) continue;
      this.pending[i] = 0;
      let counter = this.counters[i];
      if (counter === undefined) {
        counter = this.metrics.jobsCompleted.labels({ queue: this.queue, task: this.task, outcome: OUTCOMES[i]! });
        this.counters[i] = counter;
      }
      counter.inc(n);
    }
  }
}
