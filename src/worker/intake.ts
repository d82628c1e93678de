import type { ClaimedJob } from '../job.js';

/** The worker as its job source sees it: how many jobs it wants, and where they go. */
export interface Intake {
  /** Jobs a claim should ask for now (0: none wanted, e.g. the buffer is full enough). */
  wanted(): number;
  /** Slots that could start a job at once (what a hand-off offer may promise). */
  idleSlots(): number;
  /** Ids of every job the worker holds: buffered, running, or its result being written. */
  heldIds(): string[];
  /**
   * Claimed jobs for the worker, in claim order: it starts or buffers them, or hands them
   * back (when stopping, or a job's queue is paused).
   */
  accept(jobs: readonly ClaimedJob[]): void;
  /** These queues were just paused: buffered jobs of theirs go back to the queue. */
  paused(queues: readonly string[]): void;
}
