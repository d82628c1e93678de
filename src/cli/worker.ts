import { Command, Option } from 'commander';
import {
  DEFAULT_DASHBOARD_PORT,
  type Logger,
  Metrics,
  SkiplockError,
  Worker,
  createPool,
  errorMessage,
  loadTaskDirectory,
  migrate,
  parseDuration,
  parseInteger,
  parseRetention,
  startDashboard,
  startMetricsServer,
  validateName,
} from '../index.js';
import { type GlobalOptions, UsageError, openContext, optionParser } from './common.js';
import { type DashboardCliOptions, authTokenOption, checkDashboardOptions, dashboardPort, readOnlyOption } from './dashboard.js';

export interface WorkerCliOptions extends DashboardCliOptions {
  dashboard?: boolean;
  dashboardPort: number;
  dashboardHost: string;
  concurrency: number;
  prefetch?: number;
  keepSucceeded: number;
  keepFailed: number;
  pruneInterval: number;
  scheduleInterval: number;
  queues?: string[];
  tasks: string;
  lease: number;
  heartbeat?: number;
  pollInterval: number;
  reaperInterval: number;
  shutdownGrace: number;
  metricsPort: number;
  metricsHost: string;
  workerId?: string;
  handoff: boolean;
  listen?: boolean;
  listenUrl?: string;
}

const duration = (what: string) => optionParser((t) => parseDuration(t, what));

export function workerCommand(): Command {
  return new Command('worker')
    .description('run a worker daemon: claims and runs jobs until SIGTERM/SIGINT')
    .option('--concurrency <n>', 'jobs run at once', optionParser((t) => parseInteger(t, 'concurrency', 1, 10_000)), 10)
    .option(
      '--prefetch <n>',
      'most claimed jobs buffered on top of the running ones (adaptive: what the worker expects to start within ~100 ms), so short jobs are claimed in large batches (default: 1000, or 10 x --concurrency when more; 0 = none)',
      optionParser((t) => parseInteger(t, 'prefetch', 0, 100_000)),
    )
    .option(
      '--queues <a,b>',
      'comma-separated queues to take jobs from (default: all)',
      optionParser((t) => t.split(',').map((q) => validateName('queue', q.trim()))),
    )
    .option('--tasks <dir>', 'directory of task handlers: <task-name>.js|.mjs|.ts, default export = handler', 'workers')
    .option('--lease <duration>', 'lease length; a job not renewed for this long is reaped', duration('lease'), 30_000)
    .option('--heartbeat <duration>', 'lease renewal interval (default lease / 3)', duration('heartbeat'))
    .option('--poll-interval <duration>', 'fallback poll for delayed jobs and missed notifications', duration('poll interval'), 2000)
    .option('--reaper-interval <duration>', 'how often to look for expired leases (0 = never in this worker)', duration('reaper interval'), 5000)
    .option('--shutdown-grace <duration>', 'on SIGTERM/SIGINT, how long running jobs may finish before they are handed back', duration('shutdown grace'), 10_000)
    .addOption(
      new Option('--keep-succeeded <duration>', 'how long succeeded jobs stay in the table: a duration, 0 (deleted as they succeed: fastest) or forever')
        .argParser(optionParser((t) => parseRetention(t, 'succeeded job retention')))
        .default(86_400_000, '1d'),
    )
    .addOption(
      new Option('--keep-failed <duration>', 'how long failed and cancelled jobs stay in the table: a duration or forever')
        .argParser(optionParser((t) => parseRetention(t, 'failed job retention')))
        .default(Number.POSITIVE_INFINITY, 'forever'),
    )
    .option('--prune-interval <duration>', 'how often to delete jobs past their retention (0 = never in this worker)', duration('prune interval'), 60_000)
    .option('--schedule-interval <duration>', 'how often to look for due schedule slots (0 = no scheduler in this worker)', duration('schedule interval'), 1000)
    .option('--metrics-port <port>', 'port of /metrics and /healthz (0 = off)', optionParser((t) => parseInteger(t, 'metrics port', 0, 65535)), 9464)
    .option('--metrics-host <host>', 'address /metrics and /healthz bind to', '127.0.0.1')
    .option('--worker-id <id>', 'name recorded as the jobs\' locked_by (default host:pid:random)')
    .option('--no-listen', 'do not LISTEN for wake-ups: poll only, every --poll-interval (no hand-offs either)')
    .addOption(
      new Option('--listen-url <url>', 'connection string of the LISTEN connection (default: --database-url); behind PgBouncer in transaction mode point it straight at PostgreSQL').env(
        'SKIPLOCK_LISTEN_URL',
      ),
    )
    .option('--no-handoff', 'do not take jobs handed over directly by producers while idle (they are claimed instead)')
    .option('--dashboard', 'also serve the web dashboard (see skiplock dashboard)')
    .addOption(new Option('--dashboard-port <port>', 'port of the dashboard (implies --dashboard)').argParser(dashboardPort('dashboard port')).default(DEFAULT_DASHBOARD_PORT).implies({ dashboard: true }))
    .addOption(new Option('--dashboard-host <host>', 'address the dashboard binds to; another than 127.0.0.1, localhost or ::1 needs --auth-token (implies --dashboard)').default('127.0.0.1').implies({ dashboard: true }))
    .addOption(authTokenOption())
    .addOption(readOnlyOption())
    .addHelpText(
      'after',
      `
Durations: a number of milliseconds or a number with a unit: 500, 250ms, 30s, 5m, 2h, 1d.
The worker applies pending migrations at start. A first SIGTERM or SIGINT stops claiming,
hands buffered jobs back, waits up to --shutdown-grace for running jobs, hands the rest back
to the queue and exits 0; a second signal exits at once.`,
    )
    .action(async function (this: Command) {
      const opts = this.optsWithGlobals<GlobalOptions & WorkerCliOptions>();
      await runWorker(opts);
    });
}

