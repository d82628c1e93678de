import type pg from 'pg';
import { type RateLimit, queuesChannelFor } from '../config.js';
import type { Queryable } from './pool.js';
import { type NamedQuery, loadQueryFile } from './queries.js';

const QUEUE_QUERIES = ['settings', 'list', 'known', 'change', 'nextRateCapacity'] as const;

/** A queue's settings in force (sql/migrations/0008_queues.sql). */
export interface QueueSettings {
  readonly name: string;
  readonly paused: boolean;
  /** At most this many of its jobs running at once, across every worker; null: no limit. */
  readonly concurrencyLimit: number | null;
  /** At most this many starts in any window; null: no limit. */
  readonly rateLimit: RateLimit | null;
}

/** A queue and its jobs by status (`skiplock queues`). */
export interface QueueInfo extends QueueSettings {
  /** Due and waiting for a worker. */
  readonly queued: number;
  /** Queued with a run_at still ahead (delayed, or waiting for a retry). */
  readonly scheduled: number;
  readonly running: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly cancelled: number;
  /** How long the longest-due queued job has been due (ms); null when none is. */
  readonly oldestWaitMs: number | null;
}

/** A change of a queue's settings: only the fields given change (null clears a limit). */
export interface QueueChange {
  readonly paused?: boolean;
  readonly concurrencyLimit?: number | null;
  readonly rateLimit?: RateLimit | null;
}

interface SettingsRow {
  name: string;
  paused: boolean;
  concurrencyLimit: number | null;
  rateLimit: number | null;
  rateWindowMs: number | null;
}

type InfoRow = SettingsRow & Omit<QueueInfo, keyof QueueSettings>;

function settingsOf(row: SettingsRow): QueueSettings {
  const { name, paused, concurrencyLimit, rateLimit, rateWindowMs } = row;
  return { name, paused, concurrencyLimit, rateLimit: rateLimit !== null && rateWindowMs !== null ? { limit: rateLimit, windowMs: rateWindowMs } : null };
}

/**
 * The statements on queues (sql/queries/queues.sql): their settings, for workers (which keep
 * them in memory) and for the admin API and CLI (which change them). Every change sends one
 * NOTIFY on the schema's queues channel.
 */
export class QueueStore {
  readonly channel: string;
  private readonly queries: Readonly<Record<(typeof QUEUE_QUERIES)[number], NamedQuery>>;

  constructor(
    private readonly pool: pg.Pool,
    readonly schema: string,
  ) {
    this.channel = queuesChannelFor(schema);
    this.queries = loadQueryFile('queues.sql', QUEUE_QUERIES, schema);
  }

  /** Every queue's settings (every row of the queues table). */
  async settings(client: Queryable = this.pool): Promise<QueueSettings[]> {
    return (await client.query<SettingsRow>(this.queries.settings)).rows.map(settingsOf);
  }

  /** Every queue (with jobs or settings) and its counts; one pass over the jobs table. */
  async list(): Promise<QueueInfo[]> {
    const rows = (await this.pool.query<InfoRow>(this.queries.list)).rows;
    return rows.map((row) => {
      const { queued, scheduled, running, succeeded, failed, cancelled, oldestWaitMs } = row;
      return { ...settingsOf(row), queued, scheduled, running, succeeded, failed, cancelled, oldestWaitMs: oldestWaitMs === null ? null : Math.max(0, oldestWaitMs) };
    });
  }

  /** Whether a queue exists: it has jobs or settings. */
  async known(name: string): Promise<boolean> {
    return (await this.pool.query<{ known: boolean }>({ ...this.queries.known, values: [name] })).rows[0]?.known ?? false;
  }

  /** Creates or changes a queue's settings and tells the workers; the settings now. */
  async change(name: string, change: QueueChange): Promise<QueueSettings> {
    const { paused, concurrencyLimit, rateLimit } = change;
    const res = await this.pool.query<SettingsRow>({
      ...this.queries.change,
      values: [
        name,
        paused ?? null,
        concurrencyLimit !== undefined,
        concurrencyLimit ?? null,
        rateLimit !== undefined,
        rateLimit?.limit ?? null,
        rateLimit?.windowMs ?? null,
        this.channel,
      ],
    });
    return settingsOf(res.rows[0]!);
  }

  /**
   * Ms until the soonest start of a rate-limited queue among `queues` (undefined: all)
   * leaves its window; null when no such queue has starts in its window.
   */
  async nextRateCapacity(queues: readonly string[] | undefined): Promise<number | null> {
    const res = await this.pool.query<{ ms: number | null }>({ ...this.queries.nextRateCapacity, values: [queues ?? null] });
    return res.rows[0]?.ms ?? null;
  }

}
