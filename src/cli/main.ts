import { Command, CommanderError } from 'commander';
import { SkiplockError, VERSION, connectionFailure, errorMessage, redactSecrets } from '../index.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, type GlobalOptions, UsageError, connectionHint, connectionStringFor, globalOptions } from './common.js';
import { dashboardCommand } from './dashboard.js';
import { devCommand } from './dev.js';
import { enqueueCommand } from './enqueue.js';
import { jobsCommand } from './jobs.js';
import { migrateCommand } from './migrate.js';
import { pruneCommand } from './prune.js';
import { queuesCommand } from './queues.js';
import { schedulesCommand } from './schedules.js';
import { statsCommand, workersCommand } from './stats.js';
import { workerCommand } from './worker.js';

/** Commander's error text ("error: unknown option '--x'\n(Did you mean --y?)\n") as one line, without its "error: ". */
function usageLine(text: string): string {
  return text
    .replace(/^error:\s*/i, '')
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .join(' ');
}

/** Every usage error of commander as one line, `skiplock: <message>`, on stderr; help is left as it is. */
function outputError(text: string, write: (text: string) => void): void {
  write(`skiplock: ${usageLine(text)}\n`);
}

export function buildProgram(): Command {
  const program = new Command('skiplock')
    .description('skiplock: a PostgreSQL job queue. Enqueue jobs, run workers, inspect and steer queues, migrate the schema.')
    .version(VERSION)
    .exitOverride()
    .configureOutput({ outputError });
  for (const option of globalOptions()) program.addOption(option);
  for (const command of [
    migrateCommand(),
    enqueueCommand(),
    workerCommand(),
    jobsCommand(),
    queuesCommand(),
    schedulesCommand(),
    statsCommand(),
    workersCommand(),
    pruneCommand(),
    dashboardCommand(),
    devCommand(),
  ]) {
    program.addCommand(command);
  }
  const configure = (command: Command): void => {
    command.exitOverride().configureOutput({ outputError }).configureHelp({ showGlobalOptions: true });
    command.commands.forEach(configure);
  };
  program.commands.forEach(configure);
  // Every command sees the connection it is to use in --database-url (optsWithGlobals()): the
  // option or DATABASE_URL, else none when a PG* variable is set (pg reads those), else the default.
  program.hook('preAction', () => {
    const given = program.opts<GlobalOptions>().databaseUrl;
    const resolved = connectionStringFor(given);
    if (resolved !== given) program.setOptionValueWithSource('databaseUrl', resolved, 'default');
  });
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
      // Commander has already printed its message (one line, see outputError) or the help.
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    const connectionString = connectionStringFor(program.opts<GlobalOptions>().databaseUrl);
    const reason = err instanceof UsageError ? undefined : connectionFailure(err, connectionString);
    const message = redactSecrets(reason !== undefined ? connectionHint(reason, connectionString) : (errorMessage(err).split('\n')[0] ?? 'unknown error'));
    process.stderr.write(`skiplock: ${message}\n`);
    if (err instanceof UsageError) return EXIT_USAGE;
    if (!(err instanceof SkiplockError) && process.env.SKIPLOCK_DEBUG) process.stderr.write(`${String((err as Error).stack)}\n`);
    return EXIT_FAILURE;
  }
}
