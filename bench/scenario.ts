/**
 * Runs one scenario for one system in a database the orchestrator (bench/run.ts) created,
 * and sends back its figures and conditions over IPC. Worker processes, where the scenario
 * has them, are forked from here (bench/worker.ts).
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import {
  type BacklogKind,
  type Payload,
  type ScenarioName,
  errorText,
  inParallel,
  isScenario,
  nowMs,
  round,
  sleep,
  summarizeLatencies,
} from './lib/common.js';
import { Fleet } from './lib/fleet.js';
import { type ScenarioParams, scenarioParams } from './lib/params.js';
import { type FromScenario, type ScenarioRequest, type WorkerFinal, send } from './lib/proc.js';
import { loadAdapter } from './systems/index.js';
import { BACKLOG_CHUNK, type ProducerHandle, type SystemAdapter } from './systems/types.js';

const DRAIN_TIMEOUT_MS = 180_000;
const SETTLE_MS = 500;
/** Open-loop producers stop issuing new calls while this many are in flight. */
const MAX_IN_FLIGHT = 256;

interface Context {
  adapter: SystemAdapter;
  url: string;
  params: ScenarioParams;
}

interface Outcome {
  figures: Record<string, unknown>;
  conditions: Record<string, unknown>;
}

let fleet: Fleet | undefined;

function need(value: number | undefined, what: string): number {
  if (value === undefined) throw new Error(`scenario parameter ${what} is missing`);
  return value;
}

function perSecond(count: number, ms: number): number {
  return round(count / (ms / 1000), 0);
}

function workerErrors(finals: readonly WorkerFinal[]): Record<string, unknown> {
  const count = finals.reduce((n, f) => n + f.errorCount, 0);
  return count === 0 ? { worker_errors: 0 } : { worker_errors: count, worker_error_samples: finals.flatMap((f) => f.errors).slice(0, 3) };
}

async function enqueueSingle({ adapter, url, params }: Context): Promise<Outcome> {
  const callers = need(params.callers, 'callers');
  const perCaller = Math.ceil(need(params.jobs, 'jobs') / callers);
  const producer = await adapter.producer(url, need(params.producerPool, 'producerPool'));
  try {
    let seq = 0;
    const warmupPerCaller = 5;
    await inParallel(callers, async () => {
      for (let k = 0; k < warmupPerCaller; k++) await producer.enqueue({ i: seq++, t: nowMs() });
    });
    const callMs: number[] = [];
    const t0 = performance.now();
    await inParallel(callers, async () => {
      for (let k = 0; k < perCaller; k++) {
        const started = performance.now();
        await producer.enqueue({ i: seq++, t: nowMs() });
        callMs.push(performance.now() - started);
      }
    });
    const elapsed = performance.now() - t0;
    const jobs = perCaller * callers;
    return {
      figures: { jobs_per_s: perSecond(jobs, elapsed), elapsed_s: round(elapsed / 1000, 3), call_latency: summarizeLatencies(callMs) },
      conditions: { jobs, callers, producer_pool: params.producerPool, warmup_calls: warmupPerCaller * callers },
    };
  } finally {
    await producer.close();
  }
}

async function bulkEnqueue({ adapter, url, params }: Context): Promise<Outcome> {
  const batchSize = need(params.batchSize, 'batchSize');
  const batches = Math.ceil(need(params.jobs, 'jobs') / batchSize);
  const producer = await adapter.producer(url, need(params.producerPool, 'producerPool'));
  try {
    let seq = 0;
    const batch = (): Payload[] => Array.from({ length: batchSize }, () => ({ i: seq++, t: nowMs() }));
    await producer.enqueueMany(batch()); // warm-up, untimed
    const callMs: number[] = [];
    const t0 = performance.now();
    for (let b = 0; b < batches; b++) {
      const jobs = batch();
      const started = performance.now();
      await producer.enqueueMany(jobs);
      callMs.push(performance.now() - started);
    }
    const elapsed = performance.now() - t0;
    const jobs = batches * batchSize;
    return {
      figures: { jobs_per_s: perSecond(jobs, elapsed), elapsed_s: round(elapsed / 1000, 3), call_latency: summarizeLatencies(callMs) },
      conditions: { jobs, batch_size: batchSize, callers: 1, producer_pool: params.producerPool, warmup_batches: 1 },
    };
  } finally {
    await producer.close();
  }
}

