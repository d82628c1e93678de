import type pg from 'pg';
import type { BacklogKind, Payload, SystemName } from '../lib/common.js';

/** The name every benchmark job is enqueued under (task / identifier / queue). */
export const TASK = 'bench_noop';
/** Isolation scenarios: the queue of a `queue` backlog (pg-boss: of either kind; its queues are its tasks). */
export const BACKLOG_QUEUE = 'bench_backlog';
/** Isolation scenarios: the task of a `task` backlog, which no worker handles. */
export const BACKLOG_TASK = 'bench_unhandled';
/** Jobs per bulk call when a backlog is queued. */
export const BACKLOG_CHUNK = 10_000;

/** What enqueueBacklog queued, for remaining() and the result line. */
export interface Backlog {
  kind: BacklogKind;
  jobs: number;
  /** Where the backlog went, in the system's own terms. */
  placement: string;
  /** The highest backlog job id, for systems whose remaining() counts their own jobs by id (graphile-worker). */
  lastId?: string;
}

export interface ProducerHandle {
  /** One job, one call (the system's single-enqueue API). */
  enqueue(payload: Payload): Promise<void>;
  /** Many jobs, one call (the system's bulk API). */
  enqueueMany(payloads: readonly Payload[]): Promise<void>;
  /**
   * Isolation scenarios (untimed): queues `count` jobs the benchmark's workers must not take,
   * with the system's bulk API in calls of BACKLOG_CHUNK jobs, every payload { i: BACKLOG_INDEX }.
   */
  enqueueBacklog?(kind: BacklogKind, count: number): Promise<Backlog>;
  close(): Promise<void>;
}

export interface WorkerHandle {
  stop(): Promise<void>;
}

export interface WorkerSettings {
  /** Jobs this worker process runs at once. */
  concurrency: number;
  /** Called at the start of every job's handler (the handler does nothing else). */
  onJob: (payload: Payload) => void;
  /** Called with errors the system reports asynchronously. */
  onError: (err: unknown) => void;
  /** Isolation scenarios: the kind of backlog queued that this worker must not take (a system may need to name its own queue). */
  isolation?: BacklogKind;
}

/** One queue library behind the same small interface, in its fastest documented setup. */
export interface SystemAdapter {
  readonly name: SystemName;
  readonly version: string;
  /** Creates the system's schema (and queue) in a fresh database. */
  setup(url: string): Promise<void>;
  /** A producer whose connection pool holds up to `poolSize` connections. */
  producer(url: string, poolSize: number): Promise<ProducerHandle>;
  /** Starts a worker with a no-op handler; resolves once it is ready to take jobs. */
  startWorker(url: string, settings: WorkerSettings): Promise<WorkerHandle>;
  /**
   * Jobs not yet recorded as finished (queued, locked or running); with `backlog`, the
   * benchmark's own jobs only, by a query that does not read the backlog (it runs every 5 ms).
   */
  remaining(client: pg.Client, backlog?: Backlog): Promise<number>;
  /** The configuration a worker with this concurrency (and isolation scenario) runs with, for the result line. */
  workerConfig(concurrency: number, isolation?: BacklogKind): Record<string, unknown>;
  /** How many server connections one worker process of this concurrency may hold. */
  workerConnections(concurrency: number): number;
}
