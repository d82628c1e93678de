import { performance } from 'node:perf_hooks';

/**
 * The systems the harness compares. skiplock (tuned: see systems/skiplock.ts) is always the
 * numerator of a ratio; skiplock-defaults is skiplock with its library defaults, a peer that
 * runs in every scenario but the isolation ones (see runsIn).
 */
export const SYSTEMS = ['skiplock', 'skiplock-defaults', 'graphile-worker', 'pg-boss'] as const;
export type SystemName = (typeof SYSTEMS)[number];

export const SCENARIOS = [
  'enqueue_single_1',
  'enqueue_single_16',
  'bulk_enqueue',
  'drain_1proc',
  'drain_2proc',
  'drain_4proc',
  'drain_8proc',
  'drain_c10',
  'drain_c32',
  'isolation_queue',
  'isolation_task',
  'latency_low',
  'latency_high',
  'mixed',
] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/** Drains of an otherwise empty table. */
export function isDrain(scenario: ScenarioName): boolean {
  return scenario.startsWith('drain_');
}

/** Drains behind a backlog of jobs the worker must not take (see ScenarioParams.backlog). */
export const ISOLATION_SCENARIOS = ['isolation_queue', 'isolation_task'] as const satisfies readonly ScenarioName[];
/** The drain the isolation scenarios are compared with: the same sizes without the backlog. */
export const ISOLATION_BASELINE: ScenarioName = 'drain_c10';

/**
 * Whether a system takes part in a scenario: every system everywhere, but skiplock-defaults
 * not behind the isolation backlogs (a million-job setup each, for the claim, which the
 * defaults do not change).
 */
export function runsIn(system: SystemName, scenario: ScenarioName): boolean {
  return system !== 'skiplock-defaults' || !(ISOLATION_SCENARIOS as readonly ScenarioName[]).includes(scenario);
}

/** Where a backlog the worker must not take goes: another queue (same task), or another task no worker handles (same queue). */
export type BacklogKind = 'queue' | 'task';

/**
 * payload.i of every backlog job: worker processes count such jobs apart (backlog_taken)
 * if their system hands them one, and never as handled jobs.
 */
export const BACKLOG_INDEX = -1_000_000_000_000;

export function isSystem(value: string): value is SystemName {
  return (SYSTEMS as readonly string[]).includes(value);
}

export function isScenario(value: string): value is ScenarioName {
  return (SCENARIOS as readonly string[]).includes(value);
}

/** Every job the harness creates carries this payload. */
export interface Payload {
  /** Sequence number within the run. */
  i: number;
  /** When the enqueue call started, as epoch milliseconds with sub-ms precision (see nowMs). */
  t: number;
}

/**
 * Wall-clock milliseconds with microsecond resolution: performance.timeOrigin plus the
 * monotonic performance.now(). Comparable between processes on one machine (each process
 * anchors its monotonic clock to the same system clock), monotonic within a process.
 */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Percentile (0..100) of an ascending-sorted array, by linear interpolation. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (b - a) * (rank - lo);
}

export interface LatencySummary {
  samples: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
  mean_ms: number;
}

export function summarizeLatencies(values: readonly number[]): LatencySummary {
  const sorted = [...values].sort((a, b) => a - b);
  const sum = sorted.reduce((s, v) => s + v, 0);
  return {
    samples: sorted.length,
    p50_ms: round(percentile(sorted, 50), 3),
    p90_ms: round(percentile(sorted, 90), 3),
    p99_ms: round(percentile(sorted, 99), 3),
    max_ms: round(sorted.length > 0 ? (sorted[sorted.length - 1] as number) : Number.NaN, 3),
    mean_ms: round(sorted.length > 0 ? sum / sorted.length : Number.NaN, 3),
  };
}

export function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return String(err);
}

/** Runs `fn` over `n` callers at once, each getting its caller index. */
export async function inParallel(n: number, fn: (caller: number) => Promise<void>): Promise<void> {
  await Promise.all(Array.from({ length: n }, (_, i) => fn(i)));
}
