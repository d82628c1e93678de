/**
 * One worker process of a benchmark: starts the given system's worker with a no-op handler
 * and reports to its parent over IPC how many jobs it has started (every 10 ms while that
 * changes), when the first and the latest timed job of the current round started (warm-up
 * jobs and earlier rounds have lower indexes) and, at the end, each job's enqueue-to-start
 * latency. Backlog jobs of the isolation scenarios, should the system hand one over, are
 * counted apart (backlogTaken), never as handled.
 */
import { BACKLOG_INDEX, type Payload, errorText, nowMs } from './lib/common.js';
import { type FromWorker, type ToWorker, type WorkerInit, send } from './lib/proc.js';
import { loadAdapter } from './systems/index.js';
import type { WorkerHandle } from './systems/types.js';

const REPORT_EVERY_MS = 10;
const STOP_TIMEOUT_MS = 10_000;

let handled = 0;
/** Backlog jobs of an isolation scenario that the system handed to this worker anyway. */
let backlogTaken = 0;
let lastAt = 0;
let firstAt = 0;
/** Jobs with payload.i below this (warm-up, earlier rounds) are counted but not timed. */
let timedFrom = 0;
let reported = -1;
const latencies: number[] = [];
const errors: string[] = [];
let errorCount = 0;
let worker: WorkerHandle | undefined;
let timer: NodeJS.Timeout | undefined;

function tell(message: FromWorker): Promise<void> {
  return send(process, message);
}

function onError(err: unknown): void {
  errorCount += 1;
  if (errors.length < 5) errors.push(errorText(err).slice(0, 500));
}

async function init(message: WorkerInit): Promise<void> {
  const adapter = await loadAdapter(message.system);
  const from = message.latencyFromIndex;
  worker = await adapter.startWorker(message.url, {
    concurrency: message.concurrency,
    ...(message.isolation !== undefined ? { isolation: message.isolation } : {}),
    onJob: (payload: Payload) => {
      const at = nowMs();
      if (payload.i === BACKLOG_INDEX) {
        backlogTaken += 1;
        return;
      }
      handled += 1;
      // Warm-up jobs (negative index) and earlier rounds are counted but not timed.
      if (payload.i >= timedFrom) {
        lastAt = at;
        if (firstAt === 0) firstAt = at;
      }
      if (from >= 0 && payload.i >= from) latencies.push(at - payload.t);
    },
    onError,
  });
  timer = setInterval(() => {
    if (handled === reported) return;
    reported = handled;
    void tell({ type: 'count', handled, lastAt, firstAt }).catch(() => undefined);
  }, REPORT_EVERY_MS);
  await tell({ type: 'ready', pid: process.pid });
}

async function stop(): Promise<void> {
  if (timer) clearInterval(timer);
  const stopping = worker?.stop().catch(onError);
  await Promise.race([stopping, new Promise((resolve) => setTimeout(resolve, STOP_TIMEOUT_MS).unref())]);
  await tell({ type: 'final', handled, lastAt, firstAt, latencies, backlogTaken, errors, errorCount });
  process.disconnect();
  // Libraries may keep timers alive after stop; the run is over either way.
  setTimeout(() => process.exit(0), 200).unref();
}

process.on('message', (raw) => {
  const message = raw as ToWorker;
  switch (message.type) {
    case 'init':
      init(message).catch(async (err: unknown) => {
        await tell({ type: 'fatal', message: errorText(err) }).catch(() => undefined);
        process.exit(1);
      });
      break;
    case 'clock':
      void tell({ type: 'clock', sentAt: message.sentAt, childAt: nowMs() });
      break;
    case 'round':
      timedFrom = message.from;
      firstAt = 0;
      lastAt = 0;
      void tell({ type: 'round-started' }).catch(() => undefined);
      break;
    case 'stop':
      void stop();
      break;
  }
});

// The parent went away (or killed the run): do not linger.
process.on('disconnect', () => {
  setTimeout(() => process.exit(0), 500).unref();
});
