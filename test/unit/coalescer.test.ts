// EnqueueCoalescer (src/producer/coalescer.ts): concurrent enqueue() calls sharing INSERTs.
import { describe, expect, it, vi } from 'vitest';
import { EnqueueCoalescer } from '../../src/producer/coalescer.js';
import { normalizeJob } from '../../src/producer/jobspec.js';
import type { NormalizedJob } from '../../src/job.js';
import { afterMicrotasks, type Deferred, deferred, settle, turn } from './helpers.js';

// Everything here settles in milliseconds: fail fast rather than at the 120 s default.
vi.setConfig({ testTimeout: 5000 });

const job = (n: number): NormalizedJob => normalizeJob({ task: 't', payload: { n } });
const nOf = (j: NormalizedJob): number => (JSON.parse(j.payload) as { n: number }).n;

/**
 * A fake INSERT: records the jobs of each statement (by payload n), counts statements
 * running at once; ids are `id-<n>`. `refuse` names jobs whose data the database refuses
 * (the whole statement then fails with `refusal`); `hold` keeps the next statements open.
 */
class FakeInsert {
  statements: number[][] = [];
  inFlight = 0;
  maxInFlight = 0;
  refuse = new Set<number>();
  refusal: (n: number) => unknown = (n) => Object.assign(new Error(`bad job ${n}`), { code: '23514' });
  /** Thrown by the next statements, whatever their jobs. */
  failures: unknown[] = [];
  hold = 0;
  gates: Deferred<void>[] = [];
  /** Ids returned: by default one per job. */
  idsFor: (jobs: readonly NormalizedJob[]) => string[] = (jobs) => jobs.map((j) => `id-${nOf(j)}`);

  readonly insert = async (jobs: readonly NormalizedJob[]): Promise<string[]> => {
    this.statements.push(jobs.map(nOf));
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.hold > 0) {
        this.hold--;
        const gate = deferred<void>();
        this.gates.push(gate);
        await gate.promise;
      }
      const failure = this.failures.shift();
      if (failure !== undefined) throw failure;
      const bad = jobs.map(nOf).find((n) => this.refuse.has(n));
      if (bad !== undefined) throw this.refusal(bad);
      return this.idsFor(jobs);
    } finally {
      this.inFlight--;
    }
  };
}

/** Settles each promise to its id or its error message. */
async function outcomes(calls: Promise<string>[]): Promise<string[]> {
  return Promise.all(calls.map((p) => p.then((id) => id, (err: Error) => `error: ${err.message}`)));
}

