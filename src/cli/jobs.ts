import { Command } from 'commander';
import { Producer } from '../index.js';
import { type GlobalOptions, UsageError, openContext } from './common.js';

/** Thrown when a transition changed nothing: exit code 1 with its message. */
class NothingChanged extends Error {}

function checkId(id: string): string {
  if (!/^\d{1,19}$/.test(id)) throw new UsageError(`invalid job id ${JSON.stringify(id)}: expected a whole number`);
  return id;
}

async function withProducer<T>(command: Command, fn: (producer: Producer) => Promise<T>): Promise<T> {
  const ctx = openContext(command.optsWithGlobals<GlobalOptions>(), 1);
  const producer = new Producer({ pool: ctx.pool, schema: ctx.schema, connectionString: ctx.connectionString });
  try {
    return await fn(producer);
  } finally {
    await ctx.pool.end();
  }
}

function transitionCommand(name: 'cancel' | 'retry', description: string, verb: string, from: string): Command {
  return new Command(name)
    .description(description)
    .argument('<id>', 'job id')
    .action(async function (this: Command, rawId: string) {
      const id = checkId(rawId);
      const result = await withProducer(this, (producer) => (name === 'cancel' ? producer.cancel(id) : producer.retry(id)));
      if (result.previous === undefined) throw new NothingChanged(`no job ${id}`);
      if (!result.changed) throw new NothingChanged(`job ${id} not ${verb}: it is ${result.previous} (only ${from} jobs can be)`);
      process.stdout.write(`job ${id} ${verb} (was ${result.previous})\n`);
    });
}

export function jobsCommand(): Command {
  return new Command('jobs')
    .description('inspect and change single jobs')
    .addCommand(
      transitionCommand('cancel', 'cancel a queued or running job (a running handler is aborted at its next heartbeat)', 'cancelled', 'queued or running'),
    )
    .addCommand(transitionCommand('retry', 'requeue a failed or cancelled job with a fresh set of attempts', 'requeued', 'failed or cancelled'))
    .addCommand(
      new Command('show')
        .description('print a job as JSON')
        .argument('<id>', 'job id')
        .action(async function (this: Command, rawId: string) {
          const id = checkId(rawId);
          const job = await withProducer(this, (producer) => producer.getJob(id));
          if (job === undefined) throw new NothingChanged(`no job ${id}`);
          process.stdout.write(`${JSON.stringify(job, null, 2)}\n`);
        }),
    )
    .addHelpText('after', '\nExit codes: 0 done, 1 nothing changed (or no such job, or database failure), 2 bad input.');
}
