/**
 * Runs an async step every `intervalMs` (plus optional jitter), never two at once: the timer
 * under the worker's poll, heartbeat and maintenance services (service.ts).
 */
export class Periodic {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;

  constructor(
    private readonly intervalMs: number,
    private readonly step: () => Promise<void>,
    private readonly onError: (err: unknown) => void,
    private readonly jitter = 0,
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule();
  }

  /** Runs the step now (or waits for the run in progress). */
  runNow(): Promise<void> {
    if (this.running) return this.running;
    this.running = this.step()
      .catch(this.onError)
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  /** Stops scheduling and waits for a run in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    const delay = Math.round(this.intervalMs * (1 + this.jitter * Math.random()));
    this.timer = setTimeout(() => {
      this.runNow().finally(() => this.schedule());
    }, delay);
  }
}
