import type pg from 'pg';
import type { Payload, SystemName } from '../lib/common.js';

/** The name every benchmark job is enqueued under (task / identifier / queue). */
export const TASK = 'bench_noop';

export interface ProducerHandle {
  /** One job, one call (the system's single-enqueue API). */
  enqueue(payload: Payload): Promise<void>;
  /** Many jobs, one call (the system's bulk API). */
  enqueueMany(payloads: readonly Payload[]): Promise<void>;
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
  /** Jobs not yet recorded as finished (queued, locked or running). */
  remaining(client: pg.Client): Promise<number>;
  /** The configuration a worker with this concurrency runs with, for the result line. */
  workerConfig(concurrency: number): Record<string, unknown>;
  /** How many server connections one worker process of this concurrency may hold. */
  workerConnections(concurrency: number): number;
}
