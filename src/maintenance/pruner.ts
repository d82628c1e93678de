import type { Logger } from 'pino';
import type { JobStore } from '../db/jobstore.js';
import { errorMessage } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { PeriodicService } from './service.js';

/** How long finished jobs stay in the table; Infinity keeps them. */
export interface Retention {
  /** Succeeded jobs (0: deleted as their success is recorded, never kept). */
  succeededMs: number;
  /** Failed and cancelled jobs. */
  failedMs: number;
}

export interface PrunerOptions {
  store: JobStore;
  retention: Retention;
  intervalMs: number;
  /** Jobs per statement; a full batch is followed by another at once. */
  batch: number;
  logger: Logger;
  metrics: Metrics;
}

/** Statements one pruning round may run, so a huge backlog never holds a round for long. */
const MAX_BATCHES_PER_ROUND = 100;

/**
 * Deletes finished jobs older than the retention, oldest first, in batches of SKIP LOCKED
 * rows: every worker may run one, and they never delete a row twice or wait on each other.
 */
export class Pruner extends PeriodicService {
  constructor(private readonly options: PrunerOptions) {
    super(options.intervalMs, (err) => options.logger.warn({ err: errorMessage(err) }, 'pruning round failed'));
  }

  /** Whether this retention leaves anything to prune. */
  static needed(retention: Retention): boolean {
    return Number.isFinite(retention.failedMs) || (retention.succeededMs > 0 && Number.isFinite(retention.succeededMs));
  }

  /** One round: each status group past its retention, in batches. */
  protected async round(): Promise<void> {
    const { retention } = this.options;
    // With succeededMs = 0 nothing is kept, but rows from an earlier retention may remain.
    if (Number.isFinite(retention.succeededMs)) await this.pruneStatuses(['succeeded'], retention.succeededMs);
    if (Number.isFinite(retention.failedMs)) await this.pruneStatuses(['failed', 'cancelled'], retention.failedMs);
  }

  private async pruneStatuses(statuses: string[], olderThanMs: number): Promise<void> {
    const { store, batch, logger, metrics } = this.options;
    let total = 0;
    for (let i = 0; i < MAX_BATCHES_PER_ROUND; i++) {
      const deleted = await store.prune(statuses, olderThanMs, batch);
      for (const status of deleted) metrics.pruned.inc({ status });
      total += deleted.length;
      if (deleted.length < batch) break;
    }
    if (total > 0) logger.info({ statuses, olderThanMs, deleted: total }, 'finished jobs pruned');
  }
}
