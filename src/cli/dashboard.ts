import { Command, Option } from 'commander';
import { DEFAULT_DASHBOARD_PORT, Queues, SkiplockError, checkDashboardExposure, errorMessage, parseInteger, startDashboard } from '../index.js';
import { type GlobalOptions, UsageError, openContext, optionParser } from './common.js';

/** The options `skiplock dashboard` and `skiplock worker --dashboard` share. */
export interface DashboardCliOptions {
  authToken?: string;
  readOnly?: boolean;
}

/** --auth-token, also from the environment (SKIPLOCK_DASHBOARD_TOKEN). */
export function authTokenOption(): Option {
  return new Option(
    '--auth-token <token>',
    'require this token (at least 16 characters): a login form, or the header Authorization: Bearer <token>; needed for a host other than 127.0.0.1, localhost or ::1',
  ).env('SKIPLOCK_DASHBOARD_TOKEN');
}

export function readOnlyOption(): Option {
  return new Option('--read-only', 'dashboard: show no action buttons and refuse every change (403)');
}

export const dashboardPort = (what: string) => optionParser((t) => parseInteger(t, what, 0, 65535));

/** Refuses (exit 2) a host beyond this machine without a token, or a short token, before anything starts. */
export function checkDashboardOptions(host: string, authToken: string | undefined): void {
  try {
    checkDashboardExposure(host, authToken === '' ? undefined : authToken);
  } catch (err) {
    if (err instanceof SkiplockError) throw new UsageError(err.message);
    throw err;
  }
}

/** `received` resolves at the first SIGINT or SIGTERM; dispose() removes the handlers. */
function signalled(): { received: Promise<NodeJS.Signals>; dispose: () => void } {
  let on: (signal: NodeJS.Signals) => void = () => undefined;
  const received = new Promise<NodeJS.Signals>((resolve) => {
    on = resolve;
  });
  process.on('SIGINT', on);
  process.on('SIGTERM', on);
  return {
    received,
    dispose: () => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
    },
  };
}

export function dashboardCommand(): Command {
  const command = new Command('dashboard')
    .description('serve the web dashboard (queues, jobs, schedules, workers; retry, cancel, delete, pause) until SIGINT/SIGTERM')
    .option('--port <port>', 'port to listen on (0 = any free port)', dashboardPort('dashboard port'), DEFAULT_DASHBOARD_PORT)
    .option('--host <host>', 'address to bind; another than 127.0.0.1, localhost or ::1 needs --auth-token', '127.0.0.1');
  return command
    .addOption(authTokenOption())
    .addOption(readOnlyOption())
    .addHelpText(
      'after',
      `
The dashboard renders HTML on the server (no script); every change is a POST with a CSRF
token and is logged ("dashboard action"). See the README's "Dashboard" section.`,
    )
    .action(async function (this: Command) {
      const opts = this.optsWithGlobals<GlobalOptions & DashboardCliOptions & { port: number; host: string }>();
      const authToken = opts.authToken === '' ? undefined : opts.authToken;
      checkDashboardOptions(opts.host, authToken);
      const ctx = openContext(opts, 4);
      const stop = signalled();
      try {
        // Fail now, with the CLI's exit code 1, when the database is unreachable or not migrated.
        await new Queues({ pool: ctx.pool, schema: ctx.schema, connectionString: ctx.connectionString }).list();
        const dashboard = await startDashboard({
          pool: ctx.pool,
          connectionString: ctx.connectionString,
          schema: ctx.schema,
          host: opts.host,
          port: opts.port,
          authToken,
          readOnly: opts.readOnly ?? false,
          logger: ctx.logger,
        }).catch((err: unknown) => {
          throw new SkiplockError(errorMessage(err));
        });
        process.stdout.write(`dashboard on ${dashboard.url}\n`);
        const signal = await stop.received;
        ctx.logger.info({ signal }, 'shutting down');
        await dashboard.close();
      } finally {
        stop.dispose();
        await ctx.pool.end().catch(() => undefined);
      }
    });
}
