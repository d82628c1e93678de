import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { JobStore } from '../db/jobstore.js';
import { type ClaimedJob, parseClaimedRow } from '../job.js';
import type { Intake } from './intake.js';

export interface HandoffOptions {
  store: Pick<JobStore, 'registerWaiter' | 'withdrawWaiter' | 'dropWaiter' | 'adoptHandoffs' | 'handBackUnknown'>;
  workerId: string;
  /** This worker's own NOTIFY channel. */
  channel: string;
  tasks: readonly string[];
  queues: readonly string[] | undefined;
  leaseMs: number;
  /** How long an offer stands without renewal (producers skip older ones). */
  ttlMs: number;
  logger: Logger;
  /** One line for a database error, without secrets. */
  describe: (err: unknown) => string;
  /** The worker: its idle slots, the jobs it holds, and where adopted jobs go. */
  intake: Pick<Intake, 'idleSlots' | 'heldIds' | 'accept'>;
}

/** How long the ids of received hand-offs are remembered, so that one never runs twice. */
const SEEN_MS = 60_000;

type Want = 'offer' | 'withdraw';

/**
 * A worker's side of direct hand-off (sql/migrations/0006_handoff.sql), driven by its job
 * source (src/worker/source.ts), which alone calls it. When the worker has
 * nothing more to claim, it offers its free slots in the waiters table; a producer that
 * inserts a single due job then claims it for the worker in the insert itself and sends the
 * row to the worker's own channel, so the job starts one round trip sooner. The offer is
 * topped up as slots free, renewed while it stands, taken back when the worker is full or
 * its listener is down, and deleted at shutdown. Statements run one at a time.
 */
export class Handoff {
  /** Slots our row offers, as far as we know (each hand-off received takes one). */
  private offered = 0;
  /** Hand-offs received since the row was made (the row counts those sent). */
  private receivedCount = 0;
  private renewAt = 0;
  private renewTimer: NodeJS.Timeout | undefined;
  /** The statement wished for next (the latest wish wins), and the one running now. */
  private want: Want | undefined;
  private running: Want | undefined;
  private recoverPending = false;
  private writing: Promise<void> | undefined;
  /** Ids of hand-offs received or adopted lately, with when (a late notification of an adopted one is dropped). */
  private readonly seen = new Map<string, number>();
  /** Offers are made only while the listener is connected and the worker runs. */
  private available = false;
  /** Whether the listener is connected, as far as its last report says. */
  private listenerUp = true;
  private closed = false;

  constructor(private readonly options: HandoffOptions) {}

  get channel(): string {
    return this.options.channel;
  }

  start(): void {
    this.available = true;
  }

  /**
   * The worker found nothing more to claim: offer its free slots, or top the offer up when
   * fewer than half of them are still offered, or renew it when it is getting old.
   */
  offer(): void {
    if (this.recoverPending) {
      // A recovery after a listener outage failed (database unreachable): try again.
      this.request('withdraw');
      return;
    }
    if (!this.available) return;
    const free = this.options.intake.idleSlots();
    if (free <= 0) return;
    if (this.offered > 0 && this.offered * 2 >= free && performance.now() < this.renewAt) return;
    this.request('offer');
  }

  /** The worker is full: no more hand-offs for now. */
  withdraw(): void {
    // An offer may be standing, wished for, or on its way to the database.
    if (this.offered > 0 || this.want === 'offer' || this.running === 'offer') this.request('withdraw');
  }

  /**
   * Turns a hand-off notification into a claimed job (undefined for a payload that is not
   * one: it is logged and ignored).
   */
  accept(text: string): ClaimedJob | undefined {
    let row: unknown;
    try {
      row = JSON.parse(text);
    } catch {
      row = undefined;
    }
    const job = parseClaimedRow(row);
    if (job === undefined) {
      this.options.logger.warn({ channel: this.options.channel, payload: text.slice(0, 200) }, 'ignored a notification that is not a hand-off');
      return undefined;
    }
    this.offered = Math.max(0, this.offered - 1);
    if (!this.firstSight(job.id)) return undefined; // adopted already (and counted then)
    this.receivedCount += 1;
    return job;
  }

  /** Records a hand-off id; false when it was seen already. */
  private firstSight(id: string): boolean {
    const now = performance.now();
    if (this.seen.size >= 1024) {
      for (const [key, at] of this.seen) {
        if (now - at < SEEN_MS) break; // insertion order: the rest are newer
        this.seen.delete(key);
      }
    }
    if (this.seen.has(id)) return false;
    this.seen.set(id, now);
    return true;
  }