describe('EnqueueCoalescer: sharing statements', () => {
  it('concurrent calls share one statement, each getting its own id in order', async () => {
    const fake = new FakeInsert();
    const coalescer = new EnqueueCoalescer(fake.insert);
    const calls = [1, 2, 3, 4, 5].map((n) => coalescer.add(job(n)));
    expect(await Promise.all(calls)).toEqual(['id-1', 'id-2', 'id-3', 'id-4', 'id-5']);
    expect(fake.statements).toEqual([[1, 2, 3, 4, 5]]);
  });

  it('a lone call waits for nothing but the end of the current turn', async () => {
    const fake = new FakeInsert();
    const coalescer = new EnqueueCoalescer(fake.insert);
    const call = coalescer.add(job(1));
    // Calls made later in the same turn (other microtasks) still join it.
    await Promise.resolve();
    const second = coalescer.add(job(2));
    expect(fake.statements).toEqual([]);
    await turn();
    expect(fake.statements).toEqual([[1, 2]]);
    await expect(call).resolves.toBe('id-1');
    await expect(second).resolves.toBe('id-2');
  });

  it('calls that arrive while a statement runs go together into the next one; statements never overlap', async () => {
    const fake = new FakeInsert();
    fake.hold = 2;
    const coalescer = new EnqueueCoalescer(fake.insert);
    const first = coalescer.add(job(1));
    await turn();
    expect(fake.statements).toEqual([[1]]);
    const during = [2, 3, 4].map((n) => coalescer.add(job(n)));
    await settle();
    expect(fake.statements).toEqual([[1]]);
    fake.gates[0]!.resolve();
    await expect(first).resolves.toBe('id-1');
    await settle();
    expect(fake.statements).toEqual([[1], [2, 3, 4]]);
    const later = coalescer.add(job(5));
    fake.gates[1]!.resolve();
    expect(await outcomes([...during, later])).toEqual(['id-2', 'id-3', 'id-4', 'id-5']);
    expect(fake.statements).toEqual([[1], [2, 3, 4], [5]]);
    expect(fake.maxInFlight).toBe(1);
  });

  it('maxBatch splits the waiting calls into statements of at most that many, in order', async () => {
    const fake = new FakeInsert();
    const coalescer = new EnqueueCoalescer(fake.insert, 3);
    const calls = [1, 2, 3, 4, 5, 6, 7].map((n) => coalescer.add(job(n)));
    expect(await Promise.all(calls)).toEqual([1, 2, 3, 4, 5, 6, 7].map((n) => `id-${n}`));
    expect(fake.statements).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
  });

  it('a statement that returns too few ids fails only the calls left without one', async () => {
    const fake = new FakeInsert();
    fake.idsFor = (jobs) => jobs.slice(0, 2).map((j) => `id-${nOf(j)}`);
    const coalescer = new EnqueueCoalescer(fake.insert);
    expect(await outcomes([1, 2, 3].map((n) => coalescer.add(job(n))))).toEqual(['id-1', 'id-2', 'error: enqueue returned no id']);
  });
});

describe('EnqueueCoalescer: failures', () => {
  it.each([
    ['23505 (unique violation) on the error', (n: number) => Object.assign(new Error(`bad job ${n}`), { code: '23505' })],
    ['22P02 (invalid text) on the error', (n: number) => Object.assign(new Error(`bad job ${n}`), { code: '22P02' })],
    ['23514 as err.cause.code', (n: number) => new Error(`bad job ${n}`, { cause: Object.assign(new Error('check'), { code: '23514' }) })],
  ])('refused data (%s): the jobs are retried one per statement, so only the bad one fails', async (_name, refusal) => {
    const fake = new FakeInsert();
    fake.refuse.add(3);
    fake.refusal = refusal;
    const coalescer = new EnqueueCoalescer(fake.insert);
    const calls = [1, 2, 3, 4].map((n) => coalescer.add(job(n)));
    expect(await outcomes(calls)).toEqual(['id-1', 'id-2', 'error: bad job 3', 'id-4']);
    expect(fake.statements[0]).toEqual([1, 2, 3, 4]);
    expect(fake.statements.slice(1).sort((a, b) => a[0]! - b[0]!)).toEqual([[1], [2], [3], [4]]);
    expect(fake.statements).toHaveLength(5);
    // The error a failing call gets is the database's own.
    const err = await calls[2]!.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe('bad job 3');
  });

  it.each([
    ['a lost connection (no code)', () => new Error('Connection terminated unexpectedly')],
    ['ECONNRESET', () => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })],
    ['admin shutdown 57P01', () => Object.assign(new Error('terminating connection'), { code: '57P01' })],
    ['deadlock 40P01', () => Object.assign(new Error('deadlock detected'), { code: '40P01' })],
    ['a non-string code', () => Object.assign(new Error('odd'), { code: 23505 })],
    ['a thrown non-error', () => 'just a string'],
  ])('any other error (%s) fails every call of the statement without retrying', async (_name, make) => {
    const fake = new FakeInsert();
    const failure = make();
    fake.failures.push(failure);
    const coalescer = new EnqueueCoalescer(fake.insert);
    const calls = [1, 2, 3].map((n) => coalescer.add(job(n)));
    const errors = await Promise.all(calls.map((p) => p.then(() => 'resolved', (e: unknown) => e)));
    expect(errors).toEqual([failure, failure, failure]);
    expect(fake.statements).toEqual([[1, 2, 3]]); // one statement: a retry could insert twice
    // The next calls go through as usual.
    await expect(coalescer.add(job(9))).resolves.toBe('id-9');
  });

  it('a lone call whose data is refused fails at once (no second statement)', async () => {
    const fake = new FakeInsert();
    fake.refuse.add(1);
    const coalescer = new EnqueueCoalescer(fake.insert);
    await expect(coalescer.add(job(1))).rejects.toThrow('bad job 1');
    expect(fake.statements).toEqual([[1]]);
  });

  it('a connection lost during the one-by-one retries fails only the job whose statement it hit', async () => {
    const fake = new FakeInsert();
    fake.refuse.add(2);
    const coalescer = new EnqueueCoalescer(fake.insert);
    const lost = new Error('Connection terminated');
    // First statement: refused for job 2; then job 1 alone meets a lost connection.
    fake.failures.push(undefined, lost);
    const calls = [1, 2, 3].map((n) => coalescer.add(job(n)));
    expect(await outcomes(calls)).toEqual(['error: Connection terminated', 'error: bad job 2', 'id-3']);
  });
});

