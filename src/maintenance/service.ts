import { Periodic } from './periodic.js';

/**
 * The one contract of a worker's background services (reaper, pruner, and those to come):
 * started with the worker, stopped in its shutdown, each waiting for its round in progress.
 */
export interface Service {
  start(): void;
  stop(): Promise<void>;
}

/**
 * A service that runs one round every `intervalMs` (±20% jitter, so the services of many
 * workers spread out), never two at once; a failed round goes to onError and the next one runs.
 */
export abstract class PeriodicService implements Service {
  private readonly periodic: Periodic;

  constructor(intervalMs: number, onError: (err: unknown) => void) {
    this.periodic = new Periodic(intervalMs, () => this.round(), onError, 0.2);
  }

  start(): void {
    this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** One round of the service's work. */
  protected abstract round(): Promise<void>;
}