/**
 * Resolves at the first SIGTERM/SIGINT; a second one exits the process at once. Installed
 * before the worker starts claiming, so no signal finds the process without a handler.
 */
function firstSignal(logger: Logger): { received: Promise<NodeJS.Signals>; dispose: () => void } {
  let count = 0;
  let onSignal: (signal: NodeJS.Signals) => void = () => undefined;
  const received = new Promise<NodeJS.Signals>((resolve) => {
    onSignal = (signal) => {
      count += 1;
      if (count > 1) {
        logger.warn({ signal }, 'second signal: exiting at once');
        process.exit(signal === 'SIGINT' ? 130 : 143);
      }
      logger.info({ signal }, 'shutting down');
      resolve(signal);
    };
  });
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return {
    received,
    dispose: () => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    },
  };
}

export async function runWorker(opts: GlobalOptions & WorkerCliOptions): Promise<void> {
  const authToken = opts.authToken === '' ? undefined : opts.authToken;
  if (opts.dashboard) checkDashboardOptions(opts.dashboardHost, authToken);
  const ctx = openContext(opts, 1);
  const { logger } = ctx;
  const metrics = new Metrics();
  const pool = createPool(
    { connectionString: opts.databaseUrl, max: opts.concurrency + 4, applicationName: 'skiplock worker', preparedStatements: opts.preparedStatements ?? true },
    (err) => logger.warn({ err: ctx.describe(err).message }, 'idle database connection failed'),
  );
  const signals = firstSignal(logger);
  let server: Awaited<ReturnType<typeof startMetricsServer>> | undefined;
  let dashboard: Awaited<ReturnType<typeof startDashboard>> | undefined;
  try {
    const tasks = await loadTaskDirectory(opts.tasks);
    let worker: Worker;
    try {
      worker = new Worker({
        pool,
        connectionString: opts.databaseUrl,
        schema: ctx.schema,
        tasks,
        concurrency: opts.concurrency,
        prefetch: opts.prefetch,
        keepSucceededMs: opts.keepSucceeded,
        keepFailedMs: opts.keepFailed,
        pruneIntervalMs: opts.pruneInterval,
        scheduleIntervalMs: opts.scheduleInterval,
        queues: opts.queues,
        leaseMs: opts.lease,
        heartbeatIntervalMs: opts.heartbeat,
        pollIntervalMs: opts.pollInterval,
        reaperIntervalMs: opts.reaperInterval,
        shutdownGraceMs: opts.shutdownGrace,
        workerId: opts.workerId,
        handoff: opts.handoff,
        listen: opts.listen,
        listenConnectionString: opts.listenUrl === '' ? undefined : opts.listenUrl,
        logger,
        metrics,
      });
    } catch (err) {
      throw new UsageError(errorMessage(err)); // a bad combination of options
    }
    await migrate(ctx.pool, ctx.schema).catch((err: unknown) => {
      throw ctx.describe(err);
    });
    if (opts.metricsPort > 0) {
      server = await startMetricsServer({ metrics, port: opts.metricsPort, host: opts.metricsHost, health: () => worker.health() }).catch(
        (err: unknown) => {
          throw new SkiplockError(`cannot serve metrics on ${opts.metricsHost}:${opts.metricsPort}: ${errorMessage(err)}`);
        },
      );
      logger.info({ url: `http://${opts.metricsHost}:${server.port}/metrics` }, 'metrics served');
    }
    if (opts.dashboard) {
      dashboard = await startDashboard({
        connectionString: opts.databaseUrl,
        preparedStatements: opts.preparedStatements ?? true,
        schema: ctx.schema,
        host: opts.dashboardHost,
        port: opts.dashboardPort,
        authToken,
        readOnly: opts.readOnly ?? false,
        logger,
      }).catch((err: unknown) => {
        throw new SkiplockError(errorMessage(err));
      });
    }
    await worker.start();
    await signals.received;
    await worker.stop().catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'shutdown failed'));
  } finally {
    signals.dispose();
    await dashboard?.close().catch(() => undefined);
    await ctx.pool.end().catch(() => undefined);
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await pool.end().catch(() => undefined);
  }
}
