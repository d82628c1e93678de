import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from 'pino';
import { channelFor, queuesChannelFor } from '../config.js';
import type { JobStore } from '../db/jobstore.js';
import type { ProbeStore } from '../db/probestore.js';
import { describeTarget, retrySessionLost } from '../db/pool.js';
import type { ClaimedJob } from '../job.js';
import { Periodic } from '../maintenance/periodic.js';
import { Listener } from '../notifications/listener.js';
import type { Metrics } from '../observability/metrics.js';
import { Handoff } from './handoff.js';
import type { Intake } from './intake.js';
import type { WorkerConfig } from './options.js';
import type { QueueStates } from './queues.js';

export interface JobSourceOptions {
  store: JobStore;
  /** Sends the LISTEN connection's start-up notification. */
  probes: ProbeStore;
  config: WorkerConfig;
  /** Connection settings of the LISTEN connection (when config.listen). */
  connection: pg.ClientConfig;
  intake: Intake;
  /** The settings of the worker's queues (paused, limited), kept fresh here. */
  queues: QueueStates;
  logger: Logger;
  metrics: Metrics;
  /** One line for a database error, without secrets. */
  describe(err: unknown): string;
}

/**
 * Where a worker's jobs come from: the one seam both ways of getting a job feed. Claims run
 * one round at a time (a request during a round starts another), woken by NOTIFY on the
 * schema's channel, by the worker when capacity grows, and by a fallback poll. When a
 * round finds nothing more to claim, the free slots are offered for direct hand-off
 * (handoff.ts); jobs handed over arrive on the worker's own channel. Either way they reach
 * the worker through one call, intake.accept(). With hand-off off (or no listener), the
 * rest works the same.
 *
 * Queue settings (queues.ts) are re-read when a change is announced on the queues channel,
 * after a reconnect and at every poll; a newly paused queue is passed to intake.paused().
 * A queue with a limit can leave a claim short while jobs wait: then every capacity event
 * claims again (a job of it may have finished), and for a rate limit a timer wakes the
 * source when the oldest start in the window leaves it.
 */
