import { Command } from 'commander';
import { parseDuration, parseInteger, validateName } from '../config.js';
import { migrate } from '../db/migrate.js';
import { createPool } from '../db/pool.js';
import { errorMessage } from '../errors.js';
import { startMetricsServer } from '../observability/http.js';
import { Metrics } from '../observability/metrics.js';
import { loadTaskDirectory } from '../worker/tasks.js';
import { Worker } from '../worker/worker.js';
import { type GlobalOptions, openContext, optionParser } from './common.js';

interface WorkerCliOptions {
  concurrency: number;
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
}

const duration = (what: string) => optionParser((t) => parseDuration(t, what));

export function workerCommand(): Command {
  return new Command('worker')
    .description('run a worker daemon: claims and runs jobs until SIGTERM/SIGINT')
    .option('--concurrency <n>', 'jobs run at once', optionParser((t) => parseInteger(t, 'concurrency', 1, 10_000)), 10)
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
    .option('--metrics-port <port>', 'port of /metrics and /healthz (0 = off)', optionParser((t) => parseInteger(t, 'metrics port', 0, 65535)), 9464)
    .option('--metrics-host <host>', 'address /metrics and /healthz bind to', '127.0.0.1')
    .option('--worker-id <id>', 'name recorded as the jobs\' locked_by (default host:pid:random)')
    .addHelpText(
      'after',
      `
Durations: a number of milliseconds or a number with a unit: 500, 250ms, 30s, 5m, 2h.
The worker applies pending migrations at start. A first SIGTERM or SIGINT stops claiming,
waits up to --shutdown-grace for running jobs, hands the rest back to the queue and exits 0;
a second signal exits at once.`,
    )
    .action(async function (this: Command) {
      const opts = this.optsWithGlobals<GlobalOptions & WorkerCliOptions>();
      await runWorker(opts);
    });
}

async function runWorker(opts: GlobalOptions & WorkerCliOptions): Promise<void> {
  const ctx = openContext(opts, 1);
  const { logger } = ctx;
  let tasks;
  try {
    tasks = await loadTaskDirectory(opts.tasks);
    await migrate(ctx.pool, ctx.schema).catch((err: unknown) => {
      throw ctx.describe(err);
    });
  } finally {
    await ctx.pool.end();
  }
  const metrics = new Metrics();
  const pool = createPool(
    { connectionString: opts.databaseUrl, max: opts.concurrency + 4, applicationName: 'skiplock worker' },
    (err) => logger.warn({ err: ctx.describe(err).message }, 'idle database connection failed'),
  );
  const worker = new Worker({
    pool,
    connectionString: opts.databaseUrl,
    schema: ctx.schema,
    tasks,
    concurrency: opts.concurrency,
    queues: opts.queues,
    leaseMs: opts.lease,
    heartbeatIntervalMs: opts.heartbeat,
    pollIntervalMs: opts.pollInterval,
    reaperIntervalMs: opts.reaperInterval,
    shutdownGraceMs: opts.shutdownGrace,
    workerId: opts.workerId,
    logger,
    metrics,
  });
  try {
    await worker.start();
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  const server =
    opts.metricsPort > 0
      ? await startMetricsServer({ metrics, port: opts.metricsPort, host: opts.metricsHost, health: () => worker.health() }).catch(
          async (err: unknown) => {
            await worker.stop({ graceMs: 0 });
            await pool.end().catch(() => undefined);
            throw new Error(`cannot serve metrics on ${opts.metricsHost}:${opts.metricsPort}: ${errorMessage(err)}`);
          },
        )
      : undefined;
  if (server) logger.info({ url: `http://${opts.metricsHost}:${server.port}/metrics` }, 'metrics served');

  await new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      signals += 1;
      if (signals > 1) {
        logger.warn({ signal }, 'second signal: exiting at once');
        process.exit(signal === 'SIGINT' ? 130 : 143);
      }
      logger.info({ signal }, 'shutting down');
      worker
        .stop()
        .catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'shutdown failed'))
        .finally(() => {
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          resolve();
        });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await pool.end().catch(() => undefined);
}