  /** The listener lost its connection: hand-offs sent meanwhile would be lost. */
  listenerLost(): void {
    this.listenerUp = false;
    this.available = false;
    this.request('withdraw');
  }

  /**
   * The listener is back: jobs handed to us while it was away never reached us. They are
   * looked up and run here (their notification, should one still come, is then ignored).
   */
  listenerBack(): void {
    this.listenerUp = true;
    this.recoverPending = true;
    this.request('withdraw');
  }

  /** Shutdown: the offer goes. Jobs handed over meanwhile are handed back by the worker. */
  async close(): Promise<void> {
    this.closed = true;
    this.available = false;
    this.want = undefined;
    this.recoverPending = false;
    this.clearRenewal();
    await this.writing;
    try {
      await this.options.store.dropWaiter(this.options.workerId);
    } catch (err) {
      this.options.logger.warn({ err: this.options.describe(err) }, 'could not delete the hand-off offer; it expires by itself');
    }
  }

  /**
   * Shutdown, once nothing more is claimed: running jobs claimed for us that we do not know
   * (hand-offs whose notification never arrived) go back to the queue.
   */
  async handBackUnknown(): Promise<string[]> {
    const ids = await this.options.store.handBackUnknown(this.options.workerId, this.options.intake.heldIds());
    if (ids.length > 0) this.options.logger.warn({ jobs: ids }, 'jobs handed to this worker never reached it; handed back to the queue');
    return ids;
  }

  /** After a listener outage: runs the hand-offs whose notification was lost. */
  private async adoptLost(): Promise<void> {
    const found = await this.options.store.adoptHandoffs(this.options.workerId, this.options.intake.heldIds());
    const adopted = found.filter((job) => this.firstSight(job.id));
    this.receivedCount += adopted.length;
    if (adopted.length > 0) {
      this.options.logger.info({ jobs: adopted.map((job) => job.id) }, 'hand-offs sent while the listener was away; running them');
      this.options.intake.accept(adopted);
    }
  }

  private request(want: Want): void {
    this.want = want;
    this.writing ??= this.run().finally(() => {
      this.writing = undefined;
    });
  }

  private async run(): Promise<void> {
    while (this.want !== undefined) {
      const want = this.want;
      this.want = undefined;
      this.running = want;
      try {
        if (want === 'withdraw') {
          this.offered = 0;
          this.clearRenewal();
          const handed = await this.options.store.withdrawWaiter(this.options.workerId);
          if (this.recoverPending) {
            await this.adoptLost();
            // Every hand-off made until the withdraw has now been received, adopted, or
            // lost with a job reaped meanwhile: none is on its way any more.
            if (handed !== undefined) this.receivedCount = Math.max(this.receivedCount, handed);
            this.recoverPending = false;
            // A listener lost again meanwhile keeps offers off until it is back.
            this.available = !this.closed && this.listenerUp;
          }
          continue;
        }
        if (!this.available || this.closed) continue;
        const free = this.options.intake.idleSlots();
        if (free <= 0) continue;
        const { store, workerId, channel, tasks, queues, leaseMs, ttlMs } = this.options;
        const received = this.receivedCount;
        const slots = await store.registerWaiter({ workerId, channel, tasks, queues, leaseMs, slots: free, ttlMs, received });
        // Hand-offs that arrived while the statement ran may or may not be counted in `slots`
        // (sent before or after the update): count them off again, to err on the low side.
        this.offered = Math.max(0, slots - (this.receivedCount - received));
        if (this.closed) continue; // closed meanwhile: the row goes with close(), no renewal
        this.renewAt = performance.now() + ttlMs / 3;
        this.scheduleRenewal();
      } catch (err) {
        // A failed offer leaves whatever the row held: it expires by itself. A failed
        // recovery is retried at the next offer.
        this.offered = 0;
        this.options.logger.warn({ err: this.options.describe(err) }, want === 'offer' ? 'hand-off offer failed' : 'hand-off withdraw failed');
      } finally {
        this.running = undefined;
      }
    }
  }

  private scheduleRenewal(): void {
    this.clearRenewal();
    this.renewTimer = setTimeout(() => {
      this.renewTimer = undefined;
      if (this.offered > 0) {
        if (this.options.intake.idleSlots() > 0) this.request('offer');
        else this.request('withdraw');
      }
    }, this.options.ttlMs / 3);
    this.renewTimer.unref();
  }

  private clearRenewal(): void {
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
  }
}
