import { performance } from 'node:perf_hooks';

/** The systems the harness compares. skiplock is always the numerator of a ratio. */
export const SYSTEMS = ['skiplock', 'graphile-worker', 'pg-boss'] as const;
export type SystemName = (typeof SYSTEMS)[number];

export const SCENARIOS = [
  'enqueue_single_1',
  'enqueue_single_16',
  'bulk_enqueue',
  'drain_1proc',
  'drain_2proc',
  'drain_4proc',
  'latency_low',
  'latency_high',
  'mixed',
] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

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
