/**
 * Chaos harness: real `skiplock worker` processes against the real server, a producer,
 * fault injectors, a ledger written by the chaos-ledger task, invariant checks and a
 * one-line summary per scenario. Scenarios live in test/chaos/*.chaos.ts.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import type pg from 'pg';
import { Producer } from '../../src/index.js';
import { type CliResult, startCli } from '../helpers/cli.js';
import { DATABASE_URL, type TestSchema, createTestSchema } from '../helpers/db.js';
import type { ChaosPayload } from './tasks/chaos-ledger.js';

export type { ChaosPayload } from './tasks/chaos-ledger.js';

export const CHAOS_TASKS = 'test/chaos/tasks';
export const CHAOS_TASK = 'chaos-ledger';

const execFileAsync = promisify(execFile);

// ---------------------------------------------------------------------------------------
// Small utilities

/** A seeded PRNG (mulberry32), so a failing run can be replayed with CHAOS_SEED. */
export class Random {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(maxExclusive: number): number {
    return Math.floor(this.next() * maxExclusive);
  }

  pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[this.int(items.length)];
  }
}

export function seedFromEnv(): number {
  const fromEnv = Number(process.env.CHAOS_SEED);
  return Number.isSafeInteger(fromEnv) && fromEnv > 0 ? fromEnv : Math.floor(Math.random() * 2 ** 31) + 1;
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/**
 * Polls `check` until it returns something other than undefined/false. Unlike waitFor in
 * test/helpers/db.ts, a throwing check (e.g. the server is restarting) is retried, and the
 * last error is reported on timeout.
 */
export async function pollUntil<T>(
  check: () => Promise<T | undefined | false>,
  timeoutMs: number,
  what: string,
  everyMs = 50,
  /** Checked each round: a message fails the wait at once (e.g. fleet.deathNotice). */
  abortIf?: () => string | undefined,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    const abort = abortIf?.();
    if (abort !== undefined) throw new Error(`while waiting for ${what}: ${abort}`);
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError === undefined ? '' : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await delay(everyMs);
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** The one-letter state of a process from /proc (R, S, D, T = stopped, Z, ...), or undefined if gone. */
export function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

/** Formats and prints the one summary line of a scenario; returns it. */
export function summary(name: string, figures: Record<string, string | number>): string {
  const line = `chaos ${name}: ${Object.entries(figures)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')}`;
  console.log(line);
  return line;
}

// ---------------------------------------------------------------------------------------
// The scenario's database: schema, ledger, producer

export interface ChaosDb {
  readonly db: TestSchema;
  /** schema.ledger, for CHAOS_LEDGER_TABLE. */
  readonly ledger: string;
  readonly producer: Producer;
  readonly jobsTable: string;
  /** Rows of a query on the test pool. */
  rows<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]>;
  count(text: string, values?: unknown[]): Promise<number>;
  /** Errors of idle test-pool connections (server restarts, terminated backends). */
  readonly poolErrors: string[];
  drop(): Promise<void>;
}

/** A fresh schema (t_chaos_<name>_<random>) with the jobs table and a ledger. */
export async function createChaosDb(name: string): Promise<ChaosDb> {
  const db = await createTestSchema(`chaos_${name}`, { max: 6 });
  const poolErrors: string[] = [];
  // The test's own pool must survive a server restart: an idle client's error is not fatal.
  db.pool.on('error', (err) => poolErrors.push(err.message));
  const ledger = `${db.schema}.ledger`;
  await db.pool.query(`CREATE TABLE ${ledger} (
    id          bigserial PRIMARY KEY,
    job_id      bigint NOT NULL,
    attempt     integer NOT NULL,
    pid         integer NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz)`);
  await db.pool.query(`CREATE INDEX ON ${ledger} (job_id, attempt)`);
  const producer = new Producer({ pool: db.pool, schema: db.schema });
  const rows = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> => (await db.pool.query<R>(text, values)).rows;
  return {
    db,
    ledger,
    producer,
    jobsTable: `"${db.schema}".jobs`,
    rows,
    async count(text: string, values: unknown[] = []): Promise<number> {
      const [row] = await rows<{ n: string }>(text, values);
      return Number(row?.n ?? 0);
    },
    poolErrors,
    async drop(): Promise<void> {
      await pollUntil(async () => (await db.pool.query('SELECT 1')).rowCount === 1, 60_000, 'the server to answer before dropping the schema', 250);
      await db.drop();
    },
  };
}

/** Enqueues `total` chaos-ledger jobs in batches (one enqueueMany statement each); returns the ids. */
export async function enqueueBulk(
  chaos: ChaosDb,
  total: number,
  payload: (i: number) => ChaosPayload,
  options: { batch?: number; queue?: string; maxAttempts?: number; pauseMs?: number } = {},
): Promise<string[]> {
  const batch = options.batch ?? 2000;
  const ids: string[] = [];
  for (let start = 0; start < total; start += batch) {
    const jobs = Array.from({ length: Math.min(batch, total - start) }, (_, k) => ({
      task: CHAOS_TASK,
      queue: options.queue ?? 'chaos',
      payload: payload(start + k),
      maxAttempts: options.maxAttempts ?? 25,
    }));
    const result = await chaos.producer.enqueueMany(jobs);
    ids.push(...result.ids);
    if (options.pauseMs) await delay(options.pauseMs);
  }
  return ids;
}

/** Jobs of the schema by status. */
export async function statusCounts(chaos: ChaosDb): Promise<Record<string, number>> {
  const rows = await chaos.rows<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM ${chaos.jobsTable} GROUP BY status ORDER BY status`);
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
}

export function formatStatuses(counts: Record<string, number>): string {
  return Object.entries(counts)
    .map(([s, n]) => `${s}:${n}`)
    .join(',');
}

/**
 * Waits until every job of the schema has succeeded (tolerating errors while the server is
 * away); resolves to the time it happened (Date.now()).
 */
export async function waitForDrain(chaos: ChaosDb, total: number, timeoutMs: number, fleet?: WorkerFleet): Promise<number> {
  let dead: string[] = [];
  let succeeded = 0;
  await pollUntil(
    async () => {
      // A worker that died on its own fails the scenario at once, with its stderr.
      dead = fleet?.describeUnexpectedExits() ?? [];
      if (dead.length > 0) {
        succeeded = await chaos.count(`SELECT count(*) AS n FROM ${chaos.jobsTable} WHERE status = 'succeeded'`).catch(() => -1);
        return true;
      }
      succeeded = await chaos.count(`SELECT count(*) AS n FROM ${chaos.jobsTable} WHERE status = 'succeeded'`);
      return succeeded >= total;
    },
    timeoutMs,
    `all ${total} jobs to succeed`,
    100,
  ).catch(async (err: unknown) => {
    const statuses = await statusCounts(chaos).catch(() => ({}));
    throw new Error(`${err instanceof Error ? err.message : String(err)}; jobs by status: ${formatStatuses(statuses)}`);
  });
  if (dead.length > 0) throw new Error(`worker processes exited on their own (${succeeded}/${total} jobs succeeded):\n${dead.join('\n')}`);
  return Date.now();
}

// ---------------------------------------------------------------------------------------
// Worker processes

export interface FleetOptions {
  workers: number;
  concurrency: number;
  leaseMs: number;
  heartbeatMs?: number;
  reaperIntervalMs: number;
  pollIntervalMs: number;
  shutdownGraceMs?: number;
  queues?: string[];
  /** Serve /metrics and /healthz on a free port in every worker (else --metrics-port 0). */
  metrics?: boolean;
  logLevel?: string;
  extraArgs?: string[];
}

export interface WorkerProcess {
  readonly slot: number;
  readonly generation: number;
  /** --worker-id: <fleet prefix>-<slot>.<generation>; the jobs' locked_by. */
  readonly id: string;
  readonly pid: number;
  readonly port: number | undefined;
  readonly child: ReturnType<typeof startCli>;
  /** Set once the harness killed or stopped it on purpose. */
  expectedExit: boolean;
  /** Set when the process has exited. */
  result: CliResult | undefined;
}

export interface Backend {
  pid: number;
  application_name: string;
  client_port: number;
  /** pg_stat_activity.state: active, idle, idle in transaction, ... */
  state: string | null;
}

/** What the workers' connections are called in pg_stat_activity. */
export const POOL_APP = 'skiplock worker';
export function listenerApp(workerId: string): string {
  return `skiplock listener ${workerId}`.slice(0, 63);
}

/** Lines on a worker's stderr that mean it crashed or leaked a rejection. */
const CRASH_PATTERNS = /unhandled|uncaught|^\s*at |Error:|exception|ERR_|node:internal/im;

/**
 * N `skiplock worker` processes of one schema, each in a slot. A killed slot can be
 * restarted (a new generation with a new pid and worker id).
 */
export class WorkerFleet {
  readonly prefix: string;
  /** Every process ever started, in order. */
  readonly all: WorkerProcess[] = [];
  private readonly current = new Map<number, WorkerProcess>();

  constructor(
    private readonly chaos: ChaosDb,
    readonly options: FleetOptions,
  ) {
    this.prefix = `chaos-${chaos.db.schema.slice(-8)}`;
  }

  /** Starts every slot and waits until each is ready (its listener is connected). */
  async start(timeoutMs = 60_000): Promise<void> {
    const procs: WorkerProcess[] = [];
    for (let slot = 0; slot < this.options.workers; slot++) procs.push(await this.spawn(slot));
    await Promise.all(procs.map((p) => this.ready(p, timeoutMs)));
  }

  /** Starts (or restarts) the worker of a slot; does not wait for it to be ready. */
  async spawn(slot: number): Promise<WorkerProcess> {
    const previous = this.current.get(slot);
    if (previous && previous.result === undefined) throw new Error(`slot ${slot} still runs pid ${previous.pid}`);
    const generation = previous ? previous.generation + 1 : 0;
    const id = `${this.prefix}-${slot}.${generation}`;
    const port = this.options.metrics ? await freePort() : undefined;
    const o = this.options;
    const args = [
      'worker',
      '--database-url',
      this.chaos.db.connectionString,
      '--schema',
      this.chaos.db.schema,
      '--tasks',
      CHAOS_TASKS,
      '--concurrency',
      String(o.concurrency),
      '--lease',
      String(o.leaseMs),
      '--reaper-interval',
      String(o.reaperIntervalMs),
      '--poll-interval',
      String(o.pollIntervalMs),
      '--shutdown-grace',
      String(o.shutdownGraceMs ?? 5000),
      '--metrics-port',
      String(port ?? 0),
      '--log-level',
      o.logLevel ?? 'warn',
      '--worker-id',
      id,
      ...(o.heartbeatMs !== undefined ? ['--heartbeat', String(o.heartbeatMs)] : []),
      ...(o.queues ? ['--queues', o.queues.join(',')] : []),
      ...(o.extraArgs ?? []),
    ];
    const child = startCli(args, { env: { CHAOS_LEDGER_TABLE: this.chaos.ledger } });
    if (child.pid === undefined) throw new Error(`could not start worker ${id}`);
    const proc: WorkerProcess = { slot, generation, id, pid: child.pid, port, child, expectedExit: false, result: undefined };
    void child.done.then((result) => {
      proc.result = result;
    });
    this.all.push(proc);
    this.current.set(slot, proc);
    return proc;
  }

  /** Waits until the worker's LISTEN connection shows in pg_stat_activity (it connects last at start). */
  async ready(proc: WorkerProcess, timeoutMs = 60_000): Promise<void> {
    await pollUntil(
      async () => {
        if (proc.result !== undefined) {
          throw new Error(`worker ${proc.id} exited (${proc.result.code ?? proc.result.signal}) before it was ready: ${proc.result.stderr.trim()}`);
        }
        const n = await this.chaos.count(`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1`, [listenerApp(proc.id)]);
        return n > 0;
      },
      timeoutMs,
      `worker ${proc.id} to be ready`,
      100,
    ).catch((err: unknown) => {
      if (proc.result !== undefined) throw new Error(`worker ${proc.id} exited before it was ready: ${proc.result.stderr.trim()}`);
      throw err;
    });
  }

  /** The process now in each slot. */
  get slots(): WorkerProcess[] {
    return [...this.current.values()].sort((a, b) => a.slot - b.slot);
  }

  /** The processes in their slots that have not exited. */
  live(): WorkerProcess[] {
    return this.slots.filter((p) => p.result === undefined);
  }

  /** pid -> process, over every process ever started. */
  byPid(): Map<number, WorkerProcess> {
    return new Map(this.all.map((p) => [p.pid, p]));
  }

  /** Kills a process on purpose and waits for it to exit. */
  async kill(proc: WorkerProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<CliResult> {
    proc.expectedExit = true;
    proc.child.kill(signal);
    return proc.child.done;
  }

  /** SIGSTOP / SIGCONT a process. */
  pause(proc: WorkerProcess): void {
    process.kill(proc.pid, 'SIGSTOP');
  }

  resume(proc: WorkerProcess): void {
    process.kill(proc.pid, 'SIGCONT');
  }

  /** The backends of this fleet's live processes, found by their client ports (via /proc). */
  async backends(procs: readonly WorkerProcess[] = this.live()): Promise<Backend[]> {
    const ports = clientPortsOf(
      procs.map((p) => p.pid),
      serverPort(),
    );
    if (ports.length === 0) return [];
    return this.chaos.rows<Backend>(
      `SELECT pid, application_name, client_port, state FROM pg_stat_activity
       WHERE datname = current_database() AND client_port = ANY($1::int[])
         AND (application_name = $2 OR application_name LIKE 'skiplock listener %')`,
      [ports, POOL_APP],
    );
  }

  /** Processes that exited without the harness asking them to. */
  unexpectedExits(): WorkerProcess[] {
    return this.all.filter((p) => p.result !== undefined && !p.expectedExit);
  }

  /** Undefined while no process exited on its own; else what happened to them. */
  deathNotice(): string | undefined {
    const dead = this.describeUnexpectedExits();
    return dead.length > 0 ? `worker processes exited on their own:\n${dead.join('\n')}` : undefined;
  }

  /** One line per unexpected exit: worker id, exit code or signal, and the end of its stderr. */
  describeUnexpectedExits(): string[] {
    return this.unexpectedExits().map((p) => {
      const stderr = (p.result?.stderr ?? '')
        .trim()
        .split('\n')
        .filter((line) => line.trim() && !line.startsWith('Node.js v'))
        .slice(0, 12)
        .join('\n    ');
      return `${p.id} (pid ${p.pid}) exited ${p.result?.code ?? p.result?.signal}:\n    ${stderr || '(no stderr)'}`;
    });
  }

  /** Lines on any worker's stderr that look like a crash or an unhandled rejection. */
  crashLines(): string[] {
    const out: string[] = [];
    for (const p of this.all) {
      const stderr = p.result?.stderr ?? p.child.output().stderr;
      for (const line of stderr.split('\n')) if (line.trim() && CRASH_PATTERNS.test(line)) out.push(`${p.id}: ${line.trim()}`);
    }
    return out;
  }

  /** Everything on the stderr of every process (they log to stdout; stderr should be empty). */
  stderr(): string {
    return this.all
      .map((p) => ({ p, text: (p.result?.stderr ?? p.child.output().stderr).trim() }))
      .filter((x) => x.text)
      .map((x) => `--- ${x.p.id} (pid ${x.p.pid}):\n${x.text}`)
      .join('\n');
  }

  /** A process's pino log lines (JSON on stdout) as objects. */
  logs(proc: WorkerProcess): Array<Record<string, unknown>> {
    const stdout = proc.result?.stdout ?? proc.child.output().stdout;
    const out: Array<Record<string, unknown>> = [];
    for (const line of stdout.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a line cut by a kill
      }
    }
    return out;
  }

  /** SIGTERM every live process (SIGCONT first) and waits; resolves to the exit codes. */
  async stopAll(timeoutMs = 30_000): Promise<Array<{ id: string; code: number | null; signal: string | null }>> {
    const live = this.live();
    for (const p of live) {
      p.expectedExit = true;
      try {
        process.kill(p.pid, 'SIGCONT');
      } catch {
        // already gone
      }
      p.child.kill('SIGTERM');
    }
    const results = await Promise.race([
      Promise.all(live.map((p) => p.child.done)),
      delay(timeoutMs).then(() => undefined),
    ]);
    if (results === undefined) {
      for (const p of live) if (p.result === undefined) p.child.kill('SIGKILL');
      throw new Error(`workers did not stop within ${timeoutMs} ms of SIGTERM: ${live.filter((p) => p.result === undefined).map((p) => p.id)}`);
    }
    return live.map((p, i) => ({ id: p.id, code: results[i]?.code ?? null, signal: results[i]?.signal ?? null }));
  }

  /** Kills whatever still runs (for afterEach / finally). */
  async destroy(): Promise<void> {
    const live = this.all.filter((p) => p.result === undefined);
    for (const p of live) {
      p.expectedExit = true;
      p.child.kill('SIGKILL');
    }
    await Promise.all(live.map((p) => p.child.done));
  }
}

function serverPort(): number {
  try {
    return Number(new URL(DATABASE_URL).port || 5432);
  } catch {
    return 5432;
  }
}

/** Local ports of the TCP connections these processes hold to `remotePort` (Linux /proc). */
export function clientPortsOf(pids: readonly number[], remotePort: number): number[] {
  const inodes = new Set<string>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m?.[1]) inodes.add(m[1]);
      } catch {
        // closed meanwhile
      }
    }
  }
  const ports: number[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const local = f[1];
      const remote = f[2];
      const inode = f[9];
      if (!local || !remote || !inode || !inodes.has(inode)) continue;
      if (parseInt(remote.split(':')[1] ?? '', 16) !== remotePort) continue;
      ports.push(parseInt(local.split(':')[1] ?? '', 16));
    }
  }
  return ports;
}

// ---------------------------------------------------------------------------------------
// Fault injectors

export interface InjectorOptions {
  /** Mean time between actions. */
  everyMs: number;
  /** Spread of the interval, as a fraction (0.25: everyMs +/- 25%). */
  jitter?: number;
  /** Stop after this many injected faults. */
  maxFaults?: number;
  /** Stop after this long. */
  forMs?: number;
  /** Stop once this returns true (checked before each action). */
  until?: () => boolean | Promise<boolean>;
  random: Random;
  /** One round: resolves to the number of faults it injected. */
  action: () => Promise<number>;
}

/** Runs a fault action every so often until told to stop or a limit is reached. */
export class Injector {
  faults = 0;
  rounds = 0;
  firstAt: number | undefined;
  lastAt: number | undefined;
  readonly errors: string[] = [];
  readonly done: Promise<void>;
  private stopped = false;
  private wake: (() => void) | undefined;

  constructor(
    readonly name: string,
    private readonly options: InjectorOptions,
  ) {
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    const { everyMs, jitter = 0.25, maxFaults, forMs, until, random, action } = this.options;
    const started = Date.now();
    for (;;) {
      const wait = Math.round(everyMs * (1 + jitter * (2 * random.next() - 1)));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
      if (this.stopped) return;
      if (forMs !== undefined && Date.now() - started >= forMs) return;
      if (until && (await until())) return;
      this.rounds += 1;
      try {
        const n = await action();
        if (n > 0) {
          this.faults += n;
          this.firstAt ??= Date.now();
          this.lastAt = Date.now();
        }
      } catch (err) {
        this.errors.push(err instanceof Error ? err.message : String(err));
      }
      if (maxFaults !== undefined && this.faults >= maxFaults) return;
    }
  }

  /** Stops after the action in progress, if any. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.done;
  }
}

/** Fault: SIGKILL a random live worker of the fleet and start a new one in its slot. */
export function crashAndRestart(fleet: WorkerFleet, random: Random, kills: Array<{ pid: number; at: number }>): () => Promise<number> {
  return async () => {
    const victim = random.pick(fleet.live());
    if (!victim) return 0;
    await fleet.kill(victim, 'SIGKILL');
    kills.push({ pid: victim.pid, at: Date.now() });
    await fleet.spawn(victim.slot);
    return 1;
  };
}

export interface BackendKillStats {
  pool: number;
  /** Pool connections that were running a statement or inside a transaction when killed. */
  poolBusy: number;
  listener: number;
  /** Time until each terminated listener's worker had a LISTEN connection again, ms. */
  listenerReturnMs: number[];
  /** Listeners that had not come back within the limit. */
  listenerNotBack: string[];
}

/**
 * Fault: pg_terminate_backend on `poolKills` random pool connections and `listenerKills`
 * random LISTEN connections of the fleet's live workers (found by client port, so other
 * processes' connections are never touched). Each listener kill is followed (in the
 * background) by a watch for its replacement connection.
 */
export function terminateBackends(
  chaos: ChaosDb,
  fleet: WorkerFleet,
  random: Random,
  stats: BackendKillStats,
  options: {
    poolKills: number;
    listenerKills: number;
    /** Chance that a round kills its listeners at all (default 1). */
    listenerChance?: number;
    listenerBackWithinMs?: number;
  },
  watches: Array<Promise<void>>,
): () => Promise<number> {
  return async () => {
    const backends = await fleet.backends();
    const pool = backends.filter((b) => b.application_name === POOL_APP);
    const listeners = backends.filter((b) => b.application_name.startsWith('skiplock listener '));
    const chosen: Backend[] = [];
    // Half of the pool kills go to a backend busy with a statement or a transaction, if any.
    const busy = pool.filter((b) => b.state !== 'idle');
    for (let i = 0; i < options.poolKills && pool.length > 0; i++) {
      const from = i % 2 === 0 && busy.length > 0 ? busy : pool;
      const [victim] = from.splice(random.int(from.length), 1);
      if (!victim) continue;
      chosen.push(victim);
      const other = from === busy ? pool : busy;
      const k = other.indexOf(victim);
      if (k >= 0) other.splice(k, 1);
    }
    const listenerKills = random.next() < (options.listenerChance ?? 1) ? options.listenerKills : 0;
    for (let i = 0; i < listenerKills && listeners.length > 0; i++) chosen.push(...listeners.splice(random.int(listeners.length), 1));
    let n = 0;
    for (const b of chosen) {
      const [row] = await chaos.rows<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [b.pid]);
      if (!row?.ok) continue;
      n += 1;
      if (b.application_name === POOL_APP) {
        stats.pool += 1;
        if (b.state !== 'idle') stats.poolBusy += 1;
        continue;
      }
      stats.listener += 1;
      const at = Date.now();
      const limit = options.listenerBackWithinMs ?? 15_000;
      watches.push(
        pollUntil(
          async () =>
            (await chaos.count(`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND pid <> $2`, [b.application_name, b.pid])) > 0,
          limit,
          `listener ${b.application_name} to reconnect`,
          50,
        ).then(
          () => void stats.listenerReturnMs.push(Date.now() - at),
          () => {
            // Its worker may have been killed meanwhile; only a live worker's absence counts.
            const owner = fleet.live().find((p) => listenerApp(p.id) === b.application_name);
            if (owner) stats.listenerNotBack.push(b.application_name);
          },
        ),
      );
    }
    return n;
  };
}

// ---------------------------------------------------------------------------------------
// Scraping a worker

export async function healthz(proc: WorkerProcess): Promise<{ ok: boolean; state: string; running: number; listening: boolean | null } | undefined> {
  if (proc.port === undefined) return undefined;
  const res = await fetch(`http://127.0.0.1:${proc.port}/healthz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
  if (!res) return undefined;
  return (await res.json()) as { ok: boolean; state: string; running: number; listening: boolean | null };
}

/** One unlabelled (or summed over labels) metric from a worker's /metrics. */
export async function scrapeMetric(proc: WorkerProcess, name: string): Promise<number | undefined> {
  if (proc.port === undefined) return undefined;
  const res = await fetch(`http://127.0.0.1:${proc.port}/metrics`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
  if (!res?.ok) return undefined;
  const text = await res.text();
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([-+\\d.eE]+|NaN)$`).exec(line);
    if (m?.[1]) sum = (sum ?? 0) + Number(m[1]);
  }
  return sum;
}

// ---------------------------------------------------------------------------------------
// Ledger invariants

export interface LedgerFigures {
  jobs: number;
  statuses: Record<string, number>;
  /** Executions recorded (ledger rows). */
  executions: number;
  /** Jobs with at least one execution. */
  executedJobs: number;
  /** Jobs with no execution at all. */
  lost: number;
  /** executions - jobs. */
  reexecutions: number;
  /** Superseded executions (not the completing one) by processes the harness killed. */
  supersededKilled: number;
  /** Superseded executions by processes that were never killed (lease lost while alive, or handler error). */
  supersededAlive: number;
  /**
   * Superseded executions whose handler had finished (its ledger row has finished_at): the
   * run was not interrupted, its result was lost before it was written (results are
   * written in batches a few ms later; a kill or an outage longer than the retry window
   * drops the ones waiting) or refused (lease lost meanwhile).
   */
  unrecorded: number;
  /** reexecutions - unrecorded: re-runs of executions that a fault interrupted. */
  interrupted: number;
  /** Succeeded jobs whose completing attempt has no finished ledger row. */
  winnerMissing: number;
  /** Jobs with more than one execution recorded as the completing one. */
  duplicatesSucceeded: number;
  /** (job, attempt) pairs executed more than once: two claims with one token. */
  doubleClaims: number;
  /** The most executions any one job had. */
  maxExecutionsPerJob: number;
}

/**
 * Reads the jobs table and the ledger. The completing execution of a succeeded job is the
 * ledger row of its final attempt; with `tx` jobs it is also the only row whose finished_at
 * committed, so a second finished row would be a second completion.
 */
export async function ledgerFigures(chaos: ChaosDb, killedPids: readonly number[]): Promise<LedgerFigures> {
  const j = chaos.jobsTable;
  const l = chaos.ledger;
  const statuses = await statusCounts(chaos);
  const [row] = await chaos.rows<Record<string, string>>(
    `WITH per_job AS (
       SELECT j.id, j.status, j.attempts, (j.payload->>'tx')::boolean IS TRUE AS tx,
              count(l.id) AS runs,
              count(l.id) FILTER (WHERE l.attempt = j.attempts AND l.finished_at IS NOT NULL) AS winner_runs,
              count(l.id) FILTER (WHERE l.finished_at IS NOT NULL) AS finished_runs
       FROM ${j} AS j LEFT JOIN ${l} AS l ON l.job_id = j.id
       GROUP BY j.id)
     SELECT count(*) AS jobs,
            coalesce(sum(runs), 0) AS executions,
            count(*) FILTER (WHERE runs > 0) AS executed_jobs,
            count(*) FILTER (WHERE runs = 0) AS lost,
            count(*) FILTER (WHERE status = 'succeeded' AND winner_runs = 0) AS winner_missing,
            count(*) FILTER (WHERE winner_runs > 1 OR (tx AND finished_runs > 1)) AS duplicates_succeeded,
            coalesce(max(runs), 0) AS max_runs,
            (SELECT count(*) FROM (SELECT 1 FROM ${l} GROUP BY job_id, attempt HAVING count(*) > 1) AS d) AS double_claims,
            (SELECT count(*) FROM ${l} AS s JOIN ${j} AS jj ON jj.id = s.job_id
              WHERE NOT (jj.status = 'succeeded' AND s.attempt = jj.attempts) AND s.pid = ANY($1::int[])) AS superseded_killed,
            (SELECT count(*) FROM ${l} AS s JOIN ${j} AS jj ON jj.id = s.job_id
              WHERE NOT (jj.status = 'succeeded' AND s.attempt = jj.attempts) AND NOT s.pid = ANY($1::int[])) AS superseded_alive,
            (SELECT count(*) FROM ${l} AS s JOIN ${j} AS jj ON jj.id = s.job_id
              WHERE NOT (jj.status = 'succeeded' AND s.attempt = jj.attempts) AND s.finished_at IS NOT NULL) AS unrecorded
     FROM per_job`,
    [killedPids],
  );
  const n = (k: string): number => Number(row?.[k] ?? 0);
  return {
    jobs: n('jobs'),
    statuses,
    executions: n('executions'),
    executedJobs: n('executed_jobs'),
    lost: n('lost'),
    reexecutions: n('executions') - n('jobs'),
    supersededKilled: n('superseded_killed'),
    supersededAlive: n('superseded_alive'),
    unrecorded: n('unrecorded'),
    interrupted: n('executions') - n('jobs') - n('unrecorded'),
    winnerMissing: n('winner_missing'),
    duplicatesSucceeded: n('duplicates_succeeded'),
    doubleClaims: n('double_claims'),
    maxExecutionsPerJob: n('max_runs'),
  };
}

/**
 * For every execution a kill interrupted: how long after the kill the job's next execution
 * started (ms). Kill times are this machine's clock, as are the server's timestamps.
 */
export async function rescueTimes(chaos: ChaosDb, kills: ReadonlyArray<{ pid: number; at: number }>): Promise<number[]> {
  if (kills.length === 0) return [];
  const rows = await chaos.rows<{ ms: number }>(
    `WITH k AS (SELECT * FROM unnest($1::int[], $2::float8[]) AS k(pid, at_ms))
     SELECT (extract(epoch FROM nxt.started_at) * 1000 - k.at_ms)::float8 AS ms
     FROM ${chaos.ledger} AS s
     JOIN k ON k.pid = s.pid
     JOIN ${chaos.jobsTable} AS j ON j.id = s.job_id
     JOIN LATERAL (SELECT n.started_at FROM ${chaos.ledger} AS n WHERE n.job_id = s.job_id AND n.attempt > s.attempt
                   ORDER BY n.attempt, n.started_at LIMIT 1) AS nxt ON true
     WHERE NOT (j.status = 'succeeded' AND s.attempt = j.attempts)`,
    [kills.map((k) => k.pid), kills.map((k) => k.at)],
  );
  return rows.map((r) => Number(r.ms));
}

/**
 * The invariants every load scenario keeps: all jobs succeeded, none lost, each completed by
 * exactly one execution of its final attempt, no attempt claimed twice, and re-runs of
 * interrupted executions within `bound` (a fault interrupts at most what was running).
 * Re-runs of executions that had finished but whose result was not yet written are counted
 * apart (`unrecorded`): batched result writing trades them for throughput. Returns the
 * list of violations (empty when all hold).
 */
export function coreViolations(f: LedgerFigures, expectedJobs: number, bound: number): string[] {
  const out: string[] = [];
  if (f.jobs !== expectedJobs) out.push(`jobs table has ${f.jobs} jobs, expected ${expectedJobs}`);
  if ((f.statuses.succeeded ?? 0) !== expectedJobs) out.push(`statuses ${formatStatuses(f.statuses)}: not all ${expectedJobs} succeeded`);
  if (f.lost !== 0) out.push(`${f.lost} jobs never executed (lost)`);
  if (f.winnerMissing !== 0) out.push(`${f.winnerMissing} succeeded jobs have no finished execution of their final attempt`);
  if (f.duplicatesSucceeded !== 0) out.push(`${f.duplicatesSucceeded} jobs were completed by more than one execution`);
  if (f.doubleClaims !== 0) out.push(`${f.doubleClaims} (job, attempt) pairs were executed twice: double claim`);
  if (f.interrupted > bound) out.push(`${f.interrupted} re-executions of interrupted runs exceed the bound ${bound}`);
  return out;
}

// ---------------------------------------------------------------------------------------
// Controlling the PostgreSQL server

export interface ServerControl {
  /** Undefined when the suite can control the server; else why not. */
  readonly unavailable: string | undefined;
  /** Restarts the cluster (fast mode); resolves to how long the command took, ms. */
  restart(): Promise<number>;
  /** Starts the cluster if it is down; a no-op when it runs. */
  ensureUp(): Promise<void>;
}

/** The local cluster behind DATABASE_URL, driven with pg_ctlcluster (Debian/Ubuntu), as root. */
export function serverControl(): ServerControl {
  const ctl = ['/usr/bin/pg_ctlcluster', '/usr/sbin/pg_ctlcluster'].find((p) => existsSync(p));
  let host = '';
  try {
    host = new URL(DATABASE_URL).hostname;
  } catch {
    // unparsable: treated as remote
  }
  const versions = existsSync('/etc/postgresql') ? readdirSync('/etc/postgresql').filter((v) => existsSync(`/etc/postgresql/${v}/main`)) : [];
  let unavailable: string | undefined;
  if (!ctl) unavailable = 'pg_ctlcluster not found';
  else if (process.getuid?.() !== 0) unavailable = 'not running as root';
  else if (!['127.0.0.1', 'localhost', '::1', '[::1]'].includes(host)) unavailable = `the test server (${host}) is not local`;
  else if (versions.length !== 1) unavailable = `expected one cluster named main under /etc/postgresql, found versions [${versions.join(', ')}]`;
  const version = versions[0] ?? '';
  const run = (action: string, extra: string[] = []): Promise<{ stdout: string; stderr: string }> =>
    execFileAsync(ctl ?? 'pg_ctlcluster', ['--skip-systemctl-redirect', ...extra, version, 'main', action], { timeout: 120_000 });
  return {
    unavailable,
    async restart(): Promise<number> {
      if (unavailable) throw new Error(`cannot restart the server: ${unavailable}`);
      const t0 = Date.now();
      await run('restart', ['--mode', 'fast']);
      return Date.now() - t0;
    },
    async ensureUp(): Promise<void> {
      if (unavailable) return;
      try {
        await run('status');
      } catch {
        await run('start');
      }
    },
  };
}

// ---------------------------------------------------------------------------------------
// Helpers of the dedupe, keys, transitions and tickets scenarios

/**
 * Largest number of [start, end] intervals open at once, per key. An interval that ends at
 * the very instant another starts does not overlap it.
 */
export function maxOverlap(intervals: ReadonlyArray<{ key: string; start: number; end: number }>): Map<string, number> {
  const byKey = new Map<string, Array<[number, number]>>();
  for (const i of intervals) {
    let events = byKey.get(i.key);
    if (!events) byKey.set(i.key, (events = []));
    events.push([i.start, 1], [i.end, -1]);
  }
  const out = new Map<string, number>();
  for (const [key, events] of byKey) {
    events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let open = 0;
    let max = 0;
    for (const [, d] of events) max = Math.max(max, (open += d));
    out.set(key, max);
  }
  return out;
}

/**
 * Checks `n` clients out of `pool` at once (each on a connection of its own). While the
 * server has no connection slot free (other sessions share it), waits and tries again.
 */
export async function checkoutClients(pool: pg.Pool, n: number, timeoutMs = 60_000): Promise<pg.PoolClient[]> {
  const clients: pg.PoolClient[] = [];
  const deadline = Date.now() + timeoutMs;
  while (clients.length < n) {
    try {
      clients.push(await pool.connect());
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if ((code !== '53300' && code !== '57P03') || Date.now() > deadline) {
        for (const c of clients) c.release();
        throw err;
      }
      await delay(200);
    }
  }
  return clients;
}

/**
 * Runs `probe` over and over (every `everyMs`, never two at once) until stopped, e.g. to
 * watch an invariant from outside while a scenario runs. Probe errors are kept, not thrown.
 */
export class Sampler {
  samples = 0;
  readonly errors: string[] = [];
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly everyMs: number,
    private readonly probe: () => Promise<void>,
  ) {
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.probe();
        this.samples += 1;
      } catch (err) {
        this.errors.push(err instanceof Error ? err.message : String(err));
      }
      if (!this.stopped) await delay(this.everyMs);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}