describe('EnqueueCoalescer: never loses a call', () => {
  /** Makes a call, and a second one `depth` microtasks after the first resolved (as its caller would). */
  async function secondSettles(coalescer: EnqueueCoalescer, depth: number): Promise<boolean> {
    let second: Promise<string> | undefined;
    await coalescer.add(job(1)).then(() => afterMicrotasks(depth, () => (second = coalescer.add(job(2)))));
    await settle(6);
    if (second === undefined) return false;
    const settled = await Promise.race([second.then(() => true), settle(4).then(() => false)]);
    return settled;
  }

  /**
   * The round as it would be without the re-check in `finally`, its loop in a function of
   * its own (as the completer's is). In run() as written, the loop's last check and the
   * `finally` run in one synchronous stretch, so the re-check there is a safeguard against
   * such a refactor rather than load-bearing today.
   */
  function withoutRecheck(coalescer: EnqueueCoalescer): void {
    const c = coalescer as unknown as { running: Promise<void> | undefined; waiting: unknown[]; write(batch: unknown[]): Promise<void>; run(): Promise<void> };
    const loop = async (): Promise<void> => {
      while (c.waiting.length > 0) await c.write(c.waiting.splice(0, 1000));
    };
    c.run = async function (this: typeof c) {
      try {
        await new Promise<void>((resolve) => setImmediate(resolve));
        await loop();
      } finally {
        this.running = undefined;
      }
    };
  }

  it('a call made at any moment around the end of a round is written; a round without the finally re-check loses one', async () => {
    const naiveLost: number[] = [];
    for (let depth = 0; depth <= 12; depth++) {
      const fake = new FakeInsert();
      expect(await secondSettles(new EnqueueCoalescer(fake.insert), depth), `depth ${depth}`).toBe(true);
      expect(fake.statements).toEqual([[1], [2]]);

      const naive = new EnqueueCoalescer(new FakeInsert().insert);
      withoutRecheck(naive);
      if (!(await secondSettles(naive, depth))) naiveLost.push(depth);
    }
    expect(naiveLost.length).toBeGreaterThan(0);
  });

  it('idle() resolves once every call made so far is settled, including those queued behind a statement', async () => {
    const fake = new FakeInsert();
    fake.hold = 1;
    const coalescer = new EnqueueCoalescer(fake.insert);
    const settledIds: string[] = [];
    const track = (p: Promise<string>): void => void p.then((id) => settledIds.push(id));
    track(coalescer.add(job(1)));
    await turn();
    track(coalescer.add(job(2)));
    let idle = false;
    const waiting = coalescer.idle().then(() => (idle = true));
    await settle();
    expect(idle).toBe(false);
    fake.gates[0]!.resolve();
    await waiting;
    expect(settledIds).toEqual(['id-1', 'id-2']);
    await expect(new EnqueueCoalescer(fake.insert).idle()).resolves.toBeUndefined();
  });
});
