import { Command } from 'commander';
import {
  type BulkAction,
  type Diagnosis,
  JOB_STATUSES,
  type JobFilter,
  type JobRecord,
  type JobStatus,
  type JobSummary,
  Jobs,
  Producer,
  actingStatuses,
  checkFilter,
  checkJobId,
  parseAge,
  parseInteger,
} from '../index.js';
import { UsageError, parsed, withContext } from './common.js';
import { endProgress, formatAge, plural, progressLine, table } from './format.js';

/** Thrown when a transition changed nothing: exit code 1 with its message. */
class NothingChanged extends Error {}

function checkId(id: string, what = 'job id'): string {
  return parsed(() => checkJobId(id, what));
}

/** Runs fn with the admin API and a producer on a small pool of the CLI's. */
function withJobs<T>(command: Command, fn: (jobs: Jobs, producer: Producer) => Promise<T>): Promise<T> {
  return withContext(command, 1, ({ pool, schema, connectionString }) =>
    fn(new Jobs({ pool, schema, connectionString }), new Producer({ pool, schema, connectionString })),
  );
}

/** Options of the filters `list` and the bulk forms share. */
interface FilterOptions {
  status?: string;
  queue?: string;
  task?: string;
  schedule?: string;
  olderThan?: string;
}

function addFilterOptions(command: Command): Command {
  return command
    .option('--status <list>', `only jobs in these statuses, comma-separated (${JOB_STATUSES.join(', ')})`)
    .option('--queue <name>', 'only jobs of this queue')
    .option('--task <name>', 'only jobs of this task')
    .option('--schedule <name>', 'only jobs enqueued by this schedule')
    .option('--older-than <duration>', 'only jobs created more than this long ago (30s, 5m, 1h, 7d)');
}

/** The filter the options describe; bad values are usage errors (exit 2). */
function filterOf(opts: FilterOptions): JobFilter {
  return parsed(() => {
    const filter: { -readonly [K in keyof JobFilter]: JobFilter[K] } = {};
    if (opts.status !== undefined) filter.statuses = opts.status.split(',').map((s) => s.trim()).filter((s) => s !== '') as JobStatus[];
    if (opts.queue !== undefined) filter.queue = opts.queue;
    if (opts.task !== undefined) filter.task = opts.task;
    if (opts.schedule !== undefined) filter.schedule = opts.schedule;
    if (opts.olderThan !== undefined) filter.olderThanMs = parseAge(opts.olderThan, 'age');
    return checkFilter(filter);
  });
}

const hasFilter = (f: JobFilter): boolean => Object.keys(f).length > 0;

/** The filter in words, for messages: "failed or cancelled jobs of queue emails". */
function describeFilter(statuses: readonly string[], f: JobFilter): string {
  const parts = [`${statuses.join(' or ')} jobs`];
  if (f.queue !== undefined) parts.push(`of queue ${f.queue}`);
  if (f.task !== undefined) parts.push(`of task ${f.task}`);
  if (f.schedule !== undefined) parts.push(`of schedule ${f.schedule}`);
  if (f.olderThanMs !== undefined) parts.push(`created more than ${formatAge(f.olderThanMs)} ago`);
  return parts.join(' ');
}

/** The readable table of `jobs list`. */
export function jobsTable(jobs: readonly JobSummary[], now = Date.now()): string {
  const header = ['ID', 'STATUS', 'QUEUE', 'TASK', 'ATTEMPTS', 'CREATED', 'RUN AT', 'LAST ERROR'];
  const rows = jobs.map((j) => [
    j.id,
    j.status,
    j.queue,
    j.task,
    `${j.attempts}/${j.max_attempts}`,
    `${formatAge(now - j.created_at.getTime())} ago`,
    j.status === 'queued' && j.run_at.getTime() > now ? `in ${formatAge(j.run_at.getTime() - now)}` : '-',
    j.last_error === null ? '' : oneLine(j.last_error, 60),
  ]);
  return table(header, rows, new Set([0, 4]));
}

function oneLine(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

function listCommand(): Command {
  return addFilterOptions(new Command('list'))
    .description('list jobs, newest first, a page at a time (keyset pages: fast on millions of rows)')
    .option('--limit <n>', 'jobs per page, 1 to 1000', '50')
    .option('--after <cursor>', 'the page after this cursor (printed under the previous page)')
    .option('--json', 'print JSON ({ jobs, next }) instead of a table')
    .action(async function (this: Command) {
      const opts = this.opts<FilterOptions & { limit: string; after?: string; json?: boolean }>();
      const filter = filterOf(opts);
      const limit = parsed(() => parseInteger(opts.limit, 'limit', 1, 1000));
      if (opts.after !== undefined) checkId(opts.after, 'cursor');
      const page = await withJobs(this, (jobs) => jobs.list(filter, { limit, ...(opts.after !== undefined && { after: opts.after }) }));
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
        return;
      }
      if (page.jobs.length === 0) {
        process.stdout.write(opts.after === undefined ? 'no jobs match\n' : 'no more jobs\n');
        return;
      }
      process.stdout.write(jobsTable(page.jobs));
      if (page.next !== null) process.stdout.write(`next page: --after ${page.next}\n`);
    });
}


const PAST: Record<BulkAction, string> = { retry: 'requeued', cancel: 'cancelled', delete: 'deleted' };
const FROM: Record<BulkAction, string> = { retry: 'failed or cancelled', cancel: 'queued or running', delete: 'not running' };

