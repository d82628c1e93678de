import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import pgListen, { type Options } from 'pg-listen';
import type { Logger } from 'pino';
import { hostResolverFor } from '../db/resolver.js';
import { SkiplockError, errorMessage } from '../errors.js';
import { FailoverSubscriber, type ListenSubscriber } from './failover.js';

export interface ListenerOptions {
  /** Connection settings for the dedicated LISTEN connection. */
  connection: pg.ClientConfig;
  channel: string;
  logger: Logger;
  /** Called for every notification on the channel (its payload is ignored). */
  onNotify: () => void;
  /** Called after the connection was lost and is back: notifications may have been missed. */
  onReconnect: () => void;
  /** Called when the connection is lost (before reconnecting). */
  onLost?: () => void;
  /** This worker's own channel for hand-offs, whose payloads are passed on as text. */
  handoff?: { channel: string; onPayload: (text: string) => void };
  /** The schema's queues channel: a queue's settings changed (payload passed on as text). */
  queues?: { channel: string; onNotify: (payload: string) => void };
  /**
   * Sends a notification through another connection (the worker's pool). With it, start()
   * checks that a notification sent that way reaches the LISTEN connection, and fails when
   * none does within `checkTimeoutMs`.
   */
  sendCheck?: (channel: string, payload: string) => Promise<void>;
  /** How long start() waits for its check notification (default 10 s). */
  checkTimeoutMs?: number;
  /** Where the LISTEN connection goes, for the check's message (never with a password). */
  target?: string;
}

/** What to do when notifications do not reach the LISTEN connection. */
const NO_SESSION_HINT =
  'LISTEN needs a session of its own, which a pooler in transaction mode (PgBouncer) does not give, and the same database as the pool; point --listen-url (listenConnectionString) straight at PostgreSQL, or poll only with --no-listen (listen: false)';

/**
 * One LISTEN connection per process (pg-listen). It reconnects forever with a capped
 * backoff. Payloads on the shared channel are never parsed, so junk there cannot hurt the
 * worker; payloads on the worker's own hand-off channel go to the worker as text.
 */
export class Listener {
  private readonly subscriber: ListenSubscriber;
  private connected = false;
  private everConnected = false;
  private closed = false;
  /** Counts connection losses and reconnects: the start-up check sends again after one. */
  private epoch = 0;

  constructor(private readonly options: ListenerOptions) {
    const settings: Options = {
      parse: (text: string) => text,
      retryLimit: Infinity,
      retryTimeout: 0,
      retryInterval: (attempt: number) => Math.min(5000, 100 * 2 ** Math.min(attempt, 6)),
      paranoidChecking: 10_000,
    };
    // A multi-host connection string reconnects to whichever host is the primary by then
    // (failover.ts); any other goes straight to pg-listen, which is CommonJS: its function is
    // the module's `default` property.
    const resolver = hostResolverFor(options.connection.connectionString);
    this.subscriber = resolver ? new FailoverSubscriber(resolver, options.connection, settings) : pgListen.default(options.connection, settings);
    const { events, notifications } = this.subscriber;
    notifications.on(options.channel, () => options.onNotify());
    const { handoff } = options;
    if (handoff) notifications.on(handoff.channel, (payload: unknown) => handoff.onPayload(typeof payload === 'string' ? payload : ''));
    const { queues } = options;
    if (queues) notifications.on(queues.channel, (payload: unknown) => queues.onNotify(typeof payload === 'string' ? payload : ''));
    events.on('connected', () => {
      this.epoch++;
      this.connected = true;
      if (this.everConnected) {
        options.logger.info({ channel: options.channel }, 'notification listener reconnected');
        options.onReconnect();
      }
      this.everConnected = true;
    });
    events.on('reconnect', (attempt: number) => {
      this.epoch++;
      if (this.connected && !this.closed) options.onLost?.();
      this.connected = false;
      if (!this.closed) options.logger.warn({ attempt }, 'notification listener reconnecting');
    });
    events.on('error', (err: Error) => {
      if (!this.closed) options.logger.error({ err: errorMessage(err) }, 'notification listener error');
    });
  }

  get isConnected(): boolean {
    return this.connected;
  }

  async start(): Promise<void> {
    try {
      await this.subscriber.connect();
      // The check's channel first: the last LISTEN stays the schema's own (pg_stat_activity.query).
      const check = this.options.sendCheck && this.prepareCheck(this.options.sendCheck);
      if (check) await this.subscriber.listenTo(check.channel);
      await this.subscriber.listenTo(this.options.channel);
      if (this.options.handoff) await this.subscriber.listenTo(this.options.handoff.channel);
      if (this.options.queues) await this.subscriber.listenTo(this.options.queues.channel);
      await check?.run();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /**
   * A notification sent through the pool must reach this connection: behind PgBouncer in
   * transaction mode, LISTEN runs on whichever server connection is free and the server's
   * notifications go to whoever holds it later (or nobody), so the worker would never hear
   * one. A private channel, so no other worker wakes. When the connection was lost while
   * waiting (a terminated backend, a restart), the notification may have gone with it: it is
   * sent again, up to three times.
   */
  private prepareCheck(send: (channel: string, payload: string) => Promise<void>): { channel: string; run: () => Promise<void> } {
    const channel = `skiplock_check_${randomBytes(8).toString('hex')}`;
    const token = randomBytes(8).toString('hex');
    const timeoutMs = this.options.checkTimeoutMs ?? 10_000;
    const { notifications } = this.subscriber;
    let arrived = false;
    let wake: (() => void) | undefined;
    const onPayload = (payload: unknown): void => {
      if (payload !== token) return;
      arrived = true;
      wake?.();
    };
    notifications.on(channel, onPayload);
    const run = async (): Promise<void> => {
      try {
        for (let attempt = 1; ; attempt++) {
          const epoch = this.epoch;
          await send(channel, token);
          let timer: NodeJS.Timeout | undefined;
          await new Promise<void>((resolve) => {
            wake = resolve;
            timer = setTimeout(resolve, timeoutMs);
            if (arrived) resolve();
          });
          clearTimeout(timer);
          if (arrived) return;
          if (this.epoch === epoch || attempt >= 3) break;
        }
        const where = this.options.target === undefined ? '' : ` (${this.options.target})`;
        throw new SkiplockError(`the LISTEN connection${where} received no notification within ${timeoutMs / 1000} s of one sent through the pool: ${NO_SESSION_HINT}`);
      } finally {
        wake = undefined;
        notifications.removeListener(channel, onPayload);
      }
    };
    return { channel, run };
  }

  async stop(): Promise<void> {
    this.closed = true;
    this.connected = false;
    await this.subscriber.close().catch(() => undefined);
  }
}
