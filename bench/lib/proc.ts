import { type ChildProcess, type Serializable, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { BacklogKind, SystemName } from './common.js';

/** The tsx loader, so children run the TypeScript sources directly. */
const TSX_LOADER = import.meta.resolve('tsx');

/** Forks a TypeScript module of bench/ as a Node process with an IPC channel. */
export function forkTs(relativeToBench: string, options: { detached?: boolean; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const modulePath = fileURLToPath(new URL(`../${relativeToBench}`, import.meta.url));
  return fork(modulePath, [], {
    execArgv: ['--import', TSX_LOADER],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    detached: options.detached ?? false,
    env: options.env ?? process.env,
    serialization: 'advanced',
  });
}

// ---- worker process protocol (bench/worker.ts) ----

export interface WorkerInit {
  type: 'init';
  system: SystemName;
  url: string;
  concurrency: number;
  /** Keep the enqueue-to-start latency (payload.t to handler start) of jobs with payload.i >= this; -1: none. */
  latencyFromIndex: number;
  /** Isolation scenarios: the kind of backlog queued that this worker must not take. */
  isolation?: BacklogKind;
}

/** 'round': from now on, first and latest start times count jobs with payload.i >= from only. */
export type ToWorker = WorkerInit | { type: 'clock'; sentAt: number } | { type: 'round'; from: number } | { type: 'stop' };

export interface WorkerFinal {
  type: 'final';
  handled: number;
  /** When this process started its latest timed job (epoch ms, its clock). */
  lastAt: number;
  /** When this process started its first timed job of the current round (epoch ms, its clock; 0 = none yet). */
  firstAt: number;
  latencies: number[];
  /** Backlog jobs (payload.i = BACKLOG_INDEX) this process was handed; not in `handled`. */
  backlogTaken: number;
  errors: string[];
  errorCount: number;
}

export type FromWorker =
  | { type: 'ready'; pid: number }
  | { type: 'clock'; sentAt: number; childAt: number }
  | { type: 'count'; handled: number; lastAt: number; firstAt: number }
  | { type: 'round-started' }
  | WorkerFinal
  | { type: 'fatal'; message: string };

// ---- scenario process protocol (bench/scenario.ts) ----

export interface ScenarioRequest {
  type: 'run';
  scenario: string;
  system: SystemName;
  url: string;
  quick: boolean;
}

export type FromScenario =
  | { type: 'result'; figures: Record<string, unknown>; conditions: Record<string, unknown> }
  | { type: 'fatal'; message: string };

/** What ChildProcess and process (in a forked child) have in common for sending. */
interface Sender {
  send?: (message: Serializable, callback: (err: Error | null) => void) => boolean;
}

/** Sends a message and resolves once it is handed to the channel. */
export function send<T extends Serializable>(target: ChildProcess | NodeJS.Process, message: T): Promise<void> {
  const sender = target as Sender;
  return new Promise((resolve, reject) => {
    if (!sender.send) {
      reject(new Error('no IPC channel'));
      return;
    }
    sender.send(message, (err) => (err ? reject(err) : resolve()));
  });
}

/** Kills a child's whole process group (it must have been forked detached). */
export function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Resolves when the child exits (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}
