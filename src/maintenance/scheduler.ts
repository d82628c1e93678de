import type { Logger } from 'pino';
import type { DueSchedule, FireDecision, ScheduleStore } from '../db/schedulestore.js';
import { errorMessage } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { CronSchedule, planSlots } from '../schedules/cron.js';
import { PeriodicService } from './service.js';

export interface SchedulerOptions {
  store: ScheduleStore;
  /** How often to look for due slots (default 1 s). */
  intervalMs: number;
  /** Schedules per transaction; a full batch is followed by another at once. */
  batch: number;
  logger: Logger;
  metrics: Metrics;
}

/** Rounds of `batch` schedules one scheduler round may run. */
const MAX_BATCHES_PER_ROUND = 20;

/**
 * Turns due schedule slots into jobs. Every worker runs one (leaderless): a round asks the
 * database whether any schedule is due (one index probe), and if so locks the due schedules
 * (SKIP LOCKED), plans their slots from the database clock (cron.ts planSlots, the catch-up
 * policy), enqueues them and moves each schedule on, all in one transaction
 * (ScheduleStore.fireDue). A slot thus becomes a job exactly when its schedule's row moves
 * past it, whichever worker does it, and a crash before the commit leaves the slot due for
 * the next round of any worker.
 */
export class Scheduler extends PeriodicService {
  /** Parsed expressions by (expression, zone): parsing once per change, not per second. */
  private readonly parsed = new Map<string, CronSchedule>();

  constructor(private readonly options: SchedulerOptions) {
    super(options.intervalMs, (err) => {
      options.metrics.scheduleErrors.inc();
      options.logger.warn({ err: errorMessage(err) }, 'scheduler round failed; will retry');
    });
  }

  protected async round(): Promise<void> {
    const { store, batch } = this.options;
    if (!(await store.anyDue())) return;
    for (let i = 0; i < MAX_BATCHES_PER_ROUND; i++) {
      const result = await store.fireDue(batch, (due, now) => due.map((s) => this.decide(s, now)));
      this.report(result.enqueued, result.duplicates);
      if (result.schedules < batch) return;
    }
  }

  private decide(s: DueSchedule, now: Date): FireDecision {
    const { logger, metrics } = this.options;
    let cron: CronSchedule;
    try {
      cron = this.cronOf(s.cron, s.timezone);
    } catch (err) {
      // Checked at definition, so only a croner upgrade could get here: the schedule is
      // moved past now without a job rather than blocking the others.
      metrics.scheduleErrors.inc();
      logger.error({ schedule: s.name, cron: s.cron, err: errorMessage(err) }, 'schedule expression no longer parses; slot skipped');
      return { name: s.name, slots: [], next: new Date(now.getTime() + 60_000) };
    }
    const plan = planSlots(cron, s.nextSlot, now, s.catchUp, s.maxCatchUp);
    if (plan.skipped > 0) {
      metrics.scheduleSkipped.inc({ schedule: s.name }, plan.skipped);
      logger.info({ schedule: s.name, skipped: plan.skipped, catchUp: s.catchUp, since: s.nextSlot }, 'missed schedule slots left out by the catch-up policy');
    }
    return { name: s.name, slots: plan.fire, next: plan.next };
  }

  private report(enqueued: ReadonlyMap<string, number>, duplicates: number): void {
    const { logger, metrics } = this.options;
    for (const [schedule, jobs] of enqueued) {
      metrics.scheduleEnqueued.inc({ schedule }, jobs);
      logger.debug({ schedule, jobs }, 'schedule slots enqueued');
    }
    if (duplicates > 0) logger.warn({ duplicates }, 'schedule slots were already enqueued; not enqueued again');
  }

  private cronOf(expression: string, timezone: string): CronSchedule {
    const key = `${timezone}\u0000${expression}`;
    let cron = this.parsed.get(key);
    if (cron === undefined) {
      cron = new CronSchedule(expression, timezone);
      if (this.parsed.size > 1000) this.parsed.clear();
      this.parsed.set(key, cron);
    }
    return cron;
  }
}
