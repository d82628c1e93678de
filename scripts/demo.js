#!/usr/bin/env node
// skiplock demo: migrates a schema, enqueues example jobs of the tasks in workers/ through the
// CLI, then runs a worker (logs on this terminal, metrics on 127.0.0.1:9464) until Ctrl-C, or
// for DEMO_SECONDS once the worker is up. Exits with the worker's exit code.
//
//   DATABASE_URL     default postgres://postgres@127.0.0.1:5432/postgres
//   SKIPLOCK_SCHEMA  default skiplock_demo
//   DEMO_SECONDS     stop the worker (SIGTERM) this long after it is up; unset: run until Ctrl-C
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const BIN = fileURLToPath(new URL('../bin/skiplock.js', import.meta.url));
const BUILT = fileURLToPath(new URL('../dist/src/index.js', import.meta.url));

const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const SCHEMA = process.env.SKIPLOCK_SCHEMA || 'skiplock_demo';
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
const childEnv = { ...process.env, DATABASE_URL, SKIPLOCK_SCHEMA: SCHEMA };

/** Runs `skiplock <args>` to completion; resolves to its stdout, rejects when it exits non-zero. */
function cli(args, input) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: childEnv, stdio: ['pipe', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
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
    ['flaky', { failRate: 0.3 }],
  ];
  for (const [task, payload, ...options] of single) {
    const id = await cli(['enqueue', task, JSON.stringify(payload), ...options]);
    say(`enqueued ${task} ${JSON.stringify(payload)}${options.length > 0 ? ` ${options.join(' ')}` : ''}: job ${id}`);
  }
  const lines = [
    { task: 'hello', payload: { name: 'batch' } },
    { task: 'hello', payload: { name: 'urgent' }, priority: -10 },
    { task: 'sleep', payload: { ms: 1500 } },
    { task: 'flaky', payload: { failRate: 0.3 } },
  ];
  const count = await cli(['enqueue', '--stdin'], lines.map((line) => JSON.stringify(line)).join('\n') + '\n');
  say(`enqueued ${count} more jobs with enqueue --stdin (one JSON object per line, one transaction)`);
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

/** Prints how many jobs of each task are in each status (best effort). */
async function printSummary() {
  try {
    const { default: pg } = await import('pg');
    const { validateSchema } = await import(BUILT);
    const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 5000 });
    await client.connect();
    try {
      const { rows } = await client.query(
        `SELECT task, status, count(*)::int AS jobs FROM "${validateSchema(SCHEMA)}".jobs GROUP BY 1, 2 ORDER BY 1, 2`,
      );
      const text = rows.map((r) => `${r.task} ${r.status}: ${r.jobs}`).join(', ');
      say(`jobs in ${SCHEMA}.jobs now: ${text || 'none'}`);
    } finally {
      await client.end();
    }
  } catch (err) {
    say(`could not read the job summary: ${err instanceof Error ? err.message : String(err)}`);
  }
}

async function main() {
  if (!existsSync(BUILT)) fail('dist/ is missing: run "npm ci" (or "npm run build") first');
  const seconds = demoSeconds();
  say(`database ${describeUrl(DATABASE_URL)}, schema ${SCHEMA}`);

  try {
    await checkPortFree();
  } catch (err) {
    fail(err.message);
  }
  try {
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
  await printSummary();
  process.exit(code);
}

main().catch((err) => fail(err instanceof Error ? (err.stack ?? err.message) : String(err)));
