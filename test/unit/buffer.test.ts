// PrefetchBuffer (src/worker/buffer.ts): how many jobs a claim asks for, and claim-order starts.
import { describe, expect, it, vi } from 'vitest';
import { BUFFER_HORIZON_MS, PrefetchBuffer } from '../../src/worker/buffer.js';
import type { JobRun } from '../../src/worker/run.js';
import { makeRun } from './helpers.js';

// Everything here settles in milliseconds: fail fast rather than at the 120 s default.
vi.setConfig({ testTimeout: 5000 });

const ids = (runs: readonly JobRun[]): string[] => runs.map((r) => r.id);

function takeAll(buffer: PrefetchBuffer): string[] {
  const out: string[] = [];
  for (let run = buffer.take(); run !== undefined; run = buffer.take()) out.push(run.id);
  return out;
}

describe('PrefetchBuffer: cold', () => {
  it('targets 0 until a handler returns: claims ask only for free slots', () => {
    const buffer = new PrefetchBuffer(4, 100);
    expect(BUFFER_HORIZON_MS).toBe(100);
    expect(buffer.target()).toBe(0);
    // A free slot and nothing buffered: claim exactly the free slots.
    expect(buffer.wantsClaim(0)).toBe(true);
    expect(buffer.claimLimit(0)).toBe(4);
    expect(buffer.wantsClaim(3)).toBe(true);
    expect(buffer.claimLimit(3)).toBe(1);
    // Every slot taken: no claim while cold, never hoarding.
    expect(buffer.wantsClaim(4)).toBe(false);
    // Something buffered already (it fills a free slot): no claim.
    buffer.push(makeRun(1));
    expect(buffer.wantsClaim(4)).toBe(false);
    expect(buffer.wantsClaim(3)).toBe(false);
    expect(buffer.claimLimit(2)).toBe(1); // 4 - 2 running - 1 buffered
  });

  it('a review alone (running median) does not warm it up', () => {
    const buffer = new PrefetchBuffer(4, 100);
    buffer.review(0, [5, 5, 5], 1000);
    expect(buffer.target()).toBe(0);
  });

  it('prefetch 0 keeps the target 0 even when warm', () => {
    const buffer = new PrefetchBuffer(8, 0);
    buffer.recordDuration(1);
    expect(buffer.target()).toBe(0);
    expect(buffer.wantsClaim(8)).toBe(false);
    expect(buffer.claimLimit(5)).toBe(3);
  });
});

describe('PrefetchBuffer: warm', () => {
  it('target = floor(concurrency × horizon / average), capped by prefetch', () => {
    const buffer = new PrefetchBuffer(4, 100);
    buffer.recordDuration(30);
    expect(buffer.target()).toBe(Math.floor((4 * 100) / 30)); // 13
    const capped = new PrefetchBuffer(4, 10);
    capped.recordDuration(30);
    expect(capped.target()).toBe(10);
    // Instant handlers (0 ms) do not divide by zero: the cap holds.
    const instant = new PrefetchBuffer(4, 50);
    instant.recordDuration(0);
    expect(instant.target()).toBe(50);
    // Handlers longer than the horizon × concurrency: nothing worth buffering.
    const slow = new PrefetchBuffer(2, 100);
    slow.recordDuration(250);
    expect(slow.target()).toBe(0);
  });

  it('follows a moving average: the first duration, then 5% of each new one', () => {
    const buffer = new PrefetchBuffer(10, 1000);
    buffer.recordDuration(100);
    expect(buffer.target()).toBe(10); // 1000 / 100
    buffer.recordDuration(200); // 100 + 0.05 × 100 = 105
    expect(buffer.target()).toBe(Math.floor(1000 / 105));
    for (let i = 0; i < 200; i++) buffer.recordDuration(10); // converges to 10 (from above)
    expect(buffer.target()).toBeGreaterThanOrEqual(95);
    expect(buffer.target()).toBeLessThanOrEqual(100);
  });

  it('a claim tops up once the buffer has run down to half the target, asking for free slots + target', () => {
    const buffer = new PrefetchBuffer(4, 10); // target 10 once warm
    buffer.recordDuration(1);
    expect(buffer.target()).toBe(10);
    for (let i = 0; i < 6; i++) buffer.push(makeRun(i));
    expect(buffer.wantsClaim(4)).toBe(false); // 6 > 10 / 2
    buffer.take();
    expect(buffer.size).toBe(5);
    expect(buffer.wantsClaim(4)).toBe(true); // 5 <= 10 / 2
    expect(buffer.claimLimit(4)).toBe(4 + 10 - 4 - 5); // tops up to the target
    expect(buffer.claimLimit(1)).toBe(4 + 10 - 1 - 5); // and fills free slots
    // An odd target: half of 7 is 3.5, so 3 buffered claims, 4 do not.
    const odd = new PrefetchBuffer(1, 7);
    odd.recordDuration(1);
    for (let i = 0; i < 4; i++) odd.push(makeRun(i));
    expect(odd.wantsClaim(1)).toBe(false);
    odd.take();
    expect(odd.wantsClaim(1)).toBe(true);
  });

  it('an empty buffer with every slot busy claims only when warm with a target', () => {
    const buffer = new PrefetchBuffer(2, 10);
    expect(buffer.wantsClaim(2)).toBe(false);
    buffer.recordDuration(50); // target floor(200 / 50) = 4
    expect(buffer.wantsClaim(2)).toBe(true);
    expect(buffer.claimLimit(2)).toBe(4);
  });
});

