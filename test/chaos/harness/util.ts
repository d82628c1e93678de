/** Small utilities of the chaos scenarios: formatting, ports, /proc, connections, sampling. */
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import type pg from 'pg';

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** The one-letter state of a process from /proc (R, S, D, T = stopped, Z, ...), or undefined if gone. */
export function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

/** Formats and prints the one summary line of a scenario; returns it. */
export function summary(name: string, figures: Record<string, string | number>): string {
  const line = `chaos ${name}: ${Object.entries(figures)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')}`;
  console.log(line);
  return line;
}

/**
 * Checks `n` clients out of `pool` at once (each on a connection of its own). While the
 * server has no connection slot free (other sessions share it), waits and tries again.
 */
export async function checkoutClients(pool: pg.Pool, n: number, timeoutMs = 60_000): Promise<pg.PoolClient[]> {
  const clients: pg.PoolClient[] = [];
  const deadline = Date.now() + timeoutMs;
  while (clients.length < n) {
    try {
      clients.push(await pool.connect());
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if ((code !== '53300' && code !== '57P03') || Date.now() > deadline) {
        for (const c of clients) c.release();
        throw err;
      }
      await delay(200);
    }
  }
  return clients;
}

/**
 * Runs `probe` over and over (every `everyMs`, never two at once) until stopped, e.g. to
 * watch an invariant from outside while a scenario runs. Probe errors are kept, not thrown.
 */
export class Sampler {
  samples = 0;
  readonly errors: string[] = [];
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly everyMs: number,
    private readonly probe: () => Promise<void>,
  ) {
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.probe();
        this.samples += 1;
      } catch (err) {
        this.errors.push(err instanceof Error ? err.message : String(err));
      }
      if (!this.stopped) await delay(this.everyMs);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}
