import { Command } from 'commander';
import {
  type QueueInfo,
  type QueueLimits,
  type QueueSettings,
  Queues,
  UnknownQueueError,
  formatRateLimit,
  parseInteger,
  parseRateLimit,
  validateName,
} from '../index.js';
import { UsageError, parsed, withContext } from './common.js';
import { formatAge, table } from './format.js';

/** Runs fn with a Queues on a one-connection pool; bad input (and an unknown queue) exits 2. */
async function withQueues<T>(command: Command, fn: (queues: Queues) => Promise<T>): Promise<T> {
  try {
    return await withContext(command, 1, ({ pool, schema, connectionString }) => fn(new Queues({ pool, schema, connectionString })));
  } catch (err) {
    if (err instanceof UnknownQueueError) {
      const canCreate = command.options.some((o) => o.long === '--create');
      throw new UsageError(
        canCreate
          ? err.message.replace('pass create', 'pass --create')
          : `unknown queue ${JSON.stringify(err.queue)}: it has no jobs and no settings`,
      );
    }
    throw err;
  }
}

/** Checks a queue name given on the command line (exit 2 when bad). */
function queueName(name: string): string {
  try {
    return validateName('queue', name);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}


function describeSettings(s: QueueSettings): string {
  const limits = [
    s.concurrencyLimit !== null ? `concurrency limit ${s.concurrencyLimit}` : 'no concurrency limit',
    s.rateLimit !== null ? `rate limit ${formatRateLimit(s.rateLimit)}` : 'no rate limit',
  ];
  return `queue ${s.name}: ${s.paused ? 'paused' : 'active'}, ${limits.join(', ')}`;
}

/** The readable table of `skiplock queues`. */
export function queuesTable(queues: readonly QueueInfo[]): string {
  if (queues.length === 0) return 'no queues (no jobs, no settings)\n';
  const header = ['QUEUE', 'STATE', 'QUEUED', 'RUNNING', 'SCHEDULED', 'FAILED', 'OLDEST WAIT', 'CONCURRENCY LIMIT', 'RATE LIMIT'];
  const rows = queues.map((q) => [
    q.name,
    q.paused ? 'paused' : 'active',
    String(q.queued),
    String(q.running),
    String(q.scheduled),
    String(q.failed),
    formatAge(q.oldestWaitMs),
    q.concurrencyLimit === null ? '-' : String(q.concurrencyLimit),
    q.rateLimit === null ? '-' : formatRateLimit(q.rateLimit),
  ]);
  return table(header, rows, new Set([2, 3, 4, 5, 6, 7, 8]));
}

function listCommand(): Command {
  return new Command('list')
    .description('list every queue (with jobs or settings): jobs queued (due), running, scheduled (run_at ahead), failed, the oldest due job\'s wait, paused state and limits')
    .option('--json', 'print JSON (one array of objects) instead of a table')
    .action(async function (this: Command) {
      const opts = this.opts<{ json?: boolean }>();
      const queues = await withQueues(this, (q) => q.list());
      process.stdout.write(opts.json ? `${JSON.stringify(queues, null, 2)}\n` : queuesTable(queues));
    });
}

function pauseCommand(): Command {
  return new Command('pause')
    .description('pause a queue: no worker claims or is handed its jobs from now on (running jobs finish; enqueues still succeed)')
    .argument('<queue>', 'queue name')
    .option('--create', 'configure a queue that has no jobs yet (else an unknown name is refused)')
    .action(async function (this: Command, name: string) {
      const queue = queueName(name);
      const { create } = this.opts<{ create?: boolean }>();
      const settings = await withQueues(this, (q) => q.pause(queue, { create: create ?? false }));
      process.stdout.write(`${describeSettings(settings)}\n`);
    });
}

function resumeCommand(): Command {
  return new Command('resume')
    .description('resume a paused queue: workers claim its jobs at once')
    .argument('<queue>', 'queue name')
    .action(async function (this: Command, name: string) {
      const queue = queueName(name);
      const settings = await withQueues(this, (q) => q.resume(queue));
      process.stdout.write(`${describeSettings(settings)}\n`);
    });
}

function setCommand(): Command {
  return new Command('set')
    .description('set or clear a queue\'s limits, which hold across every worker process')
    .argument('<queue>', 'queue name')
    .option('--concurrency-limit <n|none>', 'at most N of its jobs running at once (claimed, until their result is written); none clears it')
    .option('--rate-limit <n/duration|none>', 'at most N of its jobs started (claimed) in any window of the duration: 100/1s, 6000/1m, 5/250ms; none clears it')
    .option('--create', 'configure a queue that has no jobs yet (else an unknown name is refused)')
    .action(async function (this: Command, name: string) {
      const queue = queueName(name);
      const opts = this.opts<{ concurrencyLimit?: string; rateLimit?: string; create?: boolean }>();
      const limits: QueueLimits = {};
      if (opts.concurrencyLimit !== undefined) {
        const text = opts.concurrencyLimit.trim();
        limits.concurrencyLimit = text === 'none' ? null : parsed(() => parseInteger(text, 'concurrency limit', 1, 2 ** 31 - 1));
      }
      if (opts.rateLimit !== undefined) {
        const text = opts.rateLimit;
        limits.rateLimit = parsed(() => parseRateLimit(text));
      }
      if (limits.concurrencyLimit === undefined && limits.rateLimit === undefined) {
        throw new UsageError('nothing to set: give --concurrency-limit and/or --rate-limit');
      }
      const settings = await withQueues(this, (q) => q.setLimits(queue, limits, { create: opts.create ?? false }));
      process.stdout.write(`${describeSettings(settings)}\n`);
    });
}

export function queuesCommand(): Command {
  return new Command('queues')
    .description('list queues; pause, resume and limit them')
    .addCommand(listCommand(), { isDefault: true })
    .addCommand(pauseCommand())
    .addCommand(resumeCommand())
    .addCommand(setCommand())
    .addHelpText(
      'after',
      `
A queue exists while it has jobs or settings; pause and set refuse a name that has neither
unless --create is given (a typo then cannot pause a queue nobody uses).
Exit codes: 0 done, 1 database failure, 2 bad input (unknown queue, malformed limit).`,
    );
}
