import { Command } from 'commander';
import { Jobs, type TaskStats, type WorkerInfo } from '../index.js';
import { withContext } from './common.js';
import { formatAge, table } from './format.js';

function withJobs<T>(command: Command, fn: (jobs: Jobs) => Promise<T>): Promise<T> {
  return withContext(command, 1, ({ pool, schema, connectionString }) => fn(new Jobs({ pool, schema, connectionString })));
}

/** The readable table of `skiplock stats`. */
export function statsTable(stats: readonly TaskStats[]): string {
  if (stats.length === 0) return 'no jobs\n';
  const header = ['QUEUE', 'TASK', 'QUEUED', 'RUNNING', 'SCHEDULED', 'FAILED', 'DONE/1M', 'DONE/1H', 'FAILED/1H', 'ERRORS/1H', 'WAIT P50', 'P95', 'P99', 'OLDEST WAIT'];
  const rows = stats.map((s) => [
    s.queue,
    s.task,
    String(s.queued),
    String(s.running),
    String(s.scheduled),
    String(s.failed),
    String(s.succeeded_1m),
    String(s.succeeded_1h),
    String(s.failed_1h),
    String(s.errors_1h),
    formatAge(s.wait_p50_ms),
    formatAge(s.wait_p95_ms),
    formatAge(s.wait_p99_ms),
    formatAge(s.oldest_wait_ms),
  ]);
  return table(header, rows, new Set(rows[0]!.map((_, i) => i).filter((i) => i >= 2)));
}

export function statsCommand(): Command {
  return new Command('stats')
    .description(
      'per queue and task: jobs by status, jobs done and failed in the last minute and hour, errors of attempts in the last hour, ' +
        'wait from due to start (p50/p95/p99 of jobs started in the last hour), oldest due job\'s wait. One pass over the jobs table. ' +
        'Done counts need succeeded jobs kept (the worker\'s --keep-succeeded, default 1 day).',
    )
    .option('--json', 'print JSON (one array of objects) instead of a table')
    .action(async function (this: Command) {
      const stats = await withJobs(this, (jobs) => jobs.stats());
      process.stdout.write(this.opts<{ json?: boolean }>().json ? `${JSON.stringify(stats, null, 2)}\n` : statsTable(stats));
    });
}

/** The readable table of `skiplock workers`. */
export function workersTable(workers: readonly WorkerInfo[], now = Date.now()): string {
  if (workers.length === 0) return 'no workers\n';
  const header = ['WORKER', 'STATE', 'HOST', 'PID', 'VERSION', 'CONCURRENCY', 'RUNNING', 'UP', 'LAST SEEN', 'QUEUES', 'TASKS'];
  const rows = workers.map((w) => [
    w.id,
    w.alive ? 'live' : 'gone',
    w.host,
    String(w.pid),
    w.version,
    String(w.concurrency),
    String(w.running),
    formatAge(now - w.started_at.getTime()),
    `${formatAge(Math.max(0, now - w.seen_at.getTime()))} ago`,
    w.queues === null ? 'all' : w.queues.join(','),
    w.tasks.join(','),
  ]);
  return table(header, rows, new Set([3, 5, 6]));
}

export function workersCommand(): Command {
  return new Command('workers')
    .description('list the workers: live ones (seen in the last few seconds) first, then those that stopped reporting without a clean stop')
    .option('--json', 'print JSON (one array of objects) instead of a table')
    .action(async function (this: Command) {
      const workers = await withJobs(this, (jobs) => jobs.workers());
      process.stdout.write(this.opts<{ json?: boolean }>().json ? `${JSON.stringify(workers, null, 2)}\n` : workersTable(workers));
    });
}
