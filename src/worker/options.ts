import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type pg from 'pg';
import type { Logger } from 'pino';
import { DEFAULT_SCHEMA, MAX_TIMER_MS, checkDuration, checkInteger, checkRetention, validateName, validateSchema } from '../config.js';
import type { ConnectionOptions } from '../db/pool.js';
import { SkiplockError, errorMessage } from '../errors.js';
import type { Retention } from '../maintenance/pruner.js';
import { type ScheduleSpec, normalizeSchedule } from '../producer/schedulespec.js';
import type { Metrics } from '../observability/metrics.js';
import { type BackoffOptions, resolveBackoff } from './backoff.js';
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
   * Most claimed jobs held in a local buffer on top of the running ones (default 1,000, or
   * 10 × `concurrency` when that is more; 0 = claim only for free slots). The worker buffers only as many as its
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
  /**
   * How often this worker's scheduler looks for due schedule slots (default 1 s; 0 = no
   * scheduler here). Every worker may run one: each slot is enqueued once either way.
   */
  scheduleIntervalMs?: number;
  /** How long stop() lets running jobs finish before handing them back (default 10 s). */
  shutdownGraceMs?: number;
  /** Retry delays (defaults: 1 s doubling to 1 h, 25% jitter); tasks may override. */
  backoff?: Partial<BackoffOptions>;
  /** Name stored in locked_by (default host:pid:random). */
  workerId?: string;
  logger?: Logger;
  metrics?: Metrics;
  /** Wake on NOTIFY (default true); without it the worker only polls (every `pollIntervalMs`). */
  listen?: boolean;
  /**
   * Where the LISTEN connection goes (default: `connectionString`, else the pool's settings).
   * LISTEN needs a session of its own: behind PgBouncer in transaction mode point this
   * straight at PostgreSQL while the pool's queries go through PgBouncer.
   */
  listenConnectionString?: string;
  /**
   * Take jobs handed over directly by producers while idle (default true; needs `listen`):
   * a single due job enqueued while this worker waits is inserted already claimed for it and
   * sent on its own channel, which saves the claim's round trip. See docs/performance.md.
   */
  handoff?: boolean;
  /**
   * OpenTelemetry spans (default true): when `@opentelemetry/api` can be loaded and an SDK is
   * registered, a CONSUMER span `process <queue>` per attempt, linked to the span of the
   * enqueue that made the job; the handler runs in its context.
   */
  tracing?: boolean;
}

/** A task as the worker runs it: handler plus its resolved settings. */
export interface ResolvedTask {
  readonly handler: TaskHandler<never>;
  readonly backoff: BackoffOptions;
  readonly timeoutMs: number | undefined;
}

/** Every setting of a worker, checked, with defaults filled in. */
export interface WorkerConfig {
  readonly id: string;
  readonly schema: string;
  readonly tasks: ReadonlyMap<string, ResolvedTask>;
  readonly taskNames: readonly string[];
  readonly queues: readonly string[] | undefined;
  readonly concurrency: number;
  readonly prefetch: number;
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  readonly pollMs: number;
  readonly reaperMs: number;
  readonly pruneMs: number;
  readonly scheduleMs: number;
  /** Schedules declared with the tasks, checked; created or updated at start. */
  readonly schedules: readonly ScheduleSpec[];
  readonly retention: Retention;
  readonly graceMs: number;
  /** A buffered job that waits longer than this for a slot is handed back. */
  readonly maxBufferWaitMs: number;
  /** A buffered job not renewed for this long may have lost its lease: it is not started. */
  readonly maxBufferedSilenceMs: number;
  /** Results waiting to be written beyond which the worker stops claiming (back-pressure). */
  readonly maxBacklog: number;
  readonly listen: boolean;
  readonly handoff: boolean;
  /** How long a hand-off offer stands without renewal. */
  readonly handoffTtlMs: number;
  /** The pool's size when the worker opens its own. */
  readonly poolSize: number;
}

const DAY_MS = 86_400_000;
/** How long a hand-off offer stands without renewal (at most; half the lease when shorter). */
const HANDOFF_TTL_MS = 5000;

/**
 * The buffer's default ceiling: 1,000 claimed jobs, or 10 per slot when that is more. The
 * buffer only holds what the worker expects to start within ~100 ms (buffer.ts), so the
 * ceiling matters for very short jobs alone, which it lets be claimed in batches of about a
 * thousand: twice the drain rate of a ceiling of 100 here (docs/performance.md).
 */
export function defaultPrefetch(concurrency: number): number {
  return Math.min(100_000, Math.max(1000, 10 * concurrency));
}

function toDefinition(entry: TaskHandler<never> | TaskDefinition<never>): TaskDefinition<never> {
  return typeof entry === 'function' ? { handler: entry } : entry;
}