/** One timed drain round: from the enqueue's commit until the database shows no job left. */
interface DrainRound {
  jobs_per_s: number;
  elapsed_s: number;
  started_jobs_per_s: number;
  first_start_before_return_ms: number;
  after_return_jobs_per_s: number;
  load_jobs_per_s: number;
  completion_polls: number;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Isolation scenarios (untimed): queues the backlog the workers must not take. No VACUUM or
 * ANALYZE follows (the shared server runs without autovacuum, like drain_c10's table): the
 * drain meets the table as the enqueue left it.
 */
async function queueBacklog(adapter: SystemAdapter, producer: ProducerHandle, spec: { kind: BacklogKind; jobs: number }) {
  if (!producer.enqueueBacklog) throw new Error(`${adapter.name} cannot queue a backlog (no enqueueBacklog)`);
  const t0 = performance.now();
  const backlog = await producer.enqueueBacklog(spec.kind, spec.jobs);
  const enqueueMs = performance.now() - t0;
  const conditions = {
    kind: spec.kind,
    jobs: spec.jobs,
    placement: backlog.placement,
    calls: Math.ceil(spec.jobs / BACKLOG_CHUNK),
    jobs_per_call: BACKLOG_CHUNK,
    enqueue_s: round(enqueueMs / 1000, 2),
    enqueue_jobs_per_s: perSecond(spec.jobs, enqueueMs),
    note: 'queued (untimed) before the worker processes start, ahead of their own jobs in claim order',
  };
  return { backlog, conditions };
}

async function drain({ adapter, url, params }: Context): Promise<Outcome> {
  const jobs = need(params.jobs, 'jobs');
  const processes = need(params.processes, 'processes');
  const concurrency = need(params.concurrency, 'concurrency');
  const warmup = need(params.warmupJobs, 'warmupJobs');
  const rounds = need(params.rounds, 'rounds');
  const checker = new pg.Client({ connectionString: url });
  await checker.connect();
  const producer = await adapter.producer(url, 1);
  try {
    const queued = params.backlog ? await queueBacklog(adapter, producer, params.backlog) : undefined;
    const isolation = params.backlog?.kind;
    fleet = await Fleet.start(processes, { system: adapter.name, url, concurrency, latencyFromIndex: -1, ...(isolation ? { isolation } : {}) });
    const current = fleet;
    const settled = async (): Promise<number> => {
      let polls = 0;
      const from = performance.now();
      for (;;) {
        polls += 1;
        if ((await adapter.remaining(checker, queued?.backlog)) === 0) return polls;
        await sleep(5);
        if (performance.now() - from > DRAIN_TIMEOUT_MS) throw new Error('jobs were started but not all recorded as finished');
      }
    };
    // Warm-up, untimed: the worker processes first drain a few jobs (JIT-compiled code,
    // prepared statements, warm caches), as a long-running daemon would have.
    if (warmup > 0) {
      await producer.enqueueMany(Array.from({ length: warmup }, (_, k) => ({ i: -1 - k, t: 0 })));
      await current.waitFor(() => current.handled >= warmup, DRAIN_TIMEOUT_MS, `${warmup} warm-up jobs were not all started`);
      await settled();
    }
    const results: DrainRound[] = [];
    for (let r = 0; r < rounds; r++) {
      const from = r * jobs;
      await current.startRound(from);
      const payloads: Payload[] = Array.from({ length: jobs }, (_, k) => ({ i: from + k, t: 0 }));
      await sleep(SETTLE_MS);
      const loadStart = performance.now();
      await producer.enqueueMany(payloads);
      const t0 = performance.now();
      const t0Wall = nowMs();
      const expected = warmup + (r + 1) * jobs;
      await current.waitFor(() => current.handled >= expected, DRAIN_TIMEOUT_MS, `${jobs} jobs of round ${r + 1} were not all started`);
      const polls = await settled();
      const t1 = performance.now();
      const t1Wall = nowMs();
      // The jobs are claimable from the enqueue's commit, which comes before its call returns
      // (how long after depends on how much the call sends back: graphile-worker returns every
      // job row, so its workers may be busy long before it returns). The drain is timed from
      // whichever comes first: the call's return, or the first job's start.
      const firstStart = current.firstAt;
      const drainFrom = firstStart > 0 ? Math.min(t0Wall, firstStart) : t0Wall;
      results.push({
        jobs_per_s: perSecond(jobs, t1Wall - drainFrom),
        elapsed_s: round((t1Wall - drainFrom) / 1000, 3),
        started_jobs_per_s: perSecond(jobs, current.lastAt - drainFrom),
        first_start_before_return_ms: round(t0Wall - drainFrom, 1),
        after_return_jobs_per_s: perSecond(jobs, t1 - t0),
        load_jobs_per_s: perSecond(jobs, t0 - loadStart),
        completion_polls: polls,
      });
    }
    await sleep(200); // let late duplicates, if any, show up in the counts
    const finals = await current.stop();
    const handled = finals.reduce((n, f) => n + f.handled, 0) - warmup;
    const figure = (key: keyof DrainRound): number => round(median(results.map((x) => x[key])), key === 'elapsed_s' ? 3 : 1);
    return {
      figures: {
        jobs_per_s: Math.round(median(results.map((x) => x.jobs_per_s))),
        rounds_jobs_per_s: results.map((x) => x.jobs_per_s),
        elapsed_s: figure('elapsed_s'),
        started_jobs_per_s: Math.round(median(results.map((x) => x.started_jobs_per_s))),
        first_start_before_return_ms: figure('first_start_before_return_ms'),
        after_return_jobs_per_s: Math.round(median(results.map((x) => x.after_return_jobs_per_s))),
        load_jobs_per_s: Math.round(median(results.map((x) => x.load_jobs_per_s))),
        handled,
        duplicates: handled - rounds * jobs,
        ...(queued ? { backlog_taken: finals.reduce((n, f) => n + f.backlogTaken, 0) } : {}),
        ...workerErrors(finals),
      },
      conditions: {
        jobs,
        rounds,
        processes,
        concurrency_per_process: concurrency,
        warmup_jobs: warmup,
        load: `per round, one bulk enqueue call of ${jobs} jobs while the workers were idle; ${rounds} rounds after an untimed warm-up drain of ${warmup} jobs; figures are the median round`,
        ...(queued ? { backlog: queued.conditions } : {}),
        worker: adapter.workerConfig(concurrency, isolation),
        clock_offsets_ms: current.clockOffsetsMs.map((o) => round(o, 3)),
      },
    };
  } finally {
    await producer.close();
    await checker.end();
  }
}

async function latency({ adapter, url, params }: Context): Promise<Outcome> {
  const rate = need(params.rate, 'rate');
  const tickMs = need(params.tickMs, 'tickMs');
  const warmupJobs = Math.round(rate * need(params.warmupS, 'warmupS'));
  const total = warmupJobs + Math.round(rate * need(params.durationS, 'durationS'));
  const concurrency = need(params.concurrency, 'concurrency');
  fleet = await Fleet.start(1, { system: adapter.name, url, concurrency, latencyFromIndex: warmupJobs });
  const producer = await adapter.producer(url, need(params.producerPool, 'producerPool'));
  try {
    await sleep(SETTLE_MS);
    const inFlight = new Set<Promise<void>>();
    const callMs: number[] = [];
    let failure: unknown;
    let maxInFlight = 0;
    let throttled = 0;
    let sent = 0;
    let calls = 0;
    let measuredFrom = 0;
    const start = performance.now();
    // Open loop: at each tick, the jobs that have come due since the last one go out in one
    // call (enqueue for one job, enqueueMany for several), without waiting for earlier calls.
    while (sent < total && failure === undefined) {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
      if (sent < due) {
        if (inFlight.size >= MAX_IN_FLIGHT) {
          throttled += 1;
          await Promise.race(inFlight);
          continue;
        }
        const first = sent;
        sent = due;
        if (first <= warmupJobs && warmupJobs < sent) measuredFrom = performance.now();
        const t = nowMs();
        const payloads: Payload[] = Array.from({ length: sent - first }, (_, k) => ({ i: first + k, t }));
        const called = performance.now();
        calls += 1;
        const call: Promise<void> = (payloads.length === 1 ? producer.enqueue(payloads[0] as Payload) : producer.enqueueMany(payloads))
          .then(() => {
            if (first >= warmupJobs) callMs.push(performance.now() - called);
          })
          .catch((err: unknown) => {
            failure ??= err;
          })
          .finally(() => inFlight.delete(call));
        inFlight.add(call);
        maxInFlight = Math.max(maxInFlight, inFlight.size);
      }
      const nextDue = start + (sent / rate) * 1000;
      await sleep(Math.max(tickMs, nextDue - performance.now()));
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;
    const sendMs = performance.now() - measuredFrom;
    const current = fleet;
    await current.waitFor(() => current.handled >= total, 30_000, 'not every job was started', 5);
    const finals = await current.stop();
    const latencies = finals.flatMap((f) => f.latencies);
    const handled = finals.reduce((n, f) => n + f.handled, 0);
    return {
      figures: {
        ...summarizeLatencies(latencies),
        achieved_rate: perSecond(total - warmupJobs, sendMs),
        jobs_per_call: round(total / calls, 2),
        enqueue_call: summarizeLatencies(callMs),
        handled,
        duplicates: handled - total,
        max_in_flight_calls: maxInFlight,
        throttled_ticks: throttled,
        ...workerErrors(finals),
      },
      conditions: {
        rate,
        tick_ms: tickMs,
        duration_s: params.durationS,
        warmup_s: params.warmupS,
        jobs_measured: total - warmupJobs,
        processes: 1,
        concurrency_per_process: concurrency,
        producer_pool: params.producerPool,
        producer: `open loop in the scenario process: every ${tickMs} ms (or when the next job is due, if later) the jobs due so far go out in one call, enqueue() for one job and enqueueMany() for more; calls overlap`,
        worker: adapter.workerConfig(concurrency),
        clock_offsets_ms: current.clockOffsetsMs.map((o) => round(o, 3)),
      },
    };
  } finally {
    await producer.close();
  }
}

async function mixed({ adapter, url, params }: Context): Promise<Outcome> {
  const durationMs = need(params.durationS, 'durationS') * 1000;
  const callers = need(params.callers, 'callers');
  const batchSize = need(params.batchSize, 'batchSize');
  const processes = need(params.processes, 'processes');
  const concurrency = need(params.concurrency, 'concurrency');
  fleet = await Fleet.start(processes, { system: adapter.name, url, concurrency, latencyFromIndex: 0 });
  const producer = await adapter.producer(url, need(params.producerPool, 'producerPool'));
  try {
    await sleep(SETTLE_MS);
    let seq = 0;
    let enqueued = 0;
    const t0 = performance.now();
    const end = t0 + durationMs;
    await inParallel(callers, async () => {
      while (performance.now() < end) {
        const batch: Payload[] = Array.from({ length: batchSize }, () => ({ i: seq++, t: nowMs() }));
        await producer.enqueueMany(batch);
        enqueued += batch.length;
      }
    });
    const elapsed = performance.now() - t0;
    const current = fleet;
    const handledInWindow = current.handled;
    const finals = await current.stop();
    const latencies = finals.flatMap((f) => f.latencies);
    return {
      figures: {
        processed_per_s: perSecond(handledInWindow, elapsed),
        enqueued_per_s: perSecond(enqueued, elapsed),
        backlog_at_end: enqueued - handledInWindow,
        ...summarizeLatencies(latencies),
        ...workerErrors(finals),
      },
      conditions: {
        duration_s: round(elapsed / 1000, 3),
        callers,
        batch_size: batchSize,
        producer: 'closed loop: each caller enqueues batch_size jobs per call, back to back',
        producer_pool: params.producerPool,
        processes,
        concurrency_per_process: concurrency,
        worker: adapter.workerConfig(concurrency),
        clock_offsets_ms: current.clockOffsetsMs.map((o) => round(o, 3)),
      },
    };
  } finally {
    await producer.close();
  }
}

const RUNNERS: Readonly<Record<ScenarioName, (ctx: Context) => Promise<Outcome>>> = {
  enqueue_single_1: enqueueSingle,
  enqueue_single_16: enqueueSingle,
  bulk_enqueue: bulkEnqueue,
  drain_1proc: drain,
  drain_2proc: drain,
  drain_4proc: drain,
  drain_8proc: drain,
  drain_c10: drain,
  drain_c32: drain,
  isolation_queue: drain,
  isolation_task: drain,
  latency_low: latency,
  latency_high: latency,
  mixed,
};

async function main(request: ScenarioRequest): Promise<FromScenario> {
  if (!isScenario(request.scenario)) throw new Error(`unknown scenario ${request.scenario}`);
  const adapter = await loadAdapter(request.system);
  const params = scenarioParams(request.scenario, request.quick);
  await adapter.setup(request.url);
  const outcome = await RUNNERS[request.scenario]({ adapter, url: request.url, params });
  return { type: 'result', figures: outcome.figures, conditions: { description: params.description, ...outcome.conditions } };
}

process.once('message', (raw) => {
  const request = raw as ScenarioRequest;
  main(request)
    .catch((err: unknown): FromScenario => ({ type: 'fatal', message: errorText(err) }))
    .then(async (reply) => {
      fleet?.kill();
      const code = reply.type === 'result' ? 0 : 1;
      process.exitCode = code;
      await send(process, reply);
      process.disconnect();
      // Some libraries keep timers after stop/close; the result is sent, so leave now.
      setTimeout(() => process.exit(code), 100).unref();
    })
    .catch(() => process.exit(1));
});
