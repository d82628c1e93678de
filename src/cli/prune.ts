import { Command } from 'commander';
import { Jobs, type PruneAges, parseAge } from '../index.js';
import { UsageError, parsed, withContext } from './common.js';
import { endProgress, plural, progressLine } from './format.js';

function age(text: string | undefined, what: string): number | undefined {
  return text === undefined ? undefined : parsed(() => parseAge(text, what));
}

export function pruneCommand(): Command {
  return new Command('prune')
    .description('delete finished jobs older than the given ages (by when they finished), oldest first, in batches of 1000: the workers\' pruner, on demand')
    .option('--succeeded <age>', 'succeeded jobs finished more than this long ago (e.g. 1d)')
    .option('--failed <age>', 'failed jobs finished more than this long ago (e.g. 30d)')
    .option('--cancelled <age>', 'cancelled jobs finished more than this long ago (e.g. 7d)')
    .option('--json', 'print the counts as JSON')
    .action(async function (this: Command) {
      const opts = this.opts<{ succeeded?: string; failed?: string; cancelled?: string; json?: boolean }>();
      const ages: PruneAges = {};
      const succeeded = age(opts.succeeded, 'age of succeeded jobs');
      const failed = age(opts.failed, 'age of failed jobs');
      const cancelled = age(opts.cancelled, 'age of cancelled jobs');
      if (succeeded !== undefined) ages.succeededMs = succeeded;
      if (failed !== undefined) ages.failedMs = failed;
      if (cancelled !== undefined) ages.cancelledMs = cancelled;
      if (Object.keys(ages).length === 0) throw new UsageError('name what to prune: --succeeded, --failed and/or --cancelled with an age (e.g. --failed 30d)');
      const deleted = await withContext(this, 1, async ({ pool, schema, connectionString }) => {
        try {
          return await new Jobs({ pool, schema, connectionString }).prune(ages, (n) => progressLine(`deleted ${n}`));
        } finally {
          endProgress();
        }
      });
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(deleted)}\n`);
        return;
      }
      const parts = (['succeeded', 'failed', 'cancelled'] as const).filter((s) => ages[`${s}Ms`] !== undefined).map((s) => `${deleted[s]} ${s}`);
      const total = deleted.succeeded + deleted.failed + deleted.cancelled;
      process.stdout.write(`deleted ${plural(total, 'job')} (${parts.join(', ')})\n`);
    });
}
