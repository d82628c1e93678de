import type { Logger } from 'pino';
import type { JobStore } from '../db/jobstore.js';
import { errorMessage } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { PeriodicService } from './service.js';

export interface ReaperOptions {
  store: JobStore;
  intervalMs: number;
  /** Jobs per statement; a full batch is followed by another at once. */
  batch: number;
  logger: Logger;
  metrics: Metrics;
}

/**
 * Returns jobs whose lease expired to the queue (or fails them when no attempts are left).
 * Each round is one conditional statement over SKIP LOCKED rows, so every worker can run a
 * reaper and no job is ever acted on twice.
 */
export class Reaper extends PeriodicService {
  constructor(private readonly options: ReaperOptions) {
    super(options.intervalMs, (err) => options.logger.warn({ err: errorMessage(err) }, 'reaper round failed'));
  }

  /** One round: statements of `batch` jobs until one comes back short. */
  protected async round(): Promise<void> {
    const { store, batch, logger, metrics } = this.options;
    for (;;) {
      const rows = await store.reap(batch);
      for (const row of rows) {
        const outcome = row.status === 'queued' ? 'requeued' : 'failed';
        metrics.reaperActions.inc({ outcome });
        logger.warn({ jobId: row.id, task: row.task, queue: row.queue, attempt: row.attempts, outcome }, 'lease expired; job reaped');
      }
      if (rows.length < batch) return;
    }
  }
}
