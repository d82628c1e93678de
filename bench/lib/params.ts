import type { BacklogKind, ScenarioName } from './common.js';

/** Sizes of each scenario; `quick` shrinks them for a smoke run. */
export interface ScenarioParams {
  /** What the scenario measures, for the result line. */
  description: string;
  /** Jobs in the timed part (count-based scenarios). */
  jobs?: number;
  /** Concurrent enqueue callers, each with its own connection. */
  callers?: number;
  /** Jobs per enqueue call (bulk and mixed producers). */
  batchSize?: number;
  /** Worker processes (separate Node processes). */
  processes?: number;
  /** Jobs each worker process runs at once. */
  concurrency?: number;
  /** Target enqueue rate, jobs per second (open loop). */
  rate?: number;
  /** Length of the timed part in seconds (time-based scenarios). */
  durationS?: number;
  /** Open-loop producer: shortest time between calls; jobs due meanwhile share one call. */
  tickMs?: number;
  /** Leading seconds whose jobs are sent but left out of the figures. */
  warmupS?: number;
  /** Producer connection pool size. */
  producerPool?: number;
  /** Drains: jobs drained (untimed) by the same worker processes before the timed rounds. */
  warmupJobs?: number;
  /** Drains: timed rounds of `jobs` each in the same worker processes (the headline is the median round). */
  rounds?: number;
  /**
   * Isolation drains: jobs queued before the workers start (untimed) that they must not take,
   * ahead of their own in claim order: of the same task in another queue (`queue`), or of a
   * task no worker handles in the same queue (`task`).
   */
  backlog?: { kind: BacklogKind; jobs: number };
}

export function scenarioParams(name: ScenarioName, quick: boolean): ScenarioParams {
  const q = <T>(full: T, small: T): T => (quick ? small : full);
  switch (name) {
    case 'enqueue_single_1':
      return { description: 'single-job enqueue calls, one after another, from 1 caller', jobs: q(2000, 200), callers: 1, producerPool: 1 };
    case 'enqueue_single_16':
      return { description: 'single-job enqueue calls from 16 concurrent callers (pool of 16)', jobs: q(4000, 400), callers: 16, producerPool: 16 };
    case 'bulk_enqueue':
      return { description: 'bulk enqueue calls of batchSize jobs, one after another, from 1 caller', jobs: q(50_000, 5000), batchSize: 1000, callers: 1, producerPool: 1 };
    case 'drain_1proc':
      return drain(quick, 'workers started idle and warmed up by an untimed drain, then jobs committed in one bulk call; time from commit to the last job recorded as finished', 1, 20);
    case 'drain_2proc':
      return drain(quick, 'as drain_1proc with 2 worker processes', 2, 10);
    case 'drain_4proc':
      return drain(quick, 'as drain_1proc with 4 worker processes', 4, 10);
    case 'drain_8proc':
      return drain(quick, 'as drain_1proc with 8 worker processes of concurrency 5 (the total concurrency of drain_4proc)', 8, 5);
    case 'drain_c10':
      return drain(quick, 'as drain_1proc with 1 worker process of concurrency 10', 1, 10);
    case 'drain_c32':
      return drain(quick, 'as drain_1proc with 1 worker process of concurrency 32', 1, 32);
    case 'isolation_queue':
      return {
        ...drain(quick, 'as drain_c10 behind a backlog (queued untimed before the workers start) of jobs of the same task in another queue, which the worker must not take', 1, 10),
        backlog: { kind: 'queue', jobs: backlogJobs(q(1_000_000, 20_000)) },
      };
    case 'isolation_task':
      return {
        ...drain(quick, 'as drain_c10 behind a backlog (queued untimed before the workers start) of jobs of a task no worker handles, in the same queue', 1, 10),
        backlog: { kind: 'task', jobs: backlogJobs(q(1_000_000, 20_000)) },
      };
    case 'latency_low':
      return {
        description: 'open-loop single-job enqueue calls at a steady low rate; latency = enqueue call start to handler start (worker in its own process)',
        rate: 20,
        tickMs: 10,
        durationS: q(10, 3),
        warmupS: 1,
        processes: 1,
        concurrency: 10,
        producerPool: 4,
      };
    case 'latency_high':
      return {
        description: 'as latency_low at a high rate: the jobs due in each 10 ms tick go out in one enqueue call (about 10 per call)',
        rate: 1000,
        tickMs: 10,
        durationS: q(10, 3),
        warmupS: 1,
        processes: 1,
        concurrency: 10,
        producerPool: 8,
      };
    case 'mixed':
      return {
        description: 'closed-loop producers (callers x batchSize) and worker processes running at once for a fixed time',
        durationS: q(15, 4),
        callers: 4,
        batchSize: 10,
        processes: 2,
        concurrency: 10,
        producerPool: 4,
      };
  }
}

/** The isolation scenarios' backlog size; BENCH_BACKLOG_JOBS overrides it (to explore, not for published figures). */
function backlogJobs(fallback: number): number {
  const raw = process.env.BENCH_BACKLOG_JOBS;
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error('BENCH_BACKLOG_JOBS must be a positive integer');
  return value;
}

/** A drain: warm-up, then timed rounds of one bulk enqueue each (scenario.ts, drain()). */
function drain(quick: boolean, description: string, processes: number, concurrency: number): ScenarioParams {
  return {
    description,
    jobs: quick ? 2000 : 20_000,
    warmupJobs: quick ? 200 : 10_000,
    rounds: quick ? 1 : 5,
    processes,
    concurrency,
    producerPool: 1,
  };
}

/** Server connections a scenario may hold at once, to keep under max_connections. */
export function connectionsNeeded(params: ScenarioParams, workerConnections: (concurrency: number) => number): number {
  const workers = (params.processes ?? 0) * (params.concurrency !== undefined ? workerConnections(params.concurrency) : 0);
  return workers + (params.producerPool ?? 1) + 2;
}