/** retry | cancel | delete: one job by id, or every job of a filter with --all. */
function actionCommand(action: BulkAction, description: string): Command {
  return addFilterOptions(new Command(action))
    .description(description)
    .argument('[id]', 'job id (or leave it out and give filters with --all)')
    .option('--all', 'act on every job the filters name (required without an id; no filter: every job the action applies to)')
    .option('--dry-run', 'print how many jobs would change; change nothing')
    .option('--json', 'print the result as JSON')
    .action(async function (this: Command, rawId: string | undefined) {
      const opts = this.opts<FilterOptions & { all?: boolean; dryRun?: boolean; json?: boolean }>();
      const filter = filterOf(opts);
      if (rawId !== undefined) {
        if (hasFilter(filter) || opts.all) throw new UsageError(`give a job id or filters with --all, not both`);
        return singleAction(this, action, checkId(rawId), opts);
      }
      if (!opts.all) {
        throw new UsageError(
          hasFilter(filter)
            ? `${action} by filter changes every job it names: add --all (or --dry-run --all to count them first)`
            : `give a job id, or filters with --all (\`skiplock jobs ${action} --all\` alone acts on every ${FROM[action]} job)`,
        );
      }
      const statuses = actingStatuses(action, filter);
      if (statuses.length === 0) {
        throw new UsageError(`${action} acts on ${FROM[action]} jobs; --status ${filter.statuses!.join(',')} names none of them`);
      }
      const what = describeFilter(statuses, filter);
      const result = await withJobs(this, (jobs) =>
        jobs.bulk(action, filter, {
          ...(opts.dryRun && { dryRun: true }),
          onProgress: (changed, total) => progressLine(`${PAST[action]} ${changed}/${total}`),
        }),
      );
      endProgress();
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ action, dryRun: opts.dryRun ?? false, ...result })}\n`);
      } else if (opts.dryRun) {
        process.stdout.write(`would ${action} ${plural(result.matched, 'job')} (${what}); nothing changed\n`);
      } else {
        const moved = result.matched - result.changed;
        process.stdout.write(
          `${PAST[action]} ${plural(result.changed, 'job')} of ${result.matched} matching (${what})` +
            (moved > 0 ? `; ${moved} changed status meanwhile${action === 'retry' ? ' or had their dedupe key taken' : ''} and were left as they are` : '') +
            '\n',
        );
      }
    });
}

async function singleAction(command: Command, action: BulkAction, id: string, opts: { dryRun?: boolean; json?: boolean }): Promise<void> {
  if (opts.dryRun) throw new UsageError('--dry-run goes with filters and --all');
  const result = await withJobs(command, (jobs, producer) =>
    action === 'delete' ? jobs.delete(id) : action === 'cancel' ? producer.cancel(id) : producer.retry(id),
  );
  if (opts.json) process.stdout.write(`${JSON.stringify({ id, action, ...result })}\n`);
  if (result.previous === undefined) throw new NothingChanged(`no job ${id}`);
  if (!result.changed) {
    const rule = action === 'delete' ? 'cancel it first' : `only ${FROM[action]} jobs can be`;
    throw new NothingChanged(`job ${id} not ${PAST[action]}: it is ${result.previous} (${rule})`);
  }
  if (!opts.json) process.stdout.write(`job ${id} ${PAST[action]} (was ${result.previous})\n`);
}

/** The readable form of `jobs show`: the record as JSON (attempt history included). */
function showCommand(): Command {
  return new Command('show')
    .description('print a job as JSON, with its attempt history (each attempt: worker, start, end, outcome, error)')
    .argument('<id>', 'job id')
    .action(async function (this: Command, rawId: string) {
      const id = checkId(rawId);
      const job: JobRecord | undefined = await withJobs(this, (jobs) => jobs.get(id));
      if (job === undefined) throw new NothingChanged(`no job ${id}`);
      process.stdout.write(`${JSON.stringify(job, null, 2)}\n`);
    });
}

function whyCommand(): Command {
  return new Command('why')
    .description('say why a job is not running (delayed, queue paused, a limit, no worker, jobs ahead) or how it ended')
    .argument('<id>', 'job id')
    .option('--json', 'print the diagnosis as JSON ({ id, status, reason, message, blockers })')
    .action(async function (this: Command, rawId: string) {
      const id = checkId(rawId);
      const diagnosis: Diagnosis | undefined = await withJobs(this, (jobs) => jobs.why(id));
      if (diagnosis === undefined) throw new NothingChanged(`no job ${id}`);
      if (this.opts<{ json?: boolean }>().json) process.stdout.write(`${JSON.stringify(diagnosis)}\n`);
      else process.stdout.write(`job ${id} (${diagnosis.status}): ${diagnosis.message}\n`);
    });
}

export function jobsCommand(): Command {
  const list = listCommand();
  const jobs = new Command('jobs')
    .description('list, inspect and change jobs, one by id or all of a filter (`skiplock jobs` alone lists the newest)')
    .addCommand(list, { isDefault: true })
    .addCommand(showCommand())
    .addCommand(whyCommand())
    .addCommand(actionCommand('retry', 'requeue failed or cancelled jobs with a fresh set of attempts: one by id, or a filter\'s with --all'))
    .addCommand(actionCommand('cancel', 'cancel queued or running jobs (a running handler is aborted at its next heartbeat): one by id, or a filter\'s with --all'))
    .addCommand(actionCommand('delete', 'delete jobs that are not running: one by id, or a filter\'s with --all'))
    .addHelpText(
      'after',
      '\nBulk forms work in batches of 1000, each its own statement, newest first, with the same transitions as the single-job forms.\n' +
        'Exit codes: 0 done, 1 nothing changed (single job: no such job, or not in a status the action applies to; or a database failure), 2 bad input.',
    );
  return jobs;
}
