import { Command, CommanderError } from 'commander';
import { SkiplockError, errorMessage, redactSecrets } from '../index.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError, globalOptions } from './common.js';
import { enqueueCommand } from './enqueue.js';
import { jobsCommand } from './jobs.js';
import { migrateCommand } from './migrate.js';
import { queuesCommand } from './queues.js';
import { schedulesCommand } from './schedules.js';
import { workerCommand } from './worker.js';

export function buildProgram(): Command {
  const program = new Command('skiplock')
    .description('skiplock: a PostgreSQL job queue. Enqueue jobs, run workers, inspect and steer queues, migrate the schema.')
    .version('0.1.0')
    .exitOverride();
  for (const option of globalOptions()) program.addOption(option);
  for (const command of [migrateCommand(), enqueueCommand(), workerCommand(), jobsCommand(), queuesCommand(), schedulesCommand()]) {
    program.addCommand(command);
  }
  const configure = (command: Command): void => {
    command.exitOverride().configureHelp({ showGlobalOptions: true });
    command.commands.forEach(configure);
  };
  program.commands.forEach(configure);
  program.addHelpText(
    'after',
    `
Exit codes: 0 success, 1 runtime failure (e.g. database unreachable), 2 bad input or usage.
Run "skiplock <command> --help" for a command's options.`,
  );
  return program;
}

/** Runs the CLI; resolves to the process exit code. Errors are one line on stderr. */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv]);
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed its message (or the help).
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    const message = redactSecrets(errorMessage(err).split('\n')[0] ?? 'unknown error');
    process.stderr.write(`skiplock: ${message}\n`);
    if (err instanceof UsageError) return EXIT_USAGE;
    if (!(err instanceof SkiplockError) && process.env.SKIPLOCK_DEBUG) process.stderr.write(`${String((err as Error).stack)}\n`);
    return EXIT_FAILURE;
  }
}
