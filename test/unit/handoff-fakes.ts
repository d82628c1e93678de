// Fakes for Handoff (src/worker/handoff.ts): a store that records its statements and can hold
// them open or make them fail, and an intake whose idle slots and held jobs a test sets.
import { vi } from 'vitest';
import type { Waiter } from '../../src/db/jobstore.js';
import type { ClaimedJob } from '../../src/job.js';
import { silentLogger } from '../../src/observability/logger.js';
import { Handoff, type HandoffOptions } from '../../src/worker/handoff.js';
import { type Deferred, deferred } from './helpers.js';

type Method = 'registerWaiter' | 'withdrawWaiter' | 'dropWaiter' | 'adoptHandoffs' | 'handBackUnknown';

export class FakeWaiterStore {
  /** Statements in the order they started, e.g. "register 3", "withdraw", "adopt 5,6". */
  log: string[] = [];
  waiters: Waiter[] = [];
  inFlight = 0;
  maxInFlight = 0;
  /** While true, every statement waits for release(). */
  hold = false;
  private gates: Deferred<void>[] = [];
  /** Errors thrown by the next statement of a method. */
  failures = new Map<Method, unknown[]>();
  /** Slots the row offers after registerWaiter (default: what was asked). */
  slotsAnswer: (w: Waiter) => number = (w) => w.slots;
  /** Jobs adoptHandoffs finds. */
  adoptable: ClaimedJob[] = [];
  handedBack: string[] = [];

  get pending(): number {
    return this.gates.length;
  }

  /** Lets the oldest held statement finish. */
  release(): void {
    const gate = this.gates.shift();
    if (gate === undefined) throw new Error('no statement is held');
    gate.resolve();
  }

  private async run<T>(method: Method, entry: string, answer: () => T): Promise<T> {
    this.log.push(entry);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.hold) {
        const gate = deferred<void>();
        this.gates.push(gate);
        await gate.promise;
      } else {
        await Promise.resolve();
      }
      const failure = this.failures.get(method)?.shift();
      if (failure !== undefined) throw failure;
      return answer();
    } finally {
      this.inFlight--;
    }
  }

  readonly store: HandoffOptions['store'] = {
    registerWaiter: (w) =>
      this.run('registerWaiter', `register ${w.slots}`, () => {
        this.waiters.push(w);
        return this.slotsAnswer(w);
      }),
    withdrawWaiter: (workerId) => this.run('withdrawWaiter', `withdraw ${workerId}`, () => undefined),
    dropWaiter: (workerId) => this.run('dropWaiter', `drop ${workerId}`, () => undefined),
    adoptHandoffs: (workerId, known) => this.run('adoptHandoffs', `adopt ${workerId} [${known.join(',')}]`, () => this.adoptable),
    handBackUnknown: (workerId, known) => this.run('handBackUnknown', `handBack ${workerId} [${known.join(',')}]`, () => this.handedBack),
  };
}

export class FakeIntake {
  idle = 2;
  held: string[] = [];
  accepted: string[][] = [];
  readonly intake: HandoffOptions['intake'] = {
    idleSlots: () => this.idle,
    heldIds: () => [...this.held],
    accept: (jobs) => {
      this.accepted.push(jobs.map((j) => j.id));
    },
  };
}

export const WORKER = 'w1';
export const CHANNEL = 'skiplock_w_0123456789abcdef';

export function makeHandoff(over: Partial<HandoffOptions> = {}) {
  const db = new FakeWaiterStore();
  const worker = new FakeIntake();
  const logger = silentLogger();
  const warn = vi.spyOn(logger, 'warn');
  const info = vi.spyOn(logger, 'info');
  const handoff = new Handoff({
    store: db.store,
    workerId: WORKER,
    channel: CHANNEL,
    tasks: ['t', 'u'],
    queues: ['q'],
    leaseMs: 30_000,
    ttlMs: 3000,
    logger,
    describe: (err) => (err instanceof Error ? err.message : String(err)),
    intake: worker.intake,
    ...over,
  });
  return { handoff, db, worker, warn, info };
}