/** The schedules declared with the tasks, each checked now (a bad one fails the constructor). */
function declaredSchedules(list: TaskList): ScheduleSpec[] {
  const specs: ScheduleSpec[] = [];
  const names = new Set<string>();
  for (const [task, entry] of Object.entries(list)) {
    const declared = toDefinition(entry).schedule;
    if (declared === undefined) continue;
    const spec: ScheduleSpec =
      typeof declared === 'string' ? { name: task, cron: declared, task } : { ...declared, name: declared.name ?? task, task };
    try {
      normalizeSchedule(spec);
    } catch (err) {
      throw new SkiplockError(`task ${task}'s schedule: ${errorMessage(err)}`);
    }
    if (names.has(spec.name)) throw new SkiplockError(`schedule ${spec.name} is declared by two tasks`);
    names.add(spec.name);
    specs.push(spec);
  }
  return specs;
}

function resolveTasks(list: TaskList, leaseMs: number, workerBackoff: BackoffOptions): Map<string, ResolvedTask> {
  const tasks = new Map<string, ResolvedTask>();
  for (const [name, entry] of Object.entries(list)) {
    validateName('task', name);
    const def = toDefinition(entry);
    if (typeof def.handler !== 'function') throw new SkiplockError(`task ${name} has no handler function`);
    const timeoutMs = def.options?.timeoutMs;
    if (timeoutMs !== undefined) {
      checkDuration(timeoutMs, `task ${name} timeout`, 1, MAX_TIMER_MS);
      if (timeoutMs > leaseMs) throw new SkiplockError(`the lease (${leaseMs} ms) is shorter than task ${name}'s timeout (${timeoutMs} ms)`);
    }
    tasks.set(name, { handler: def.handler, backoff: resolveBackoff(workerBackoff, def.options?.backoff), timeoutMs });
  }
  if (tasks.size === 0) throw new SkiplockError('a worker needs at least one task handler');
  return tasks;
}

/**
 * Checks a worker's options and fills in the defaults: a pure function (no connection, no
 * timer), so a bad setting fails the constructor before anything starts. Throws SkiplockError.
 */
export function resolveWorkerOptions(options: WorkerOptions): WorkerConfig {
  const schema = validateSchema(options.schema ?? DEFAULT_SCHEMA);
  const concurrency = checkInteger(options.concurrency ?? 10, 'concurrency', 1, 10_000);
  const prefetch = checkInteger(options.prefetch ?? defaultPrefetch(concurrency), 'prefetch', 0, 100_000);
  const leaseMs = checkDuration(options.leaseMs ?? 30_000, 'lease', 1000);
  const heartbeatMs = checkDuration(options.heartbeatIntervalMs ?? Math.floor(leaseMs / 3), 'heartbeat interval', 10);
  if (heartbeatMs >= leaseMs) throw new SkiplockError('the heartbeat interval must be shorter than the lease');
  const queues = options.queues?.map((q) => validateName('queue', q));
  if (queues !== undefined && queues.length === 0) throw new SkiplockError('queues must not be empty');
  const tasks = resolveTasks(options.tasks, leaseMs, resolveBackoff(options.backoff));
  const listen = options.listen ?? true;
  return {
    id: options.workerId ?? `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`,
    schema,
    tasks,
    taskNames: [...tasks.keys()],
    queues,
    concurrency,
    prefetch,
    leaseMs,
    heartbeatMs,
    pollMs: checkDuration(options.pollIntervalMs ?? 2000, 'poll interval', 10),
    reaperMs: checkDuration(options.reaperIntervalMs ?? 5000, 'reaper interval', 0),
    pruneMs: checkDuration(options.pruneIntervalMs ?? 60_000, 'prune interval', 0),
    scheduleMs: checkDuration(options.scheduleIntervalMs ?? 1000, 'schedule interval', 0),
    schedules: declaredSchedules(options.tasks),
    retention: {
      succeededMs: checkRetention(options.keepSucceededMs ?? DAY_MS, 'succeeded job retention'),
      failedMs: checkRetention(options.keepFailedMs ?? Number.POSITIVE_INFINITY, 'failed job retention'),
    },
    graceMs: checkDuration(options.shutdownGraceMs ?? 10_000, 'shutdown grace', 0),
    maxBufferWaitMs: Math.max(2 * heartbeatMs, 5000),
    maxBufferedSilenceMs: leaseMs - heartbeatMs,
    maxBacklog: concurrency * 4 + 100 + 2 * prefetch,
    listen,
    handoff: listen && (options.handoff ?? true),
    handoffTtlMs: Math.min(HANDOFF_TTL_MS, Math.max(1000, leaseMs / 2)),
    poolSize: options.max ?? concurrency + 4,
  };
}
