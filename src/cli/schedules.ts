import { Command } from 'commander';
import {
  CATCH_UP_POLICIES,
  type CatchUp,
  Producer,
  type ScheduleInfo,
  type ScheduleSpec,
  Schedules,
  SkiplockError,
  UnknownScheduleError,
  parseDuration,
  parseInteger,
  validateName,
} from '../index.js';
import { type CliContext, type GlobalOptions, UsageError, openContext, parsed } from './common.js';
import { table } from './format.js';
import { parsePayload } from './enqueue.js';

interface SetOptions {
  timezone: string;
  queue?: string;
  priority?: string;
  maxAttempts?: string;
  timeout?: string;
  concurrencyKey?: string;
  concurrencyLimit?: string;
  catchUp: string;
  maxCatchUp?: string;
  json?: boolean;
}

/**
 * Runs fn with a Producer (and the Schedules it defines schedules with) on a one-connection
 * pool. An unknown schedule, and any check the library makes before it reaches the database,
 * is bad input (exit 2); a database failure is not (exit 1): the library reports those with
 * the driver's error as their cause.
 */
async function withSchedules<T>(command: Command, fn: (producer: Producer, schedules: Schedules, ctx: CliContext) => Promise<T>): Promise<T> {
  const ctx = openContext(command.optsWithGlobals<GlobalOptions>(), 1);
  const producer = new Producer({ pool: ctx.pool, schema: ctx.schema, connectionString: ctx.connectionString });
  const schedules = new Schedules(ctx.pool, ctx.schema, ctx.describe);
  try {
    return await fn(producer, schedules, ctx);
  } catch (err) {
    if (err instanceof UnknownScheduleError) throw new UsageError(err.message);
    if (err instanceof SkiplockError && !(err instanceof UsageError) && err.cause === undefined) throw new UsageError(err.message);
    throw err;
  } finally {
    await ctx.pool.end();
  }
}

/** Checks a schedule name given on the command line (exit 2 when bad). */
function scheduleName(name: string): string {
  return parsed(() => validateName('schedule', name));
}

/** An instant as ISO 8601 in UTC, without the milliseconds when they are 0 (slots are whole seconds). */
function iso(date: Date | null): string {
  return date === null ? '-' : date.toISOString().replace(/\.000Z$/, 'Z');
}

function describeCatchUp(s: Pick<ScheduleInfo, 'catchUp' | 'maxCatchUp'>): string {
  return s.catchUp === 'all' ? `all (max ${s.maxCatchUp})` : s.catchUp;
}

function describeNext(s: ScheduleInfo): string {
  if (s.nextSlot === null) return 'no next slot (the expression names no more times)';
  return s.paused ? `paused (next slot when resumed: first after now)` : `next slot ${iso(s.nextSlot)}`;
}

/** The readable table of `skiplock schedules`. */
export function schedulesTable(schedules: readonly ScheduleInfo[]): string {
  if (schedules.length === 0) return 'no schedules\n';
  const header = ['NAME', 'CRON', 'ZONE', 'TASK', 'QUEUE', 'PAUSED', 'CATCH-UP', 'LAST SLOT', 'NEXT SLOT'];
  const rows = schedules.map((s) => [
    s.name,
    s.cron,
    s.timezone,
    s.task,
    s.queue,
    s.paused ? 'yes' : 'no',
    describeCatchUp(s),
    iso(s.lastSlot),
    s.paused ? '-' : iso(s.nextSlot),
  ]);
  return table(header, rows);
}

/**
 * The schedule a `set` command line describes: the flags' texts parsed. The rest (expression,
 * zone, names, payload, the job's options) is checked by the library before it touches the
 * database; what it refuses is bad input as well (withSchedules).
 */
function specOf(name: string, cron: string, task: string, json: string | undefined, opts: SetOptions): ScheduleSpec {
  const spec: ScheduleSpec = { name: scheduleName(name), cron, task, payload: parsePayload(json), timezone: opts.timezone };
  const catchUp = opts.catchUp.trim();
  if (!(CATCH_UP_POLICIES as readonly string[]).includes(catchUp)) {
    throw new UsageError(`invalid catch-up policy ${JSON.stringify(opts.catchUp)}: expected ${CATCH_UP_POLICIES.join(', ')}`);
  }
  spec.catchUp = catchUp as CatchUp;
  if (opts.maxCatchUp !== undefined) {
    if (catchUp !== 'all') throw new UsageError('--max-catch-up goes with --catch-up all');
    const text = opts.maxCatchUp;
    spec.maxCatchUp = parsed(() => parseInteger(text, 'max catch-up', 1, 1000));
  }
  const number = (text: string | undefined, what: string, min: number, max: number): number | undefined =>
    text === undefined ? undefined : parsed(() => parseInteger(text, what, min, max));
  const priority = number(opts.priority, 'priority', -2147483647, 2147483647);
  const maxAttempts = number(opts.maxAttempts, 'max attempts', 1, 1_000_000);
  const concurrencyLimit = number(opts.concurrencyLimit, 'concurrency limit', 1, 1_000_000);
  if (concurrencyLimit !== undefined && opts.concurrencyKey === undefined) throw new UsageError('--concurrency-limit goes with --concurrency-key');
  const timeoutText = opts.timeout;
  if (opts.queue !== undefined) spec.queue = opts.queue;
  if (priority !== undefined) spec.priority = priority;
  if (maxAttempts !== undefined) spec.maxAttempts = maxAttempts;
  if (opts.concurrencyKey !== undefined) spec.concurrencyKey = opts.concurrencyKey;
  if (concurrencyLimit !== undefined) spec.concurrencyLimit = concurrencyLimit;
  if (timeoutText !== undefined) spec.timeout = parsed(() => parseDuration(timeoutText, 'timeout'));
  return spec;
}

