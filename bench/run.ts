/**
 * npm run bench [-- --scenario <name>[,...]] [--system <name>[,...]] [--quick] [--out <file>]
 *
 * Runs every scenario for skiplock, graphile-worker and pg-boss (and the drains for
 * skiplock-defaults, skiplock with its library defaults), each scenario x system in a
 * fresh database (created here, dropped afterwards, also on failure or Ctrl-C) and in a
 * process of its own (bench/scenario.ts, which forks worker processes where needed). Prints
 * one JSON line per scenario x system with its figures and conditions, then one line with the
 * skiplock/peer ratios (and isolation/drain_c10 per system), and writes the same lines to bench/results/latest.jsonl (or --out).
 * Exits 1 if any scenario failed.
 */
import { type ChildProcess, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { SCENARIOS, SYSTEMS, type ScenarioName, type SystemName, errorText, isScenario, isSystem, round, runsIn, sleep } from './lib/common.js';
import { connectionsNeeded, scenarioParams } from './lib/params.js';
import { type FromScenario, type ScenarioRequest, exited, forkTs, killGroup, send } from './lib/proc.js';
import { ISOLATION_NOTE, RATIO_NOTE, type ResultLine, isolationRatios, numberAt, ratios } from './lib/report.js';
import { loadAdapter } from './systems/index.js';

const SCENARIO_TIMEOUT_MS = 300_000;
/** Isolation scenarios queue a backlog of 1,000,000 jobs first (untimed, but it takes a while). */
const BACKLOG_SCENARIO_TIMEOUT_MS = 900_000;
const HEADROOM_WAIT_MS = 60_000;
const DEFAULT_OUT = fileURLToPath(new URL('./results/latest.jsonl', import.meta.url));
const SHORT: Readonly<Record<SystemName, string>> = { skiplock: 'skiplock', 'skiplock-defaults': 'skiplockdef', 'graphile-worker': 'graphile', 'pg-boss': 'pgboss' };

function usage(): string {
  return [
    'usage: npm run bench -- [--scenario <name>[,<name>...]] [--system <name>[,<name>...]] [--quick] [--out <file>]',
    `  scenarios: ${SCENARIOS.join(', ')}`,
    '             (isolation_*: drain_c10 behind an untimed backlog of 1,000,000 jobs the worker must not take; compared with drain_c10)',
    `  systems:   ${SYSTEMS.join(', ')}`,
    '             (skiplock: tuned, prefetch 1000 and keepSucceededMs 0; skiplock-defaults: library defaults, every scenario but isolation_*)',
    '  --quick    smaller sizes and shorter runs (a smoke test, not for comparison)',
    '  BENCH_DATABASE_URL: server to use (default postgres://postgres@127.0.0.1:5432/postgres); each run creates and drops its own databases there',
  ].join('\n');
}

function pickList<T extends string>(values: string[] | undefined, all: readonly T[], valid: (v: string) => v is T, what: string): T[] {
  if (values === undefined || values.length === 0) return [...all];
  const picked = values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
  for (const v of picked) if (!valid(v)) throw new Error(`unknown ${what} "${v}"\n${usage()}`);
  // Keep the canonical order.
  return all.filter((v) => picked.includes(v));
}

function parseCli(): { scenarios: ScenarioName[]; systems: SystemName[]; quick: boolean; out: string } {
  const { values } = parseArgs({
    options: {
      scenario: { type: 'string', multiple: true },
      system: { type: 'string', multiple: true },
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(`${usage()}\n`);
    process.exit(0);
  }
  return {
    scenarios: pickList(values.scenario, SCENARIOS, isScenario, 'scenario'),
    systems: pickList(values.system, SYSTEMS, isSystem, 'system'),
    quick: values.quick ?? false,
    out: resolve(values.out ?? DEFAULT_OUT),
  };
}

function databaseUrl(base: string, database: string): string {
  const url = new URL(base);
  url.pathname = `/${database}`;
  return url.toString();
}

async function serverConditions(admin: pg.Client): Promise<Record<string, unknown>> {
  const names = [
    'server_version',
    'synchronous_commit',
    'fsync',
    'shared_buffers',
    'max_connections',
    'work_mem',
    'wal_level',
    'max_wal_size',
    'checkpoint_timeout',
    'jit',
  ];
  const res = await admin.query<Record<string, string>>(`SELECT ${names.map((n) => `current_setting('${n}') AS ${n}`).join(', ')}`);
  return { ...res.rows[0] };
}

function machineConditions(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    node: process.version,
    cpus: cpus.length,
    cpu_model: cpus[0]?.model ?? 'unknown',
    total_mem_mb: Math.round(os.totalmem() / 1048576),
    platform: `${os.platform()} ${os.release()}`,
  };
}

/** The skiplock code measured: commit, and whether src/ or sql/ differ from it. */
function skiplockRevision(): string {
  const repo = fileURLToPath(new URL('..', import.meta.url));
  try {
    const git = (...args: string[]): string => execFileSync('git', args, { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const commit = git('rev-parse', '--short=12', 'HEAD');
    const dirty = git('status', '--porcelain', '--', 'src', 'sql') !== '';
    return dirty ? `${commit}+uncommitted changes in src/ or sql/` : commit;
  } catch {
    return 'unknown';
  }
}

async function connectionsInUse(admin: pg.Client): Promise<number> {
  const res = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = $1', ['client backend']);
  return res.rows[0]?.n ?? 0;
}

/** Waits (a while) until the server has room for `needed` more connections; the server is shared. */
async function waitForHeadroom(admin: pg.Client, needed: number, maxConnections: number): Promise<number> {
  const limit = maxConnections - 3 - 5; // superuser_reserved_connections, and a margin for others
  const deadline = performance.now() + HEADROOM_WAIT_MS;
  for (;;) {
    const used = await connectionsInUse(admin);
    if (used + needed <= limit || performance.now() > deadline) return used;
    process.stderr.write(`bench: waiting for connection headroom (${used} in use, ${needed} needed, limit ${limit})\n`);
    await sleep(2000);
  }
}

const liveDatabases = new Set<string>();
const liveChildren = new Set<ChildProcess>();
let adminForCleanup: pg.Client | undefined;

async function dropDatabase(admin: pg.Client, name: string): Promise<void> {
  await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  liveDatabases.delete(name);
}

async function cleanupAll(): Promise<void> {
  for (const child of liveChildren) killGroup(child);
  const admin = adminForCleanup;
  if (!admin) return;
  for (const name of [...liveDatabases]) {
    await dropDatabase(admin, name).catch((err: unknown) => process.stderr.write(`bench: could not drop ${name}: ${errorText(err)}\n`));
  }
}

/** Runs one scenario x system in its own database and process. */
async function runOne(
  admin: pg.Client,
  baseUrl: string,
  scenario: ScenarioName,
  system: SystemName,
  quick: boolean,
): Promise<{ figures: Record<string, unknown>; conditions: Record<string, unknown> }> {
  const name = `bench_${SHORT[system]}_${scenario}_${randomBytes(3).toString('hex')}`;
  const timeoutMs = scenarioParams(scenario, quick).backlog ? BACKLOG_SCENARIO_TIMEOUT_MS : SCENARIO_TIMEOUT_MS;
  liveDatabases.add(name);
  await admin.query(`CREATE DATABASE "${name}"`);
  const child = forkTs('scenario.ts', { detached: true });
  liveChildren.add(child);
  try {
    const reply = new Promise<FromScenario>((resolveReply, reject) => {
      child.once('message', (raw) => resolveReply(raw as FromScenario));
      // 'close' (not 'exit') comes after the IPC channel is drained, so a result sent just
      // before exiting is never mistaken for a missing one.
      child.once('close', (code, signal) => reject(new Error(`scenario process exited without a result (code ${code}, signal ${signal})`)));
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`scenario timed out after ${timeoutMs / 1000} s`)), timeoutMs);
    });
    const request: ScenarioRequest = { type: 'run', scenario, system, url: databaseUrl(baseUrl, name), quick };
    await send(child, request);
    try {
      const message = await Promise.race([reply, timeout]);
      if (message.type === 'fatal') throw new Error(message.message);
      await Promise.race([exited(child), new Promise((r) => setTimeout(r, 3000).unref())]);
      return { figures: message.figures, conditions: message.conditions };
    } finally {
      clearTimeout(timer);
    }
  } finally {
    killGroup(child);
    liveChildren.delete(child);
    await dropDatabase(admin, name);
  }
}

async function main(): Promise<number> {
  const cli = parseCli();
  const started = performance.now();
  const baseUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const admin = new pg.Client({ connectionString: baseUrl, application_name: 'skiplock bench' });
  await admin.connect();
  adminForCleanup = admin;
  mkdirSync(dirname(cli.out), { recursive: true });
  writeFileSync(cli.out, '');
  const emit = (line: Record<string, unknown>): void => {
    const text = JSON.stringify(line);
    process.stdout.write(`${text}\n`);
    appendFileSync(cli.out, `${text}\n`);
  };

  const server = await serverConditions(admin);
  const machine = { ...machineConditions(), skiplock_revision: skiplockRevision() };
  const maxConnections = Number(server.max_connections);
  const runId = new Date().toISOString();
  const versions: Partial<Record<SystemName, string>> = {};
  const results: ResultLine[] = [];
  let failures = 0;

  try {
    for (const scenario of cli.scenarios) {
      for (const system of cli.systems) {
        if (!runsIn(system, scenario)) {
          process.stderr.write(`bench: ${scenario} / ${system} skipped (${system} does not run behind the isolation backlogs)\n`);
          continue;
        }
        const adapter = await loadAdapter(system);
        versions[system] = adapter.version;
        const params = scenarioParams(scenario, cli.quick);
        const inUse = await waitForHeadroom(admin, connectionsNeeded(params, (c) => adapter.workerConnections(c)), maxConnections);
        process.stderr.write(`bench: ${scenario} / ${system} ...\n`);
        const t0 = performance.now();
        const common = {
          run_id: runId,
          quick: cli.quick,
          postgres: server,
          ...machine,
          loadavg_1m: round(os.loadavg()[0] ?? 0, 2),
          server_connections_in_use_before: inUse,
        };
        let line: ResultLine;
        try {
          const { figures, conditions } = await runOne(admin, baseUrl, scenario, system, cli.quick);
          line = {
            type: 'result',
            scenario,
            system,
            version: adapter.version,
            ok: true,
            wall_s: round((performance.now() - t0) / 1000, 1),
            figures,
            conditions: { ...conditions, ...common },
          };
        } catch (err) {
          failures += 1;
          line = {
            type: 'result',
            scenario,
            system,
            version: adapter.version,
            ok: false,
            // A scenario process's failure already carries its stack in the message.
            error: (err instanceof Error ? err.message : String(err)).slice(0, 2000),
            wall_s: round((performance.now() - t0) / 1000, 1),
            figures: {},
            conditions: common,
          };
        }
        results.push(line);
        emit({ ...line });
      }
    }
  } finally {
    await cleanupAll();
  }

  const figureOf = (scenario: ScenarioName, system: SystemName, metric: string): number | undefined => {
    const line = results.find((r) => r.scenario === scenario && r.system === system && r.ok);
    return line ? numberAt(line.figures, metric) : undefined;
  };
  emit({
    type: 'ratios',
    run_id: runId,
    note: RATIO_NOTE,
    versions,
    ratios: ratios(figureOf, cli.scenarios),
    isolation_note: ISOLATION_NOTE,
    isolation_vs_drain_c10: isolationRatios(figureOf, cli.scenarios, cli.systems),
    failures,
    total_s: round((performance.now() - started) / 1000, 1),
  });
  await admin.end();
  return failures > 0 ? 1 : 0;
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`bench: ${signal}; cleaning up\n`);
    void cleanupAll().finally(() => process.exit(130));
  });
}

main()
  .then((code) => {
    process.exitCode = code;
  })
  .catch(async (err: unknown) => {
    process.stderr.write(`bench: ${errorText(err)}\n`);
    await cleanupAll();
    process.exit(1);
  });
