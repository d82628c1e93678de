import { createInterface } from 'node:readline';
import { Command, Option } from 'commander';
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  type JobSpec,
  Producer,
  type Queryable,
  SkiplockError,
  Jobs,
  type TaskQueue,
  checkout,
  errorMessage,
  parseDuration,
  parseInteger,
} from '../index.js';
import { type CliContext, type GlobalOptions, UsageError, openContext, optionParser } from './common.js';

interface EnqueueOptions {
  queue?: string;
  dedupeKey?: string;
  concurrencyKey?: string;
  concurrencyLimit?: number;
  timeout?: number;
  maxPayloadBytes: number;
  priority?: number;
  runAt?: string;
  delay?: number;
  maxAttempts?: number;
  json?: boolean;
  stdin?: boolean;
  skipInvalid?: boolean;
  batchSize: number;
  asyncCommit?: boolean;
}

export function enqueueCommand(): Command {
  return new Command('enqueue')
    .description(
      'enqueue one job (prints its id), or with --stdin many jobs from newline-delimited JSON (prints how many were added)',
    )
    .argument('[task]', 'task name (a handler file in the workers directory)')
    .argument('[json]', 'JSON payload (default {})')
    .option('--queue <name>', 'queue (default "default")')
    .option('--priority <n>', 'priority: lower runs first (default 0)', optionParser((t) => parseInteger(t, 'priority', -2147483647, 2147483647)))
    .option('--run-at <iso8601>', 'run no sooner than this time, e.g. 2030-01-31T12:00:00Z')
    .option('--delay <duration>', 'run no sooner than this long from now: 500, 250ms, 30s, 5m, 2h', optionParser((t) => parseDuration(t, 'delay')))
    .option('--max-attempts <n>', 'attempts before the job is failed (default 25)', optionParser((t) => parseInteger(t, 'max attempts', 1, 1_000_000)))
    .option('--dedupe-key <key>', 'idempotency key: while a job with this key is queued or running, print its id instead of adding one')
    .option('--concurrency-key <key>', 'at most --concurrency-limit jobs with this key run at once, across all workers')
    .option('--concurrency-limit <n>', 'with --concurrency-key: how many may run at once (default 1)', optionParser((t) => parseInteger(t, 'concurrency limit', 1, 1_000_000)))
    .option('--timeout <duration>', "time limit per run, e.g. 30s (overrides the task's own)", optionParser((t) => parseDuration(t, 'timeout')))
    .addOption(
      new Option('--max-payload-bytes <n>', 'largest payload JSON accepted')
        .env('SKIPLOCK_MAX_PAYLOAD_BYTES')
        .argParser(optionParser((t) => parseInteger(t, 'max payload bytes', 2, 256 * 1024 * 1024)))
        .default(DEFAULT_MAX_PAYLOAD_BYTES),
    )
    .option('--json', 'print a JSON object instead of the bare id or count')
    .option(
      '--async-commit',
      "commit without waiting for the WAL to reach disk (synchronous_commit = off for this transaction): faster; a server crash in the next moments loses the enqueue",
    )
    .option('--stdin', 'read jobs from stdin, one JSON object per line: {"task": "...", "payload": {...}, "queue": "...", ...}')
    .option('--skip-invalid', 'with --stdin: report and skip bad lines instead of inserting nothing')
    .option('--batch-size <n>', 'with --stdin: jobs per INSERT statement', optionParser((t) => parseInteger(t, 'batch size', 1, 100_000)), 5000)
    .addHelpText(
      'after',
      `
Examples:
  $ skiplock enqueue send-email '{"to": "a@example.com"}' --queue mail --delay 5m
  $ id=$(skiplock enqueue resize-image '{"path": "/tmp/a.png"}')
  $ printf '%s\\n' '{"task": "send-email", "payload": {"to": "b@example.com"}}' | skiplock enqueue --stdin

With --stdin, each line takes the fields task, payload, queue, priority, runAt, delay,
maxAttempts, dedupeKey, concurrencyKey, concurrencyLimit and timeout, named as in the library. All lines go in one transaction: a bad line is
reported with its line number and nothing is inserted, unless --skip-invalid is given.`,
    )
    .action(async function (this: Command, task: string | undefined, json: string | undefined) {
      const opts = this.opts<EnqueueOptions>();
      const globals = this.optsWithGlobals<GlobalOptions & EnqueueOptions>();
      if (opts.stdin) {
        if (task !== undefined) throw new UsageError('give either <task> [json] or --stdin, not both');
        await enqueueStdin(globals, opts);
      } else {
        if (task === undefined) throw new UsageError('missing task name (or use --stdin)');
        if (opts.skipInvalid) throw new UsageError('--skip-invalid goes with --stdin');
        await enqueueOne(globals, opts, task, json);
      }
    });
}

