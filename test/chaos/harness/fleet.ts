/** The fleet: real `skiplock worker` processes (the built CLI) on the scenario's schema. */
import { setTimeout as delay } from 'node:timers/promises';
import { type CliResult, startCli } from '../../helpers/cli.js';
import { waitFor } from '../../helpers/wait.js';
import { CHAOS_TASKS, type ChaosDb } from './ledger.js';
import { type Backend, POOL_APP, clientPortsOf, listenerApp, serverPort } from './observe.js';
import { freePort } from '../../helpers/measure.js';

export interface FleetOptions {
  workers: number;
  concurrency: number;
  leaseMs: number;
  heartbeatMs?: number;
  /** Default 250. */
  reaperIntervalMs?: number;
  /** Default 250. */
  pollIntervalMs?: number;
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

/** How a process the harness stopped exited. */
export interface WorkerExit {
  id: string;
  code: number | null;
  signal: string | null;
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
      String(o.reaperIntervalMs ?? 250),
      '--poll-interval',
      String(o.pollIntervalMs ?? 250),
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
    await waitFor(
      async () => (await this.chaos.count(`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1`, [listenerApp(proc.id)])) > 0,
      timeoutMs,
      `worker ${proc.id} to be ready`,
      {
        intervalMs: 100,
        retryOnError: true,
        abortIf: () => (proc.result === undefined ? undefined : `worker ${proc.id} exited (${proc.result.code ?? proc.result.signal})`),
      },
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
  async stopAll(timeoutMs = 30_000): Promise<WorkerExit[]> {
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

  /**
   * The end of a scenario: what went wrong on its own (unexpected exits, crash lines on
   * stderr), then stopAll().
   */
  async finish(): Promise<{ unexpected: string[]; crashes: string[]; stops: WorkerExit[] }> {
    const unexpected = this.describeUnexpectedExits();
    const crashes = this.crashLines();
    const stops = await this.stopAll();
    return { unexpected, crashes, stops };
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
