import type { ChildProcess } from 'node:child_process';
import { nowMs, sleep } from './common.js';
import { type FromWorker, type WorkerFinal, type WorkerInit, exited, forkTs, send } from './proc.js';

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;
const CLOCK_ROUNDS = 7;

interface Member {
  child: ChildProcess;
  handled: number;
  lastAt: number;
  firstAt: number;
  /** This child's clock minus ours, in ms (estimated over IPC). */
  clockOffsetMs: number;
}

/**
 * Worker processes (bench/worker.ts) of one scenario: started idle, counted while they run,
 * stopped together. A child that fails or exits early fails every wait.
 */
export class Fleet {
  private readonly members: Member[];
  private failure: Error | undefined;
  private readonly failed: Promise<never>;
  private stopping = false;

  private constructor(children: ChildProcess[]) {
    this.members = children.map((child) => ({ child, handled: 0, lastAt: 0, firstAt: 0, clockOffsetMs: 0 }));
    let reject: (err: Error) => void = () => undefined;
    this.failed = new Promise<never>((_, r) => {
      reject = r;
    });
    this.failed.catch(() => undefined);
    const fail = (err: Error): void => {
      if (this.failure) return;
      this.failure = err;
      reject(err);
    };
    for (const member of this.members) {
      member.child.on('message', (raw) => {
        const message = raw as FromWorker;
        if (message.type === 'count') {
          member.handled = message.handled;
          member.lastAt = message.lastAt;
          member.firstAt = message.firstAt;
        } else if (message.type === 'fatal') {
          fail(new Error(`worker process ${member.child.pid} failed: ${message.message}`));
        }
      });
      member.child.once('exit', (code, signal) => {
        if (!this.stopping) fail(new Error(`worker process ${member.child.pid} exited early (code ${code}, signal ${signal})`));
      });
    }
  }

  /** Forks `count` worker processes and resolves once every one is ready to take jobs. */
  static async start(count: number, init: Omit<WorkerInit, 'type'>): Promise<Fleet> {
    const fleet = new Fleet(Array.from({ length: count }, () => forkTs('worker.ts')));
    try {
      await fleet.guard(
        Promise.all(
          fleet.members.map(async (member) => {
            const ready = nextMessage(member.child, 'ready');
            await send(member.child, { ...init, type: 'init' });
            await ready;
            member.clockOffsetMs = await measureOffset(member.child);
          }),
        ),
        READY_TIMEOUT_MS,
        'worker processes did not become ready',
      );
    } catch (err) {
      fleet.kill();
      throw err;
    }
    return fleet;
  }

  /** Jobs started so far, across processes (as of their last report, at most ~10 ms old). */
  get handled(): number {
    return this.members.reduce((sum, m) => sum + m.handled, 0);
  }

  /** When the latest job started (epoch ms, our clock). */
  get lastAt(): number {
    return Math.max(...this.members.map((m) => m.lastAt - m.clockOffsetMs));
  }

  /** When the first job started in any process (epoch ms, our clock; 0 = none yet). */
  get firstAt(): number {
    const started = this.members.filter((m) => m.firstAt > 0).map((m) => m.firstAt - m.clockOffsetMs);
    return started.length > 0 ? Math.min(...started) : 0;
  }

  get clockOffsetsMs(): number[] {
    return this.members.map((m) => m.clockOffsetMs);
  }

  get pids(): number[] {
    return this.members.map((m) => m.child.pid ?? -1);
  }

  /** Resolves when `predicate` holds (checked every `everyMs`); rejects on timeout or a failed child. */
  async waitFor(predicate: () => boolean, timeoutMs: number, what: string, everyMs = 2): Promise<void> {
    await this.guard(
      (async () => {
        while (!predicate()) await sleep(everyMs);
      })(),
      timeoutMs,
      what,
    );
  }

  /** Starts a timed round: first and latest start times count jobs with index >= from only. */
  async startRound(from: number): Promise<void> {
    await this.guard(
      Promise.all(
        this.members.map(async (member) => {
          const started = nextMessage(member.child, 'round-started');
          await send(member.child, { type: 'round', from });
          await started;
          member.firstAt = 0;
          member.lastAt = 0;
        }),
      ),
      READY_TIMEOUT_MS,
      'worker processes did not start the round',
    );
  }

  /** Stops every worker gracefully and returns what each reported, latencies corrected for clock offset. */
  async stop(): Promise<WorkerFinal[]> {
    this.stopping = true;
    try {
      return await this.guard(
        Promise.all(
          this.members.map(async (member) => {
            const final = nextMessage(member.child, 'final') as Promise<WorkerFinal>;
            await send(member.child, { type: 'stop' });
            const result = await final;
            await exited(member.child);
            const offset = member.clockOffsetMs;
            return { ...result, lastAt: result.lastAt - offset, firstAt: result.firstAt > 0 ? result.firstAt - offset : 0, latencies: result.latencies.map((l) => l - offset) };
          }),
        ),
        STOP_TIMEOUT_MS,
        'worker processes did not stop',
      );
    } finally {
      this.kill();
    }
  }

  kill(): void {
    this.stopping = true;
    for (const { child } of this.members) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }

  private async guard<T>(work: Promise<T>, timeoutMs: number, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([work, timeout, this.failed]);
    } finally {
      clearTimeout(timer);
    }
  }
}

function nextMessage(child: ChildProcess, type: FromWorker['type']): Promise<FromWorker> {
  return new Promise((resolve) => {
    const listener = (raw: unknown): void => {
      const message = raw as FromWorker;
      if (message.type !== type) return;
      child.off('message', listener);
      resolve(message);
    };
    child.on('message', listener);
  });
}

/** Child clock minus ours, from the IPC round trip with the smallest delay. */
async function measureOffset(child: ChildProcess): Promise<number> {
  let best = { rtt: Number.POSITIVE_INFINITY, offset: 0 };
  for (let round = 0; round < CLOCK_ROUNDS; round++) {
    const reply = nextMessage(child, 'clock');
    const sentAt = nowMs();
    await send(child, { type: 'clock', sentAt });
    const message = await reply;
    const back = nowMs();
    if (message.type !== 'clock') continue;
    const rtt = back - sentAt;
    if (rtt < best.rtt) best = { rtt, offset: message.childAt - (sentAt + back) / 2 };
  }
  return best.offset;
}