function setCommand(): Command {
  return new Command('set')
    .description('create or redefine a schedule: one job of <task> with the payload at each slot of the cron expression')
    .argument('<name>', 'schedule name (letters, digits and _ . : -)')
    .argument('<cron>', 'cron expression, quoted: 5 fields (minute hour day month weekday), 6 with seconds first, or @hourly, @daily, ...')
    .argument('<task>', 'task name')
    .argument('[json]', 'JSON payload of each job (default {})')
    .option('--timezone <zone>', 'IANA time zone the expression is read in, e.g. Europe/Berlin', 'UTC')
    .option('--queue <name>', 'queue of the jobs (default "default")')
    .option('--priority <n>', 'priority of the jobs: lower runs first (default 0)')
    .option('--max-attempts <n>', 'attempts before a job is failed (default 25)')
    .option('--timeout <duration>', "time limit per run, e.g. 30s (overrides the task's own)")
    .option('--concurrency-key <key>', 'at most --concurrency-limit jobs with this key run at once, across all workers')
    .option('--concurrency-limit <n>', 'with --concurrency-key: how many may run at once (default 1)')
    .option('--catch-up <policy>', `slots missed while no worker ran: ${CATCH_UP_POLICIES.join(', ')}`, 'latest')
    .option('--max-catch-up <n>', 'with --catch-up all: at most this many missed slots, the most recent (default 100)')
    .option('--json', 'print the schedule as a JSON object (with "created") instead of a line')
    .action(async function (this: Command, name: string, cron: string, task: string, json: string | undefined) {
      const opts = this.opts<SetOptions>();
      const { schedule, created } = await withSchedules(this, (_producer, schedules) => schedules.define(specOf(name, cron, task, json, opts)));
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ created, ...schedule })}\n`);
        return;
      }
      const what = `"${schedule.cron}" ${schedule.timezone}, task ${schedule.task}, queue ${schedule.queue}, catch-up ${describeCatchUp(schedule)}`;
      process.stdout.write(`schedule ${schedule.name} ${created ? 'created' : 'updated'} (${what}): ${describeNext(schedule)}\n`);
    });
}

function listCommand(): Command {
  return new Command('list')
    .description('list every schedule: expression, zone, task, queue, paused, catch-up policy, last slot enqueued, next slot')
    .option('--json', 'print JSON (one array of objects) instead of a table')
    .action(async function (this: Command) {
      const opts = this.opts<{ json?: boolean }>();
      const schedules = await withSchedules(this, (producer) => producer.listSchedules());
      process.stdout.write(opts.json ? `${JSON.stringify(schedules, null, 2)}\n` : schedulesTable(schedules));
    });
}

function removeCommand(): Command {
  return new Command('remove')
    .description('delete a schedule (the jobs it already enqueued stay)')
    .argument('<name>', 'schedule name')
    .action(async function (this: Command, raw: string) {
      const name = scheduleName(raw);
      await withSchedules(this, (producer) => producer.unschedule(name));
      process.stdout.write(`schedule ${name} removed\n`);
    });
}

function pauseCommand(): Command {
  return new Command('pause')
    .description('pause a schedule: no slot of it is enqueued until it is resumed')
    .argument('<name>', 'schedule name')
    .action(async function (this: Command, raw: string) {
      const name = scheduleName(raw);
      await withSchedules(this, (producer) => producer.pauseSchedule(name));
      process.stdout.write(`schedule ${name} paused\n`);
    });
}

function resumeCommand(): Command {
  return new Command('resume')
    .description('resume a paused schedule at its first slot after now (the slots of the pause are not caught up)')
    .argument('<name>', 'schedule name')
    .action(async function (this: Command, raw: string) {
      const name = scheduleName(raw);
      const schedule = await withSchedules(this, (producer) => producer.resumeSchedule(name));
      process.stdout.write(`schedule ${name} resumed: ${describeNext(schedule)}\n`);
    });
}

export function schedulesCommand(): Command {
  return new Command('schedules')
    .description('list, define, pause, resume and remove recurring (cron) schedules')
    .addCommand(listCommand(), { isDefault: true })
    .addCommand(setCommand())
    .addCommand(removeCommand())
    .addCommand(pauseCommand())
    .addCommand(resumeCommand())
    .addHelpText(
      'after',
      `
Examples:
  $ skiplock schedules set nightly-report '0 3 * * *' send-report '{"to": "ops@example.com"}' --timezone Europe/Berlin
  $ skiplock schedules set heartbeat '*/10 * * * * *' ping --catch-up none
  $ skiplock schedules pause nightly-report

Running workers enqueue each slot once, whichever gets there first. set redefines a schedule
in full (an option left out takes its default); with the same expression and zone it keeps
its place, else it starts at the first slot after now.
Exit codes: 0 done, 1 database failure, 2 bad input (bad expression, zone or option, unknown schedule).`,
    );
}
