import type { QueueSettings, QueueStore } from '../db/queuestore.js';

/**
 * What a worker knows of its queues' settings (the queues table): which are paused, and
 * whether any has a limit. Re-read at start, when a change is announced (NOTIFY on the
 * queues channel), after the listener reconnects and at every poll, so a change reaches a
 * worker that missed its notification within one poll interval. The claim checks the
 * table itself; this copy serves what happens outside a claim: jobs already buffered or
 * handed off, and when to claim again.
 */
export class QueueStates {
  private paused = new Set<string>();
  private limited = false;
  private rateLimited = false;
  /** Changes announced by NOTIFY, numbered; a read that began before one keeps it on top. */
  private notes: Array<{ seq: number; queue: string; paused: boolean }> = [];
  private seq = 0;

  constructor(
    private readonly store: QueueStore,
    /** The worker's queues; undefined: all. */
    private readonly queues: readonly string[] | undefined,
  ) {}

  /** Re-reads the settings; returns the queues of this worker paused since the last read. */
  async refresh(): Promise<string[]> {
    const from = this.seq;
    const settings = (await this.store.settings()).filter((s) => this.serves(s));
    const before = this.paused;
    const paused = new Set(settings.filter((s) => s.paused).map((s) => s.name));
    // Reads may overlap and finish out of order: a change announced after this read began
    // may be missing from it, so it stays on top.
    for (const note of this.notes) {
      if (note.seq <= from) continue;
      if (note.paused) paused.add(note.queue);
      else paused.delete(note.queue);
    }
    this.paused = paused;
    const live = settings.filter((s) => !s.paused);
    this.limited = live.some((s) => s.concurrencyLimit !== null || s.rateLimit !== null);
    this.rateLimited = live.some((s) => s.rateLimit !== null);
    return [...this.paused].filter((name) => !before.has(name));
  }

  /**
   * A change announced on the queues channel ("paused:<queue>" or "active:<queue>"): a pause
   * of one of this worker's queues counts at once, before any notification after it is
   * handled (a hand-off that committed after the pause is then handed back); a resume counts
   * at the refresh that follows. Returns the queue when it was newly paused here.
   */
  noteChange(payload: string): string | undefined {
    const match = /^(paused|active):(.+)$/.exec(payload);
    if (!match) return undefined;
    const queue = match[2]!;
    const paused = match[1] === 'paused';
    if (this.queues !== undefined && !this.queues.includes(queue)) return undefined;
    this.notes.push({ seq: ++this.seq, queue, paused });
    if (this.notes.length > 64) this.notes.shift();
    if (!paused || this.paused.has(queue)) return undefined;
    this.paused = new Set([...this.paused, queue]);
    return queue;
  }

  isPaused(queue: string): boolean {
    return this.paused.has(queue);
  }

  /** Whether a queue of this worker has a concurrency or rate limit. */
  get servesLimited(): boolean {
    return this.limited;
  }

  /** Whether a queue of this worker has a rate limit. */
  get servesRateLimited(): boolean {
    return this.rateLimited;
  }

  /** Ms until a rate-limited queue of this worker may have room again; null: none is waiting for room. */
  nextRateCapacity(): Promise<number | null> {
    return this.store.nextRateCapacity(this.queues);
  }

  private serves(settings: QueueSettings): boolean {
    return this.queues === undefined || this.queues.includes(settings.name);
  }
}