describe('PrefetchBuffer: holding back', () => {
  it("the running jobs' median elapsed time bounds the target, and lets go when they end", () => {
    const buffer = new PrefetchBuffer(4, 100);
    buffer.recordDuration(4); // target 100
    expect(buffer.target()).toBe(100);
    // The running jobs turn out long: median 2000 ms → nothing worth buffering.
    buffer.review(0, [1000, 3000, 2000], 10_000);
    expect(buffer.target()).toBe(0);
    expect(buffer.wantsClaim(4)).toBe(false);
    // A median smaller than the average changes nothing (the larger of the two counts).
    buffer.review(0, [1, 1, 1], 10_000);
    expect(buffer.target()).toBe(100);
    // Median of an even count: the upper middle value.
    buffer.review(0, [10, 20, 40, 80], 10_000);
    expect(buffer.target()).toBe(Math.floor(400 / 40));
    // No running jobs: back to the average alone.
    buffer.review(0, [], 10_000);
    expect(buffer.target()).toBe(100);
  });
});

describe('PrefetchBuffer: take, remove, review', () => {
  it('take() returns runs in claim order, skipping removed ones; undefined when empty', () => {
    const buffer = new PrefetchBuffer(1, 10);
    const runs = [1, 2, 3, 4, 5].map((i) => makeRun(i));
    for (const r of runs) buffer.push(r);
    expect(buffer.size).toBe(5);
    expect(buffer.has('3')).toBe(true);
    expect(ids(buffer.remove([runs[1]!, runs[3]!]))).toEqual(['2', '4']);
    expect(buffer.has('2')).toBe(false);
    expect(buffer.size).toBe(3);
    expect(buffer.take()?.id).toBe('1');
    expect(buffer.take()?.id).toBe('3');
    buffer.push(makeRun(6));
    expect(takeAll(buffer)).toEqual(['5', '6']);
    expect(buffer.take()).toBeUndefined();
    expect(buffer.size).toBe(0);
  });

  it('remove() returns only runs that were here: not taken ones, not another run of the same id', () => {
    const buffer = new PrefetchBuffer(1, 10);
    const a = makeRun(1);
    const b = makeRun(2);
    buffer.push(a);
    buffer.push(b);
    expect(buffer.take()).toBe(a);
    const otherB = makeRun(2); // same job id, another claim
    expect(buffer.remove([a, otherB])).toEqual([]);
    expect(buffer.has('2')).toBe(true);
    expect(buffer.remove([b, b])).toEqual([b]);
    expect(buffer.size).toBe(0);
    // Emptied by remove(): new pushes start clean, in order.
    buffer.push(makeRun(7));
    buffer.push(makeRun(8));
    expect(takeAll(buffer)).toEqual(['7', '8']);
  });

  it('a newer run of the same id replaces the older one in the buffer (the older is skipped)', () => {
    const buffer = new PrefetchBuffer(1, 10);
    const old = makeRun(1);
    buffer.push(old);
    buffer.push(makeRun(2));
    const renewed = makeRun(1);
    buffer.push(renewed);
    expect(buffer.size).toBe(2);
    expect(buffer.take()?.id).toBe('2');
    expect(buffer.take()).toBe(renewed);
    expect(buffer.take()).toBeUndefined();
  });

  it('removeAll() empties the buffer and returns every run in it', () => {
    const buffer = new PrefetchBuffer(1, 10);
    for (let i = 1; i <= 4; i++) buffer.push(makeRun(i));
    buffer.take();
    expect(ids(buffer.removeAll())).toEqual(['2', '3', '4']);
    expect(buffer.size).toBe(0);
    expect([...buffer.runs()]).toEqual([]);
    expect(buffer.take()).toBeUndefined();
  });

  it('runs() lists the buffered runs (for lease renewal), not those taken or removed', () => {
    const buffer = new PrefetchBuffer(1, 10);
    const runs = [1, 2, 3].map((i) => makeRun(i));
    for (const r of runs) buffer.push(r);
    buffer.take();
    buffer.remove([runs[2]!]);
    expect([...buffer.runs()]).toEqual([runs[1]]);
  });

  it('review() returns the runs that waited longer than maxWaitMs (strictly), and keeps them buffered', () => {
    const buffer = new PrefetchBuffer(1, 10);
    const early = makeRun(1, 0);
    const middle = makeRun(2, 500);
    const late = makeRun(3, 900);
    for (const r of [early, middle, late]) buffer.push(r);
    expect(buffer.review(1000, [], 500)).toEqual([early]); // 1000 - 500 = 500 is not longer
    expect(buffer.review(1001, [], 500)).toEqual([early, middle]);
    expect(buffer.size).toBe(3); // the caller removes them
    buffer.remove([early]);
    expect(buffer.review(5000, [], 500)).toEqual([middle, late]);
    expect(buffer.review(0, [], 500)).toEqual([]);
  });

  it('stays in claim order across compaction (>1024 takes), with removals interleaved', () => {
    const buffer = new PrefetchBuffer(1, 10_000);
    const n = 5000;
    for (let i = 0; i < n; i++) buffer.push(makeRun(i));
    const internal = buffer as unknown as { order: JobRun[]; head: number };
    const removed = new Set<number>();
    const taken: number[] = [];
    let compactions = 0;
    let lastLength = internal.order.length;
    for (let step = 0; buffer.size > 0; step++) {
      const run = buffer.take();
      if (run === undefined) break;
      taken.push(Number(run.id));
      // Remove a run further ahead now and then: take() must skip it after compaction too.
      const ahead = Number(run.id) + 7;
      if (step % 5 === 0 && ahead < n && !removed.has(ahead)) {
        const target = [...buffer.runs()].find((r) => r.id === String(ahead));
        if (target) removed.add(Number(buffer.remove([target])[0]!.id));
      }
      // Interleave new claims: they must come after every older one.
      if (step === 3000) for (let i = n; i < n + 100; i++) buffer.push(makeRun(i));
      if (internal.order.length < lastLength) compactions++;
      lastLength = internal.order.length;
      // The consumed prefix is dropped once it passes 1024 entries and half the array.
      expect(internal.head <= 1024 || internal.head * 2 <= internal.order.length).toBe(true);
    }
    expect(compactions).toBeGreaterThanOrEqual(2);
    const expected: number[] = [];
    for (let i = 0; i < n + 100; i++) if (!removed.has(i)) expected.push(i);
    expect(removed.size).toBeGreaterThan(100);
    expect(taken).toEqual(expected);
    expect(internal.order.length).toBe(0);
  });
});
