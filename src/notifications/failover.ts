import { EventEmitter } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import type pg from 'pg';
import pgListen, { type Options, type Subscriber } from 'pg-listen';
import type { HostAddress } from '../db/hosts.js';
import type { HostResolver } from '../db/resolver.js';

/** What the Listener uses of a pg-listen subscriber. */
export interface ListenSubscriber {
  readonly events: Subscriber['events'];
  readonly notifications: Subscriber['notifications'];
  connect(): Promise<void>;
  listenTo(channel: string): Promise<unknown> | undefined;
  close(): Promise<void>;
}

interface Connection {
  readonly subscriber: Subscriber;
  readonly host: HostAddress;
  /** Its connection was lost (pg-listen gave up on it). */
  lost: boolean;
}

/**
 * A pg-listen subscriber for a multi-host connection string (see src/db/resolver.ts): pg-listen
 * reconnects to the one host of its config, which after a failover is the dead primary, so
 * this one never lets it reconnect (retryLimit 1: a lost connection is reported as its one
 * 'error') and opens a new pg-listen subscriber on the host the resolver finds instead,
 * LISTENs to every channel again, and only then emits 'connected'. Seen from the Listener it
 * behaves as pg-listen does: 'reconnect' per attempt, 'connected' once back, notifications
 * per channel; notifications are passed on from whichever subscriber is current.
 */
export class FailoverSubscriber implements ListenSubscriber {
  readonly events = new EventEmitter() as unknown as Subscriber['events'];
  readonly notifications = new EventEmitter() as unknown as Subscriber['notifications'];
  private readonly channels = new Set<string>();
  private current: Connection | undefined;
  private closed = false;

  constructor(
    private readonly resolver: HostResolver,
    private readonly config: pg.ClientConfig,
    private readonly options: Options,
  ) {
    this.events.setMaxListeners(0);
    this.notifications.setMaxListeners(0);
  }

  async connect(): Promise<void> {
    this.adopt(await this.open());
  }

  listenTo(channel: string): Promise<unknown> | undefined {
    this.channels.add(channel);
    return this.current?.subscriber.listenTo(channel);
  }

  async close(): Promise<void> {
    this.closed = true;
    const current = this.current;
    this.current = undefined;
    await current?.subscriber.close();
  }

  /** A pg-listen subscriber on the resolver's host, connected and listening to every channel. */
  private async open(): Promise<Connection> {
    const host = await this.resolver.target();
    const subscriber = pgListen.default(
      { ...this.config, connectionString: this.resolver.list.connectionStringFor(host) },
      { ...this.options, retryLimit: 1 },
    );
    const connection: Connection = { subscriber, host, lost: false };
    subscriber.events.on('notification', ({ channel, payload }) => this.notifications.emit(channel, payload));
    subscriber.events.on('error', () => this.lose(connection));
    try {
      await subscriber.connect();
      for (const channel of this.channels) await subscriber.listenTo(channel);
    } catch (err) {
      this.resolver.suspect(host);
      await subscriber.close().catch(() => undefined);
      throw err;
    }
    return connection;
  }

  /** Makes a freshly opened connection the current one (or lets it go when closed, or lost meanwhile). */
  private adopt(connection: Connection): void {
    if (this.closed) {
      void connection.subscriber.close().catch(() => undefined);
      return;
    }
    this.current = connection;
    this.events.emit('connected');
    if (connection.lost) this.lose(connection);
  }

  private lose(connection: Connection): void {
    connection.lost = true;
    this.resolver.suspect(connection.host);
    if (connection !== this.current || this.closed) return;
    this.current = undefined;
    void connection.subscriber.close().catch(() => undefined);
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    const interval = this.options.retryInterval ?? 500;
    for (let attempt = 1; !this.closed; attempt++) {
      this.events.emit('reconnect', attempt);
      try {
        this.adopt(await this.open());
        return;
      } catch {
        // no fit host yet (the resolver says why when it cannot connect at all): try again
      }
      await delay(typeof interval === 'function' ? interval(attempt - 1) : interval);
    }
  }
}
