// Handoff (src/worker/handoff.ts): a worker's offers of idle slots, with a fake store and intake.
import { performance } from 'node:perf_hooks';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ClaimedJob } from '../../src/job.js';
import { CHANNEL, makeHandoff, WORKER } from './handoff-fakes.js';
import { claimedRow, settle } from './helpers.js';

// Everything here settles in milliseconds: fail fast rather than at the 120 s default.
vi.setConfig({ testTimeout: 5000 });

const W = `withdraw ${WORKER}`;
const text = (id: string, over = {}): string => JSON.stringify(claimedRow(id, over));

let clock = 0;
beforeEach(() => {
  clock = 1_000;
  vi.spyOn(performance, 'now').mockImplementation(() => clock);
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('Handoff: offers', () => {
  it('offers nothing before start() or with no idle slot; then offers the idle slots with its settings', async () => {
    const { handoff, db, worker } = makeHandoff();
    handoff.offer();
    await settle();
    expect(db.log).toEqual([]);
    handoff.start();
    worker.idle = 0;
    handoff.offer();
    await settle();
    expect(db.log).toEqual([]);
    worker.idle = 3;
    handoff.offer();
    await settle();
    expect(db.log).toEqual(['register 3']);
    expect(db.waiters[0]).toEqual({ workerId: WORKER, channel: CHANNEL, tasks: ['t', 'u'], queues: ['q'], leaseMs: 30_000, slots: 3, ttlMs: 3000, received: 0 });
    expect(handoff.channel).toBe(CHANNEL);
  });

  it('a standing fresh offer is not repeated while it covers half the idle slots; topped up below that, renewed when old', async () => {
    const { handoff, db, worker } = makeHandoff();
    handoff.start();
    worker.idle = 4;
    handoff.offer();
    await settle();
    expect(db.log).toEqual(['register 4']);
    // 4 offered; the idle slots grow to 8: 4 × 2 >= 8, still enough.
    worker.idle = 8;
    handoff.offer();
    await settle();
    expect(db.log).toHaveLength(1);
    // 9 idle: fewer than half are offered → top up.
    worker.idle = 9;
    handoff.offer();
    await settle();
    expect(db.log).toEqual(['register 4', 'register 9']);
    // Fresh (before ttl/3 = 1000 ms): no statement; after it, the offer is renewed.
    clock += 999;
    handoff.offer();
    await settle();
    expect(db.log).toHaveLength(2);
    clock += 1;
    handoff.offer();
    await settle();
    expect(db.log).toEqual(['register 4', 'register 9', 'register 9']);
  });

  it('the slots the row reports are what counts as offered (a smaller answer leads to a top-up)', async () => {
    const { handoff, db, worker } = makeHandoff();
    db.slotsAnswer = () => 1; // e.g. hand-offs sent before the update were counted
    handoff.start();
    worker.idle = 4;
    handoff.offer();
    await settle();
    handoff.offer(); // 1 × 2 < 4
    await settle();
    expect(db.log).toEqual(['register 4', 'register 4']);
  });

  it('statements run one at a time, and of the wishes made meanwhile only the latest runs', async () => {
    const { handoff, db, worker } = makeHandoff();
    handoff.start();
    worker.idle = 2;
    handoff.offer();
    await settle();
    expect(db.log).toEqual(['register 2']); // 2 offered
    db.hold = true;
    worker.idle = 5;
    handoff.offer(); // top-up, held open
    await settle();
    expect(db.log).toEqual(['register 2', 'register 5']);
    handoff.withdraw();
    handoff.offer();
    handoff.withdraw();
    handoff.offer();
    handoff.withdraw(); // the latest wish
    await settle();
    expect(db.pending).toBe(1); // nothing else started meanwhile
    db.release();
    await settle();
    expect(db.log).toEqual(['register 2', 'register 5', W]);
    db.release();
    await settle();
    expect(db.log).toHaveLength(3); // one statement for five wishes
    expect(db.maxInFlight).toBe(1);
    // And the other way round: withdraw, then offer last → the offer runs.
    handoff.offer();
    await settle();
    handoff.withdraw();
    handoff.offer();
    db.release();
    await settle();
    expect(db.log).toEqual(['register 2', 'register 5', W, 'register 5', 'register 5']);
    db.release();
    await settle();
    expect(db.maxInFlight).toBe(1);
  });

  it('withdraw() runs a statement only when something is offered, and stops the offer', async () => {
    const { handoff, db, worker } = makeHandoff();
    handoff.start();
    handoff.withdraw();
    await settle();
    expect(db.log).toEqual([]);
    handoff.offer();
    await settle();
    handoff.withdraw();
    await settle();
    expect(db.log).toEqual(['register 2', W]);
    handoff.withdraw(); // already withdrawn
    await settle();
    expect(db.log).toHaveLength(2);
    // After a withdraw, any idle slot is offered again at once (nothing counts as offered).
    worker.idle = 1;
    handoff.offer();
    await settle();
    expect(db.log).toEqual(['register 2', W, 'register 1']);
  });

  it('a failed offer is logged, counts as nothing offered, and the next offer() tries again', async () => {
    const { handoff, db, warn } = makeHandoff();
    handoff.start();
    db.failures.set('registerWaiter', [new Error('connection refused')]);
    handoff.offer();
    await settle();
    expect(warn).toHaveBeenCalledWith({ err: 'connection refused' }, 'hand-off offer failed');
    handoff.offer();
    await settle();
    expect(db.log).toEqual(['register 2', 'register 2']);
  });
});

describe('Handoff: hand-offs received', () => {
  it('accept() turns a hand-off row into a claimed job', () => {
    const { handoff } = makeHandoff();
    const job = handoff.accept(text('42', { payload: { a: [1] }, timeoutMs: 5000, dedupeKey: 'k', attempt: 2 }));
    expect(job).toBeInstanceOf(ClaimedJob);
    expect(job).toMatchObject({ id: '42', queue: 'q', task: 't', payload: { a: [1] }, token: 'tok-42', attempt: 2, timeoutMs: 5000, dedupeKey: 'k', concurrencyKey: null });
    expect(job!.startedAt.getTime()).toBe(1_700_000_001_000);
    // A null payload is a payload.
    expect(handoff.accept(text('43', { payload: null }))?.payload).toBeNull();
  });

  it.each([
    ['not JSON', 'hello'],
    ['truncated JSON', text('1').slice(0, 30)],
    ['null', 'null'],
    ['a number', '42'],
    ['an array', JSON.stringify([claimedRow('1')])],
    ['a non-numeric id', text('abc')],
    ['a numeric (not text) id', JSON.stringify({ ...claimedRow('1'), id: 1 })],
    ['an id of 20 digits', text('12345678901234567890')],
    ['no payload', JSON.stringify({ ...claimedRow('1'), payload: undefined })],
    ['no token', JSON.stringify({ ...claimedRow('1'), token: undefined })],
    ['a text attempt', JSON.stringify({ ...claimedRow('1'), attempt: '1' })],
    ['a text timeout', JSON.stringify({ ...claimedRow('1'), timeoutMs: '5s' })],
    ['a numeric dedupe key', JSON.stringify({ ...claimedRow('1'), dedupeKey: 7 })],
    ['a text run_at', JSON.stringify({ ...claimedRow('1'), runAtMs: '2024-01-01' })],
  ])('accept() refuses %s with a warning, and it does not count as a hand-off', async (_name, payload) => {
    const { handoff, db, warn } = makeHandoff();
    handoff.start();
    handoff.offer();
    await settle();
    expect(handoff.accept(payload)).toBeUndefined();
    expect(warn).toHaveBeenCalledWith({ channel: CHANNEL, payload: payload.slice(0, 200) }, 'ignored a notification that is not a hand-off');
    // Still 2 offered for 2 idle slots: no top-up, and the next renewal reports 0 received.
    handoff.offer();
    await settle();
    expect(db.log).toEqual(['register 2']);
    clock += 1000;
    handoff.offer();
    await settle();
    expect(db.waiters.map((w) => w.received)).toEqual([0, 0]);
  });

  it('a long junk payload is logged cut to 200 characters', () => {
    const { handoff, warn } = makeHandoff();
    handoff.accept('x'.repeat(5000));
    expect(warn.mock.calls[0]![0]).toEqual({ channel: CHANNEL, payload: 'x'.repeat(200) });
  });

  it('each hand-off received takes one offered slot and is reported back in the next offer', async () => {
    const { handoff, db, worker } = makeHandoff();
    handoff.start();
    worker.idle = 4;
    handoff.offer();
    await settle();
    expect(handoff.accept(text('1'))?.id).toBe('1'); // 3 offered
    handoff.offer(); // 3 × 2 >= 4: enough
    await settle();
    expect(db.log).toHaveLength(1);
    expect(handoff.accept(text('2'))?.id).toBe('2'); // 2 offered: 2 × 2 >= 4 still
    handoff.offer();
    await settle();
    expect(db.log).toHaveLength(1);
    handoff.accept(text('3')); // 1 offered < half
    handoff.offer();
    await settle();
    expect(db.log).toEqual(['register 4', 'register 4']);
    expect(db.waiters.map((w) => w.received)).toEqual([0, 3]);
  });

  it('hand-offs that arrive while the offer statement runs are counted off what the row reports', async () => {
    const { handoff, db, worker } = makeHandoff();
    handoff.start();
    worker.idle = 4;
    db.hold = true;
    handoff.offer();
    await settle();
    handoff.accept(text('1'));
    handoff.accept(text('2'));
    db.release(); // the row says 4 (it may not have counted the two yet) → 2 offered
    await settle();
    db.hold = false;
    handoff.offer(); // 2 × 2 >= 4: enough
    await settle();
    expect(db.log).toEqual(['register 4']);
    worker.idle = 5; // 2 × 2 < 5 → top-up, reporting the 2 received
    handoff.offer();
    await settle();
    expect(db.log).toEqual(['register 4', 'register 5']);
    expect(db.waiters[1]!.received).toBe(2);
  });

  it('a hand-off notified twice runs once', () => {
    const { handoff } = makeHandoff();
    expect(handoff.accept(text('7'))?.id).toBe('7');
    expect(handoff.accept(text('7'))).toBeUndefined();
    expect(handoff.accept(text('8'))?.id).toBe('8');
  });

  it('ids are remembered for a minute: with over 1024 seen, older ones are forgotten, recent ones kept', () => {
    const { handoff } = makeHandoff();
    for (let i = 0; i < 1100; i++) expect(handoff.accept(text(String(i)))).toBeDefined();
    expect(handoff.accept(text('5'))).toBeUndefined(); // all recent: kept
    clock += 60_000;
    expect(handoff.accept(text('2000'))).toBeDefined(); // prunes the old ones first
    expect(handoff.accept(text('5'))).toBeDefined(); // forgotten → new again
    expect(handoff.accept(text('2000'))).toBeUndefined();
  });

  it('handBackUnknown() asks the store with the ids the worker holds and returns what went back', async () => {
    const { handoff, db, worker, warn } = makeHandoff();
    worker.held = ['1', '2'];
    db.handedBack = ['9'];
    await expect(handoff.handBackUnknown()).resolves.toEqual(['9']);
    expect(db.log).toEqual([`handBack ${WORKER} [1,2]`]);
    expect(warn).toHaveBeenCalledWith({ jobs: ['9'] }, expect.stringContaining('handed back'));
  });
});

describe('Handoff: listener outages', () => {
  it('listenerLost() withdraws the offer and stops offers until listenerBack() has adopted the lost hand-offs', async () => {
    const { handoff, db, worker, info } = makeHandoff();
    handoff.start();
    handoff.offer();
    await settle();
    handoff.listenerLost();
    await settle();
    expect(db.log).toEqual(['register 2', W]);
    handoff.offer();
    await settle();
    expect(db.log).toHaveLength(2); // no offers while the listener is down
    // Back: one job arrived before the outage, three were handed over during it, one of
    // which is also notified (late) after the lookup.
    expect(handoff.accept(text('10'))?.id).toBe('10');
    worker.held = ['10'];
    db.adoptable = [new ClaimedJob(claimedRow('10')), new ClaimedJob(claimedRow('11')), new ClaimedJob(claimedRow('12'))];
    handoff.listenerBack();
    await settle();
    expect(db.log).toEqual(['register 2', W, W, `adopt ${WORKER} [10]`]);
    expect(worker.accepted).toEqual([['11', '12']]); // 10 was received already
    expect(info).toHaveBeenCalledWith({ jobs: ['11', '12'] }, expect.any(String));
    expect(handoff.accept(text('12'))).toBeUndefined(); // adopted then notified: runs once
    // Offers resume.
    handoff.offer();
    await settle();
    expect(db.log.at(-1)).toBe('register 2');
  });

  it('an adoption that finds nothing new calls no intake.accept', async () => {
    const { handoff, db, worker } = makeHandoff();
    handoff.start();
    handoff.accept(text('5'));
    db.adoptable = [new ClaimedJob(claimedRow('5'))];
    handoff.listenerLost();
    handoff.listenerBack();
    await settle();
    expect(worker.accepted).toEqual([]);
  });

  it('a failed recovery is retried at the next offer(), and offers wait until it succeeds', async () => {
    const { handoff, db, worker, warn } = makeHandoff();
    handoff.start();
    handoff.listenerLost();
    await settle();
    db.failures.set('adoptHandoffs', [new Error('database unreachable')]);
    db.adoptable = [new ClaimedJob(claimedRow('3'))];
    handoff.listenerBack();
    await settle();
    expect(db.log).toEqual([W, W, `adopt ${WORKER} []`]);
    expect(warn).toHaveBeenCalledWith({ err: 'database unreachable' }, 'hand-off withdraw failed');
    expect(worker.accepted).toEqual([]);
    handoff.offer(); // retries the recovery instead of offering
    await settle();
    expect(db.log).toEqual([W, W, `adopt ${WORKER} []`, W, `adopt ${WORKER} []`]);
    expect(worker.accepted).toEqual([['3']]);
    handoff.offer();
    await settle();
    expect(db.log.at(-1)).toBe('register 2');
  });
});

describe('Handoff: close', () => {
  it('close() waits for the statement in flight, drops the row, and no offer follows', async () => {
    const { handoff, db } = makeHandoff();
    handoff.start();
    db.hold = true;
    handoff.offer();
    await settle();
    let closed = false;
    const closing = handoff.close().then(() => (closed = true));
    handoff.offer(); // ignored: closing
    await settle();
    expect(db.log).toEqual(['register 2']);
    expect(closed).toBe(false);
    db.release();
    await settle();
    expect(db.log).toEqual(['register 2', `drop ${WORKER}`]);
    db.release();
    await closing;
    handoff.offer();
    handoff.listenerBack(); // a late reconnect: no offer either
    await settle();
    db.hold = false;
    expect(db.log.filter((e) => e.startsWith('register'))).toEqual(['register 2']);
  });

  it('a failing drop is only logged (the row expires by itself)', async () => {
    const { handoff, db, warn } = makeHandoff();
    db.failures.set('dropWaiter', [new Error('pool ended')]);
    await expect(handoff.close()).resolves.toBeUndefined();
    expect(warn).toHaveBeenCalledWith({ err: 'pool ended' }, expect.stringContaining('could not delete the hand-off offer'));
  });

  it('close() cancels the renewal timer', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { handoff, db, worker } = makeHandoff();
    handoff.start();
    handoff.offer();
    await settle();
    await handoff.close();
    worker.idle = 0; // a live renewal timer would now run a withdraw
    await vi.advanceTimersByTimeAsync(5000);
    await settle();
    expect(db.log).toEqual(['register 2', `drop ${WORKER}`]);
  });
});

describe('Handoff: renewal', () => {
  it('an offer is renewed every ttl/3 while slots are idle, withdrawn when none are, and not renewed once withdrawn', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { handoff, db, worker } = makeHandoff(); // ttl 3000 → every 1000 ms
    handoff.start();
    handoff.offer();
    await settle();
    expect(db.log).toEqual(['register 2']);
    await vi.advanceTimersByTimeAsync(999);
    expect(db.log).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    await settle();
    expect(db.log).toEqual(['register 2', 'register 2']);
    worker.idle = 1;
    await vi.advanceTimersByTimeAsync(1000);
    await settle();
    expect(db.log).toEqual(['register 2', 'register 2', 'register 1']);
    worker.idle = 0; // full, yet nobody called withdraw(): the renewal takes the offer back
    await vi.advanceTimersByTimeAsync(1000);
    await settle();
    expect(db.log).toEqual(['register 2', 'register 2', 'register 1', W]);
    await vi.advanceTimersByTimeAsync(5000);
    await settle();
    expect(db.log).toHaveLength(4);
  });

  it('no renewal once every offered slot was taken by hand-offs, nor after withdraw()', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { handoff, db } = makeHandoff();
    handoff.start();
    handoff.offer();
    await settle();
    handoff.accept(text('1'));
    handoff.accept(text('2')); // 0 offered
    await vi.advanceTimersByTimeAsync(3000);
    await settle();
    expect(db.log).toEqual(['register 2']);
    handoff.offer();
    await settle();
    handoff.withdraw();
    await settle();
    await vi.advanceTimersByTimeAsync(3000);
    await settle();
    expect(db.log).toEqual(['register 2', 'register 2', W]);
  });

  it('listenerLost() stops the renewal', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { handoff, db } = makeHandoff();
    handoff.start();
    handoff.offer();
    await settle();
    handoff.listenerLost();
    await settle();
    await vi.advanceTimersByTimeAsync(3000);
    await settle();
    expect(db.log).toEqual(['register 2', W]);
  });
});

