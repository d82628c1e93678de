// Completer (src/worker/completer.ts): batched, fenced result writes with a fake store.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Claim, FinishedStatus, Result } from '../../src/db/jobstore.js';
import { Completer, type CompleterOptions, type FinishStatus, type PendingResult, type ResultWriter } from '../../src/worker/completer.js';
import type { JobRun } from '../../src/worker/run.js';
import { afterMicrotasks, type Deferred, deferred, makeRun, settle, turn } from './helpers.js';

// Everything here settles in milliseconds: fail fast rather than at the 120 s default.
vi.setConfig({ testTimeout: 5000 });

type Call = { kind: 'complete'; ids: string[]; tokens: string[] } | { kind: 'finish'; results: Result[] };

/**
 * A fake ResultWriter: records every statement, counts how many run at once, and answers
 * through `gate` (set it to hold statements open) or `fail` (throw for the next n calls).
 */
class FakeStore implements ResultWriter {
  calls: Call[] = [];
  inFlight = 0;
  maxInFlight = 0;
  /** Ids whose claim is gone (not written). */
  gone = new Set<string>();
  /** Status a failure write reports (default: queued for a retry). */
  failStatus: FinishedStatus = 'queued';
  gates: Deferred<void>[] = [];
  holdNext = 0;
  failNext = 0;
  error: unknown = new Error('connection lost');

  private async enter(): Promise<void> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.holdNext > 0) {
        this.holdNext--;
        const gate = deferred<void>();
        this.gates.push(gate);
        await gate.promise;
      }
      if (this.failNext > 0) {
        this.failNext--;
        throw this.error;
      }
    } finally {
      this.inFlight--;
    }
  }

  async completeMany(claims: readonly Claim[]): Promise<(id: string) => boolean> {
    this.calls.push({ kind: 'complete', ids: claims.map((c) => c.id), tokens: claims.map((c) => c.token) });
    await this.enter();
    const gone = new Set(this.gone);
    return (id) => !gone.has(id);
  }

  async finishMany(results: readonly Result[]): Promise<Map<string, FinishedStatus>> {
    this.calls.push({ kind: 'finish', results: [...results] });
    await this.enter();
    return new Map(results.filter((r) => !this.gone.has(r.id)).map((r) => [r.id, this.failStatus]));
  }

  /** Ids per statement, in order. */
  batches(): string[][] {
    return this.calls.map((c) => (c.kind === 'complete' ? c.ids : c.results.map((r) => r.id)));
  }
}

const ok = (run: JobRun): PendingResult => ({ run, ok: true, delayMs: 0, error: null });
const failed = (run: JobRun, delayMs = 1000, error = 'boom'): PendingResult => ({ run, ok: false, delayMs, error });

