// Shared helpers of the unit tests (no database, no long timers).
import { type ClaimedRow, ClaimedJob } from '../../src/job.js';
import { silentLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { JobRun } from '../../src/worker/run.js';

export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** One turn of the event loop (what "after the current turn" waits for). */
export const turn = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

/** Several turns: enough for chains of awaits over resolved fakes to settle. */
export async function settle(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await turn();
}

/** Runs fn after `depth` microtask hops (0 = synchronously). */
export function afterMicrotasks(depth: number, fn: () => void): void {
  if (depth === 0) {
    fn();
    return;
  }
  void Promise.resolve().then(() => afterMicrotasks(depth - 1, fn));
}

export function claimedRow(id: string, over: Partial<ClaimedRow> = {}): ClaimedRow {
  return {
    id,
    queue: 'q',
    task: 't',
    payload: { n: Number(id) },
    priority: 0,
    attempt: 1,
    maxAttempts: 25,
    token: `tok-${id}`,
    timeoutMs: null,
    dedupeKey: null,
    concurrencyKey: null,
    runAtMs: 1_700_000_000_000,
    createdAtMs: 1_700_000_000_000,
    startedAtMs: 1_700_000_001_000,
    scheduleName: null,
    scheduleSlotMs: null,
    traceparent: null,
    ...over,
  };
}

const logger = silentLogger();
const metrics = new Metrics({ defaultMetrics: false }).forJob('q', 't');

/** A claimed run of job `id`, claimed at `now` (performance.now() scale). */
export function makeRun(id: string | number, now = 0): JobRun {
  return new JobRun(new ClaimedJob(claimedRow(String(id))), logger, metrics, now);
}
