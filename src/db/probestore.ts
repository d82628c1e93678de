import type pg from 'pg';
import { type NamedQuery, loadQueryFile } from './queries.js';

const PROBE_QUERIES = ['queueDepth', 'vacuumHealth', 'notify'] as const;

/** The jobs table's vacuum health, as the gauges serve it. */
export interface VacuumHealth {
  /** Dead row versions (pg_stat_user_tables.n_dead_tup, an estimate). */
  readonly deadTuples: number;
  /** Live rows (n_live_tup, an estimate). */
  readonly liveTuples: number;
  /** The table with its indexes and TOAST (pg_total_relation_size). */
  readonly sizeBytes: number;
  /** Age of the oldest transaction holding back vacuum; 0 when none. */
  readonly oldestTransactionSeconds: number;
}

/**
 * The statements that watch the jobs table rather than move jobs (sql/queries/probes.sql):
 * the metrics' scrape-time reads and the LISTEN connection's start-up notification.
 */
export class ProbeStore {
  private readonly queries: Readonly<Record<(typeof PROBE_QUERIES)[number], NamedQuery>>;

  constructor(
    private readonly pool: pg.Pool,
    schema: string,
  ) {
    this.queries = loadQueryFile('probes.sql', PROBE_QUERIES, schema);
  }

  /**
   * Jobs by queue and status ('scheduled': queued, not yet due); for 'queued' rows, how long
   * the longest-due job has been due, in seconds (the skiplock_queue_depth gauges).
   */
  async queueDepth(): Promise<Array<{ queue: string; status: string; jobs: number; oldestDueSeconds: number | null }>> {
    const res = await this.pool.query<{ queue: string; status: string; jobs: string; oldest_due_s: number | null }>({ ...this.queries.queueDepth, values: [] });
    return res.rows.map((r) => ({ queue: r.queue, status: r.status, jobs: Number(r.jobs), oldestDueSeconds: r.oldest_due_s === null ? null : Math.max(0, r.oldest_due_s) }));
  }

  /** The vacuum gauges' one read. */
  async vacuumHealth(): Promise<VacuumHealth> {
    const res = await this.pool.query<{ dead: string; live: string; size: string; oldest_tx_s: number }>({ ...this.queries.vacuumHealth, values: [] });
    const row = res.rows[0];
    return {
      deadTuples: Number(row?.dead ?? 0),
      liveTuples: Number(row?.live ?? 0),
      sizeBytes: Number(row?.size ?? 0),
      oldestTransactionSeconds: Math.max(0, row?.oldest_tx_s ?? 0),
    };
  }

  /** Sends one notification through the pool (the LISTEN connection's start-up check). */
  async notify(channel: string, payload: string): Promise<void> {
    await this.pool.query({ ...this.queries.notify, values: [channel, payload] });
  }
}