function setup(store: ResultWriter, over: Partial<CompleterOptions> = {}) {
  const written: Array<{ id: string; status: FinishStatus; backlog: number; pending: string[] }> = [];
  const gaveUp: Array<{ id: string; err: unknown }> = [];
  const retries: Array<{ err: unknown; attempt: number }> = [];
  const events: string[] = [];
  let flushed = 0;
  // eslint-disable-next-line prefer-const
  let completer: Completer;
  const options: CompleterOptions = {
    retryForMs: 10_000,
    onRetry: (err, attempt) => {
      retries.push({ err, attempt });
      events.push(`retry ${attempt}`);
    },
    onWritten: (result, status) => {
      written.push({ id: result.run.id, status, backlog: completer.backlog, pending: completer.pendingRuns().map((r) => r.id) });
      events.push(`written ${result.run.id}`);
    },
    onGaveUp: (result, err) => {
      gaveUp.push({ id: result.run.id, err });
      events.push(`gave up ${result.run.id}`);
    },
    onFlushed: () => {
      flushed++;
      events.push('flushed');
    },
    ...over,
  };
  completer = new Completer(store, options);
  return { completer, written, gaveUp, retries, events, flushed: () => flushed };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('Completer: statements', () => {
  it('successes go through completeMany (ids and tokens), failures through finishMany, with their statuses', async () => {
    const store = new FakeStore();
    const { completer, written } = setup(store);
    const [a, b, c] = [makeRun(1), makeRun(2), makeRun(3)];
    completer.add(ok(a));
    completer.add(failed(b, 250, 'bad input'));
    completer.add(ok(c));
    await completer.drain();
    expect(store.calls).toEqual([
      { kind: 'complete', ids: ['1', '3'], tokens: ['tok-1', 'tok-3'] },
      { kind: 'finish', results: [{ id: '2', token: 'tok-2', ok: false, delayMs: 250, error: 'bad input' }] },
    ]);
    expect(written.map((w) => [w.id, w.status])).toEqual([
      ['1', 'succeeded'],
      ['3', 'succeeded'],
      ['2', 'queued'],
    ]);
  });

  it('a result whose claim is gone is reported with status undefined', async () => {
    const store = new FakeStore();
    store.gone.add('2');
    store.gone.add('4');
    store.failStatus = 'failed';
    const { completer, written } = setup(store);
    for (const [i, good] of [[1, true], [2, true], [3, false], [4, false]] as const) completer.add(good ? ok(makeRun(i)) : failed(makeRun(i)));
    await completer.drain();
    expect(Object.fromEntries(written.map((w) => [w.id, w.status]))).toEqual({ '1': 'succeeded', '2': undefined, '3': 'failed', '4': undefined });
  });

  it('results added in one event-loop turn share one statement; a lone result waits one turn only', async () => {
    const store = new FakeStore();
    const { completer, written } = setup(store);
    completer.add(ok(makeRun(1)));
    // Results from later microtasks of the same turn (handlers resolving together) join it.
    await Promise.resolve();
    completer.add(ok(makeRun(2)));
    afterMicrotasks(20, () => completer.add(ok(makeRun(3))));
    expect(store.calls).toHaveLength(0); // not synchronously: it waits for the turn to end
    await turn();
    expect(store.batches()).toEqual([['1', '2', '3']]);
    await turn();
    expect(written).toHaveLength(3);
    // At low load nothing waits: a lone result is in a statement after one turn.
    completer.add(ok(makeRun(4)));
    await turn();
    expect(store.batches()).toEqual([['1', '2', '3'], ['4']]);
  });

  it('results added while a statement runs go in the next one, all together; statements never overlap', async () => {
    const store = new FakeStore();
    store.holdNext = 2;
    const { completer, written } = setup(store);
    completer.add(ok(makeRun(1)));
    await turn();
    expect(store.batches()).toEqual([['1']]);
    for (let i = 2; i <= 5; i++) completer.add(ok(makeRun(i)));
    completer.add(failed(makeRun(6)));
    await settle();
    expect(store.calls).toHaveLength(1); // the first is still running
    store.gates[0]!.resolve();
    await settle();
    expect(store.batches()).toEqual([['1'], ['2', '3', '4', '5']]);
    store.gates[1]!.resolve();
    await completer.drain();
    expect(store.batches()).toEqual([['1'], ['2', '3', '4', '5'], ['6']]);
    expect(store.maxInFlight).toBe(1);
    expect(written.map((w) => w.id)).toEqual(['1', '2', '3', '4', '5', '6']);
  });

  it('maxBatch splits a backlog into statements of at most that many, in order', async () => {
    const store = new FakeStore();
    const { completer, flushed } = setup(store, { maxBatch: 2 });
    for (let i = 1; i <= 5; i++) completer.add(ok(makeRun(i)));
    await completer.drain();
    expect(store.batches()).toEqual([['1', '2'], ['3', '4'], ['5']]);
    expect(flushed()).toBe(3);
  });
});

describe('Completer: backlog and pending runs', () => {
  it('backlog counts queued + in flight, and has shrunk by the time onWritten is called', async () => {
    const store = new FakeStore();
    store.holdNext = 1;
    const { completer, written } = setup(store);
    for (let i = 1; i <= 3; i++) completer.add(ok(makeRun(i)));
    completer.add(failed(makeRun(4)));
    completer.add(failed(makeRun(5)));
    expect(completer.backlog).toBe(5);
    await turn();
    expect(store.calls).toHaveLength(1); // the successes' statement, held open
    completer.add(ok(makeRun(6))); // queued behind the batch in flight
    expect(completer.backlog).toBe(6);
    expect(completer.pendingRuns().map((r) => r.id)).toEqual(['1', '2', '3', '4', '5', '6']);
    store.gates[0]!.resolve();
    await completer.drain();
    // While the successes were reported, only the failures (still in flight) and 6 remained.
    expect(written.slice(0, 3)).toEqual(
      ['1', '2', '3'].map((id) => ({ id, status: 'succeeded', backlog: 3, pending: ['4', '5', '6'] })),
    );
    expect(written.slice(3, 5)).toEqual(['4', '5'].map((id) => ({ id, status: 'queued', backlog: 1, pending: ['6'] })));
    expect(written[5]).toEqual({ id: '6', status: 'succeeded', backlog: 0, pending: [] });
    expect(completer.backlog).toBe(0);
    expect(completer.pendingRuns()).toEqual([]);
  });

  it('onFlushed comes after each statement, once its results are reported', async () => {
    const store = new FakeStore();
    const { completer, events } = setup(store);
    completer.add(ok(makeRun(1)));
    completer.add(failed(makeRun(2)));
    await completer.drain();
    expect(events).toEqual(['written 1', 'flushed', 'written 2', 'flushed']);
  });
});

describe('Completer: never loses a result', () => {
  /**
   * Adds one result, then a second one `depth` microtasks after the first statement was
   * settled (onFlushed), as a handler finishing at that moment would; returns whether both
   * were written once everything settled.
   */
  async function secondWritten(completer: Completer, store: FakeStore, written: () => string[], depth: number): Promise<boolean> {
    let once = true;
    (completer as unknown as { options: CompleterOptions }).options.onFlushed = () => {
      if (once) afterMicrotasks(depth, () => completer.add(ok(makeRun(2))));
      once = false;
    };
    completer.add(ok(makeRun(1)));
    await completer.drain();
    await settle(4);
    await completer.drain();
    return written().length === 2 && store.calls.length === 2;
  }

  /** The flush as it would be without the re-check in `finally`. */
  function withoutRecheck(completer: Completer): void {
    const c = completer as unknown as { flushing: Promise<void> | undefined; flushLoop(): Promise<void>; flushSoon(): Promise<void> };
    c.flushSoon = async function (this: typeof c) {
      try {
        await new Promise<void>((resolve) => setImmediate(resolve));
        await this.flushLoop();
      } finally {
        this.flushing = undefined;
      }
    };
  }

  it('a result added at any moment around the end of a flush is written (the finally re-check); a naive flush loses one', async () => {
    const naiveLost: number[] = [];
    for (let depth = 0; depth <= 12; depth++) {
      const store = new FakeStore();
      const { completer, written } = setup(store);
      expect(await secondWritten(completer, store, () => written.map((w) => w.id), depth), `depth ${depth}`).toBe(true);
      expect(completer.backlog).toBe(0);

      const naiveStore = new FakeStore();
      const naive = setup(naiveStore);
      withoutRecheck(naive.completer);
      if (!(await secondWritten(naive.completer, naiveStore, () => naive.written.map((w) => w.id), depth))) {
        naiveLost.push(depth);
        expect(naive.completer.backlog).toBe(1); // stuck in the queue, no flush coming
      }
    }
    // The window exists: without the re-check some moment loses the result for good.
    expect(naiveLost.length).toBeGreaterThan(0);
  });

  it('drain() resolves only once results added during the flush are written too', async () => {
    const store = new FakeStore();
    store.holdNext = 1;
    const { completer, written } = setup(store);
    completer.add(ok(makeRun(1)));
    await turn();
    completer.add(failed(makeRun(2)));
    let drained = false;
    const drain = completer.drain().then(() => (drained = true));
    await settle();
    expect(drained).toBe(false);
    store.gates[0]!.resolve();
    await drain;
    expect(written.map((w) => w.id)).toEqual(['1', '2']);
    await expect(new Completer(store, { retryForMs: 0, onRetry() {}, onWritten() {}, onGaveUp() {}, onFlushed() {} }).drain()).resolves.toBeUndefined();
  });
});

describe('Completer: refused batches', () => {
  it('retries a refused batch with growing delays (onRetry) until it is written', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] }); // setImmediate stays real
    const store = new FakeStore();
    const err = new Error('deadlock detected');
    store.error = err;
    store.failNext = 2;
    const { completer, written, retries, gaveUp, flushed } = setup(store, { retryForMs: 5000 });
    completer.add(ok(makeRun(1)));
    completer.add(ok(makeRun(2)));
    await settle();
    expect(store.calls).toHaveLength(1);
    expect(retries).toEqual([{ err, attempt: 1 }]);
    await vi.advanceTimersByTimeAsync(99);
    expect(store.calls).toHaveLength(1); // 100 ms before the second attempt
    await vi.advanceTimersByTimeAsync(1);
    expect(store.calls).toHaveLength(2);
    expect(retries).toEqual([
      { err, attempt: 1 },
      { err, attempt: 2 },
    ]);
    await vi.advanceTimersByTimeAsync(199);
    expect(store.calls).toHaveLength(2); // then 200 ms
    expect(written).toHaveLength(0);
    expect(completer.backlog).toBe(2); // still pending: its leases must still be renewed
    expect(completer.pendingRuns().map((r) => r.id)).toEqual(['1', '2']);
    await vi.advanceTimersByTimeAsync(1);
    await completer.drain();
    expect(store.batches()).toEqual([['1', '2'], ['1', '2'], ['1', '2']]);
    expect(written.map((w) => w.id)).toEqual(['1', '2']);
    expect(gaveUp).toEqual([]);
    expect(flushed()).toBe(1);
  });

  it('gives up after retryForMs: onGaveUp for each result, then onFlushed; later results still go through', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const store = new FakeStore();
    const err = Object.assign(new Error('connection terminated'), { code: '57P01' });
    store.error = err;
    store.failNext = 100;
    const { completer, written, retries, gaveUp, events } = setup(store, { retryForMs: 250 });
    completer.add(failed(makeRun(1)));
    completer.add(failed(makeRun(2)));
    await settle();
    await vi.advanceTimersByTimeAsync(100); // attempt 2 at 100 ms
    await vi.advanceTimersByTimeAsync(200); // attempt 3 at 300 ms: past 250 → give up
    await completer.drain();
    expect(store.calls).toHaveLength(3);
    expect(retries.map((r) => r.attempt)).toEqual([1, 2]);
    expect(gaveUp).toEqual([
      { id: '1', err },
      { id: '2', err },
    ]);
    expect(written).toEqual([]);
    expect(events.slice(-3)).toEqual(['gave up 1', 'gave up 2', 'flushed']);
    expect(completer.backlog).toBe(0);
    // The completer is not wedged.
    store.failNext = 0;
    completer.add(ok(makeRun(3)));
    await completer.drain();
    expect(written.map((w) => w.id)).toEqual(['3']);
  });

  it('retryForMs 0 gives up at the first refusal, without onRetry', async () => {
    const store = new FakeStore();
    store.failNext = 1;
    const { completer, retries, gaveUp } = setup(store, { retryForMs: 0 });
    completer.add(ok(makeRun(1)));
    await completer.drain();
    expect(retries).toEqual([]);
    expect(gaveUp.map((g) => g.id)).toEqual(['1']);
    expect(store.calls).toHaveLength(1);
  });

  it('a refused success statement does not hold back the failures of the same batch once settled', async () => {
    const store = new FakeStore();
    store.failNext = 1;
    const { completer, gaveUp, written } = setup(store, { retryForMs: 0 });
    completer.add(ok(makeRun(1)));
    completer.add(failed(makeRun(2)));
    await completer.drain();
    expect(gaveUp.map((g) => g.id)).toEqual(['1']);
    expect(written.map((w) => [w.id, w.status])).toEqual([['2', 'queued']]);
  });
});
