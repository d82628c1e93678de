import type pg from 'pg';
import pgListen, { type Subscriber } from 'pg-listen';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';

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
}

/**
 * One LISTEN connection per process (pg-listen). It reconnects forever with a capped
 * backoff. Payloads on the shared channel are never parsed, so junk there cannot hurt the
 * worker; payloads on the worker's own hand-off channel go to the worker as text.
 */
export class Listener {
  private readonly subscriber: Subscriber;
  private connected = false;
  private everConnected = false;
  private closed = false;

  constructor(private readonly options: ListenerOptions) {
    // pg-listen is CommonJS: its function is the module's `default` property.
    this.subscriber = pgListen.default(options.connection, {
      parse: (text: string) => text,
      retryLimit: Infinity,
      retryTimeout: 0,
      retryInterval: (attempt: number) => Math.min(5000, 100 * 2 ** Math.min(attempt, 6)),
      paranoidChecking: 10_000,
    });
    const { events, notifications } = this.subscriber;
    notifications.on(options.channel, () => options.onNotify());
    const { handoff } = options;
    if (handoff) notifications.on(handoff.channel, (payload: unknown) => handoff.onPayload(typeof payload === 'string' ? payload : ''));
    const { queues } = options;
    if (queues) notifications.on(queues.channel, (payload: unknown) => queues.onNotify(typeof payload === 'string' ? payload : ''));
    events.on('connected', () => {
      this.connected = true;
      if (this.everConnected) {
        options.logger.info({ channel: options.channel }, 'notification listener reconnected');
        options.onReconnect();
      }
      this.everConnected = true;
    });
    events.on('reconnect', (attempt: number) => {
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
      await this.subscriber.listenTo(this.options.channel);
      if (this.options.handoff) await this.subscriber.listenTo(this.options.handoff.channel);
      if (this.options.queues) await this.subscriber.listenTo(this.options.queues.channel);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    this.closed = true;
    this.connected = false;
    await this.subscriber.close().catch(() => undefined);
  }
}