export class JobSource {
  private readonly poller: Periodic;
  private readonly listener: Listener | undefined;
  private readonly handoff: Handoff | undefined;
  private running = false;
  private fetching: Promise<void> | undefined;
  private fetchAgain = false;
  /** True while there may be due jobs not taken (the last claim was full, or a wake-up came). */
  private moreMayBeWaiting = true;
  /** The last claim came back short while a queue of this worker has a limit. */
  private heldBackByLimits = false;
  private rateTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: JobSourceOptions) {
    const { config, store, logger, metrics, describe, intake } = options;
    // The fallback poll: for jobs whose run_at has come, and wake-ups (and queue changes)
    // missed while reconnecting.
    this.poller = new Periodic(
      config.pollMs,
      async () => {
        await this.refreshQueues();
        this.wake();
      },
      (err) => logger.error({ err: describe(err) }, 'poll failed'),
      0.1,
    );
    if (config.handoff) {
      this.handoff = new Handoff({
        store,
        workerId: config.id,
        channel: `skiplock_w_${randomBytes(8).toString('hex')}`,
        tasks: config.taskNames,
        queues: config.queues,
        leaseMs: config.leaseMs,
        ttlMs: config.handoffTtlMs,
        logger,
        describe,
        intake,
      });
    }
    if (!config.listen) return;
    const handoff = this.handoff;
    this.listener = new Listener({
      connection: { ...options.connection, application_name: `skiplock listener ${config.id}`.slice(0, 63) },
      channel: channelFor(config.schema),
      logger,
      // At start, a notification sent through the pool must arrive (not behind a transaction pooler).
      sendCheck: (channel, payload) => retrySessionLost(() => options.probes.notify(channel, payload)),
      target: options.connection.connectionString === undefined ? undefined : describeTarget(options.connection.connectionString),
      onNotify: () => {
        metrics.notifications.inc();
        this.wake();
      },
      onReconnect: () => {
        metrics.notifyReconnects.inc();
        handoff?.listenerBack();
        void this.refreshQueues().then(() => this.wake());
      },
      onLost: () => handoff?.listenerLost(),
      handoff: handoff && {
        channel: handoff.channel,
        onPayload: (text) => {
          const job = handoff.accept(text);
          if (job === undefined) return;
          metrics.handoffs.inc();
          intake.accept([job]);
        },
      },
      queues: {
        channel: queuesChannelFor(config.schema),
        onNotify: (payload) => {
          const paused = options.queues.noteChange(payload);
          if (paused !== undefined && this.running) {
            logger.info({ queues: [paused] }, 'queues paused');
            intake.paused([paused]);
          }
          void this.refreshQueues().then(() => this.wake());
        },
      },
    });
  }

  /** Whether the LISTEN connection is up (null: the worker does not listen). */
  get listening(): boolean | null {
    return this.listener ? this.listener.isConnected : null;
  }

  /** Reads the queue settings and connects the listener (throws when it cannot). */
  async connect(): Promise<void> {
    // a terminated backend under this first read must not fail the start
    await retrySessionLost(() => this.options.queues.refresh());
    await this.listener?.start();
  }

  /** Starts claiming: a first round now, then on wake-ups and polls. */
  start(): void {
    this.running = true;
    this.handoff?.start();
    this.poller.start();
    this.request();
  }

  /**
   * Capacity grew (a slot or buffer room freed, results written): claim while due jobs may
   * be waiting, else offer the free slots for hand-offs.
   */
  request(): void {
    if (!this.running) return;
    if (this.heldBackByLimits) this.moreMayBeWaiting = true;
    if (!this.moreMayBeWaiting) {
      if (this.fetching === undefined) this.handoff?.offer();
    } else if (this.fetching !== undefined) {
      this.fetchAgain = true;
    } else if (this.options.intake.wanted() > 0) {
      this.fetching = this.fetchLoop().finally(() => this.roundDone());
    }
  }

  /** Every slot is taken: no hand-offs for now. */
  full(): void {
    this.handoff?.withdraw();
  }

  /** Stops claiming and listening; takes the hand-off offer back. Resolves when no claim runs. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.rateTimer);
    await this.poller.stop();
    // No more hand-offs; any still on their way are handed back by the worker as they arrive.
    await this.handoff?.close();
    await this.listener?.stop();
    await this.fetching;
  }

  /** Shutdown, once nothing more is claimed: jobs handed to this worker whose notification never came go back. */
  async handBackUnknown(): Promise<void> {
    await this.handoff?.handBackUnknown().catch((err: unknown) =>
      this.options.logger.warn({ err: this.options.describe(err) }, 'could not check for hand-offs that never arrived'),
    );
  }

  /** A wake-up (NOTIFY, reconnect, poll): there may be due jobs. */
  private wake(): void {
    this.moreMayBeWaiting = true;
    this.request();
  }

  /** Re-reads the queue settings; buffered jobs of a queue paused meanwhile go back. */
  private async refreshQueues(): Promise<void> {
    const { queues, intake, logger, describe } = this.options;
    let paused: string[];
    try {
      paused = await queues.refresh();
    } catch (err) {
      logger.warn({ err: describe(err) }, 'could not read the queue settings; will retry at the next poll');
      return;
    }
    if (paused.length > 0 && this.running) {
      logger.info({ queues: paused }, 'queues paused');
      intake.paused(paused);
    }
  }

  /** A rate-limited queue left a claim short: wake when its oldest start leaves the window. */
  private async scheduleRateWake(): Promise<void> {
    const { queues, config } = this.options;
    const ms = await queues.nextRateCapacity();
    if (ms === null || !this.running) return;
    clearTimeout(this.rateTimer);
    this.rateTimer = setTimeout(() => this.wake(), Math.min(Math.max(1, Math.ceil(ms) + 1), config.pollMs));
    this.rateTimer.unref();
  }

  private roundDone(): void {
    this.fetching = undefined;
    // A request that came after the loop's last check and before this point would be lost.
    if (this.fetchAgain) {
      this.fetchAgain = false;
      this.request();
    } else if (!this.moreMayBeWaiting) {
      // Nothing more to claim: offer the free slots for hand-offs.
      this.handoff?.offer();
    }
  }

  /** Claim rounds while the worker wants jobs and the last round came back full. */
  private async fetchLoop(): Promise<void> {
    const { store, config, intake, metrics, logger, describe } = this.options;
    do {
      this.fetchAgain = false;
      const limit = intake.wanted();
      if (!this.running || limit <= 0) return;
      let claimed: ClaimedJob[];
      const { queues } = this.options;
      try {
        claimed = await store.claim({
          tasks: config.taskNames,
          queues: config.queues,
          limit,
          free: intake.idleSlots(),
          leaseMs: config.leaseMs,
          workerId: config.id,
        });
      } catch (err) {
        logger.warn({ err: describe(err) }, 'claim failed; will retry at the next poll');
        return;
      }
      if (claimed.length < limit && queues.servesRateLimited) {
        void this.scheduleRateWake().catch((err: unknown) => logger.warn({ err: describe(err) }, 'could not read the queue settings; will retry at the next poll'));
      }
      metrics.claims.inc({ result: claimed.length > 0 ? 'jobs' : 'empty' });
      this.moreMayBeWaiting = claimed.length === limit;
      this.heldBackByLimits = claimed.length < limit && queues.servesLimited;
      if (claimed.length > 0) intake.accept(claimed);
    } while (this.fetchAgain || (this.moreMayBeWaiting && intake.wanted() > 0));
  }
}