// Regressions: three lost wishes found while writing these tests. Each failed against an
// earlier handoff.ts and passes since its fix; the comments tell the old behaviour.
describe('Handoff: regressions', () => {
  /**
   * Was: withdraw() checked only `offered > 0 || want === 'offer'`; while the first offer's
   * registerWaiter ran, `offered` was still 0 and run() had cleared `want`, so the withdraw
   * was dropped and the full worker's offer stood (producers handing it jobs it could not
   * start) until the renewal timer noticed, ttl/3 later.
   */
  it('withdraw() while the first offer statement is in flight is not lost: the withdraw follows it', async () => {
    const { handoff, db, worker } = makeHandoff();
    handoff.start();
    db.hold = true;
    worker.idle = 2;
    handoff.offer();
    await settle();
    expect(db.log).toEqual(['register 2']);
    // Claims fill every slot meanwhile: the job source calls full() → withdraw().
    worker.idle = 0;
    handoff.withdraw();
    db.release();
    await settle();
    db.hold = false;
    await settle();
    // Expected: the latest wish (withdraw) runs after the offer.
    expect(db.log).toEqual(['register 2', W]);
  });

  /**
   * Was: listenerBack()'s recovery (withdraw + adoptHandoffs) ended with
   * `available = !closed`, overwriting a listenerLost() that came meanwhile (a flapping
   * connection): offers were then made while the listener was down, and hand-offs sent to
   * them were not received until the next reconnect.
   */
  it('listenerLost() during a recovery keeps offers off until the listener is back again', async () => {
    const { handoff, db } = makeHandoff();
    handoff.start();
    handoff.listenerLost();
    await settle();
    db.hold = true;
    handoff.listenerBack();
    await settle();
    expect(db.log).toEqual([W, W]);
    db.release(); // the withdraw; adoptHandoffs starts
    await settle();
    handoff.listenerLost(); // the connection drops again while adopting
    db.hold = false;
    db.release();
    await settle();
    const before = db.log.length;
    handoff.offer();
    await settle();
    // Expected: no offer until the next listenerBack().
    expect(db.log.slice(before)).toEqual([]);
    handoff.listenerBack();
    await settle();
    handoff.offer();
    await settle();
    expect(db.log.at(-1)).toBe('register 2');
  });

  /**
   * Was: close() cleared the renewal timer before awaiting the statement in flight; an offer
   * statement finishing then scheduled a new timer that outlived close(): ttl/3 later it ran
   * a withdraw after dropWaiter, on a store the worker may have closed by then.
   */
  it('close() during an offer statement leaves no renewal timer: nothing runs after the drop', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { handoff, db, worker } = makeHandoff();
    handoff.start();
    db.hold = true;
    handoff.offer();
    await settle();
    const closing = handoff.close();
    db.release(); // the offer returns while close() waits for it
    await settle();
    db.hold = false;
    db.release(); // the drop
    await closing;
    expect(db.log).toEqual(['register 2', `drop ${WORKER}`]);
    worker.idle = 0;
    await vi.advanceTimersByTimeAsync(5000);
    await settle();
    // Expected: nothing after the drop.
    expect(db.log).toEqual(['register 2', `drop ${WORKER}`]);
  });

  /**
   * registerWaiter offers `slots - (handed - received)` (sql/queries/jobs.sql): the row's
   * `handed` counts every hand-off sent, and the worker reports in `received` the ones it got.
   * adoptLost() once ran the hand-offs whose notification was lost without counting them as
   * received, so `handed - received` stayed above 0 for the rest of the worker's life: each
   * adopted hand-off lowered every later offer by one (down to 0 after as many adoptions as
   * the worker has slots, which turned hand-off off for it).
   */
  it('hand-offs adopted after a listener outage are never reported as received', async () => {
    const { handoff, db, worker } = makeHandoff();
    handoff.start();
    worker.idle = 2;
    handoff.offer();
    await settle();
    // Two jobs are handed over while the listener is down; their notifications are lost.
    handoff.listenerLost();
    await settle();
    db.adoptable = [new ClaimedJob(claimedRow('11')), new ClaimedJob(claimedRow('12'))];
    handoff.listenerBack();
    await settle();
    expect(worker.accepted).toEqual([['11', '12']]);
    handoff.offer();
    await settle();
    expect(db.log.at(-1)).toBe('register 2');
    // Expected: both reached the worker, so the row may offer all its slots again.
    expect(db.waiters.at(-1)!.received).toBe(2);
  });
});
