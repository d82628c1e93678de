import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { AdminStore, WorkerPresence } from '../db/adminstore.js';
import { errorMessage } from '../errors.js';
import { VERSION } from '../version.js';
import { PeriodicService } from './service.js';

/** How often a worker renews its presence row. */
export const PRESENCE_INTERVAL_MS = 5000;
/** A row not renewed for this long is a dead (or stalled) worker's: three missed renewals. */
export const PRESENCE_TTL_MS = 3 * PRESENCE_INTERVAL_MS + 1000;

export interface PresenceOptions {
  store: AdminStore;
  id: string;
  tasks: readonly string[];
  queues: readonly string[] | undefined;
  concurrency: number;
  logger: Logger;
  intervalMs?: number;
}

/**
 * The worker's row in the workers table (migration 0010): written at start, renewed every
 * few seconds, deleted at stop. `jobs why`, `skiplock stats`, the enqueue warning and the
 * dashboard read it to tell which tasks and queues live workers take.
 */
export class Presence extends PeriodicService {
  private readonly row: WorkerPresence;

  constructor(private readonly options: PresenceOptions) {
    const intervalMs = options.intervalMs ?? PRESENCE_INTERVAL_MS;
    super(intervalMs, (err) => options.logger.warn({ err: errorMessage(err) }, 'worker presence not renewed'));
    const { id, tasks, queues, concurrency } = options;
    this.row = { id, host: hostname(), pid: process.pid, version: VERSION, tasks, queues, concurrency, ttlMs: 3 * intervalMs + 1000 };
  }

  /** Writes the row (at start, before the first claim). */
  register(): Promise<void> {
    return this.options.store.registerWorker(this.row);
  }

  /** Deletes the row (at stop); a failure is logged, not thrown: the row then expires. */
  async remove(): Promise<void> {
    await this.options.store.removeWorker(this.row.id).catch((err: unknown) => {
      this.options.logger.warn({ err: errorMessage(err) }, 'worker presence not removed');
    });
  }

  protected async round(): Promise<void> {
    await this.options.store.touchWorker(this.row);
  }
}