/** A payload given as JSON text on the command line ({} when none); bad JSON is a usage error. */
export function parsePayload(json: string | undefined): unknown {
  if (json === undefined) return {};
  try {
    return JSON.parse(json) as unknown;
  } catch (err) {
    throw new UsageError(`invalid JSON payload: ${errorMessage(err)}`);
  }
}

/** The job as the producer will insert it (default queue filled in); a bad job is a usage error. */
function checked(producer: Producer, spec: JobSpec): ReturnType<Producer['normalize']> {
  try {
    return producer.normalize(spec);
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
}

/** A producer on the context's pool that accepts payloads up to --max-payload-bytes. */
function cliProducer(ctx: CliContext, maxPayloadBytes: number): Producer {
  return new Producer({ pool: ctx.pool, schema: ctx.schema, connectionString: ctx.connectionString, maxPayloadBytes });
}

async function enqueueOne(globals: GlobalOptions, opts: EnqueueOptions, task: string, json: string | undefined): Promise<void> {
  const spec: JobSpec = { task, payload: parsePayload(json) };
  if (opts.queue !== undefined) spec.queue = opts.queue;
  if (opts.priority !== undefined) spec.priority = opts.priority;
  if (opts.runAt !== undefined) spec.runAt = opts.runAt;
  if (opts.delay !== undefined) spec.delay = opts.delay;
  if (opts.maxAttempts !== undefined) spec.maxAttempts = opts.maxAttempts;
  if (opts.dedupeKey !== undefined) spec.dedupeKey = opts.dedupeKey;
  if (opts.concurrencyKey !== undefined) spec.concurrencyKey = opts.concurrencyKey;
  if (opts.concurrencyLimit !== undefined) spec.concurrencyLimit = opts.concurrencyLimit;
  if (opts.timeout !== undefined) spec.timeout = opts.timeout;
  const ctx = openContext(globals, 1);
  try {
    const producer = cliProducer(ctx, opts.maxPayloadBytes);
    const job = checked(producer, spec);
    const { ids, created } = await producer.enqueueMany([spec], { synchronousCommit: opts.asyncCommit ? false : undefined });
    const id = ids[0] ?? '';
    const isNew = created[0] ?? true;
    process.stdout.write(opts.json ? `${JSON.stringify({ id, created: isNew, task: job.task, queue: job.queue })}\n` : `${id}\n`);
    if (!isNew) {
      process.stderr.write(`skiplock: job ${id} already holds dedupe key ${JSON.stringify(job.dedupeKey)} (queued or running): nothing enqueued, its id is printed\n`);
    }
    warnUnhandled(await findUnhandled(ctx, [{ task: job.task, queue: job.queue }]), 1);
  } finally {
    await ctx.pool.end();
  }
}

/** At most this many (task, queue) pairs are checked for a worker after an --stdin enqueue. */
const MAX_CHECKED_PAIRS = 1000;

/** "1 job", "2 jobs". */
function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * The pairs among `jobs` that no live worker handles (no worker's presence row takes the task
 * from the queue): a typo in a task name, or no worker started yet. Best effort: a failed
 * check (e.g. a schema from before the workers table) finds nothing.
 */
async function findUnhandled(ctx: CliContext, jobs: readonly TaskQueue[], client?: Queryable): Promise<TaskQueue[]> {
  try {
    return await new Jobs({ pool: ctx.pool, schema: ctx.schema }).unhandledTasks(jobs, client);
  } catch (err) {
    ctx.logger.debug({ err: ctx.describe(err).message }, 'could not check for workers of the enqueued tasks');
    return [];
  }
}

/** One warning line on stderr naming the tasks no live worker handles (nothing when none). */
function warnUnhandled(missing: readonly TaskQueue[], jobs: number): void {
  if (missing.length === 0) return;
  const shown = missing.slice(0, 3).map((m) => `task ${JSON.stringify(m.task)} on queue ${JSON.stringify(m.queue)}`);
  if (missing.length > shown.length) shown.push(`${missing.length - shown.length} more`);
  process.stderr.write(
    `skiplock: warning: no live worker handles ${shown.join(', ')}; ` +
      `${jobs === 1 ? 'the job waits' : 'its jobs wait'} until a worker with that task starts\n`,
  );
}

/** Reads NDJSON jobs from stdin and inserts them in batches inside one transaction. */
async function enqueueStdin(globals: GlobalOptions, opts: EnqueueOptions): Promise<void> {
  const perJob = [opts.queue, opts.priority, opts.runAt, opts.delay, opts.maxAttempts, opts.dedupeKey, opts.concurrencyKey, opts.concurrencyLimit, opts.timeout];
  if (perJob.some((v) => v !== undefined)) {
    throw new UsageError('with --stdin, give the job options (queue, priority, runAt, delay, maxAttempts, dedupeKey, ...) on each line');
  }
  const ctx = openContext(globals, 1);
  const producer = cliProducer(ctx, opts.maxPayloadBytes);
  const started = Date.now();
  let held;
  try {
    held = await checkout(ctx.pool);
  } catch (err) {
    await ctx.pool.end();
    throw ctx.describe(err);
  }
  const { client } = held;
  let enqueued = 0;
  let deduplicated = 0;
  let skipped = 0;
  let lineNo = 0;
  let batch: JobSpec[] = [];
  let lastProgress = started;
  const pairs = new Map<string, TaskQueue>();
  let unhandled: TaskQueue[] = [];
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const { created } = await producer.enqueueMany(batch, { client, synchronousCommit: opts.asyncCommit ? false : undefined });
    for (const c of created) {
      if (c) enqueued += 1;
      else deduplicated += 1;
    }
    batch = [];
    if (Date.now() - lastProgress >= 2000) {
      lastProgress = Date.now();
      process.stderr.write(`skiplock: ${enqueued + deduplicated} jobs processed so far (line ${lineNo})\n`);
    }
  };
  try {
    await client.query('BEGIN');
    const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
    for await (const line of lines) {
      lineNo += 1;
      if (line.trim() === '') continue;
      let job: JobSpec;
      try {
        let value: unknown;
        try {
          value = JSON.parse(line);
        } catch (err) {
          throw new SkiplockError(`invalid JSON: ${errorMessage(err)}`);
        }
        if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new SkiplockError('expected a JSON object');
        job = value as JobSpec;
        const { task, queue } = producer.normalize(job); // reports a bad line by its number; enqueueMany() checks it again the same way
        if (pairs.size < MAX_CHECKED_PAIRS) pairs.set(`${task}\u0000${queue}`, { task, queue });
      } catch (err) {
        const message = `line ${lineNo}: ${errorMessage(err)}`;
        if (!opts.skipInvalid) throw new UsageError(`${message}; nothing was enqueued`);
        skipped += 1;
        process.stderr.write(`skiplock: skipped ${message}\n`);
        continue;
      }
      batch.push(job);
      if (batch.length >= opts.batchSize) await flush();
    }
    await flush();
    await client.query('COMMIT');
    unhandled = await findUnhandled(ctx, [...pairs.values()], client);
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err instanceof SkiplockError ? err : ctx.describe(err);
  } finally {
    held.release();
    await ctx.pool.end();
  }
  const seconds = (Date.now() - started) / 1000;
  const extra = [
    deduplicated > 0 ? `${deduplicated} already queued or running (dedupe key)` : '',
    skipped > 0 ? `skipped ${plural(skipped, 'invalid line')}` : '',
  ].filter(Boolean);
  process.stderr.write(`skiplock: enqueued ${plural(enqueued, 'job')}${extra.length > 0 ? `, ${extra.join(', ')}` : ''} in ${seconds.toFixed(2)} s\n`);
  warnUnhandled(unhandled, enqueued + deduplicated);
  process.stdout.write(opts.json ? `${JSON.stringify({ enqueued, deduplicated, skipped })}\n` : `${enqueued}\n`);
}
