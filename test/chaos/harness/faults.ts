/** Fault injection: an injector that repeats an action, and the ready-made actions. */
import { waitFor } from '../../helpers/wait.js';
import type { WorkerFleet } from './fleet.js';
import type { ChaosDb } from './ledger.js';
import { type Backend, POOL_APP, listenerApp } from './observe.js';
import type { Random } from './random.js';

export interface InjectorOptions {
  /** Mean time between actions. */
  everyMs: number;
  /** Spread of the interval, as a fraction (0.25: everyMs +/- 25%). */
  jitter?: number;
  /** Stop after this many injected faults. */
  maxFaults?: number;
  /** Stop after this long. */
  forMs?: number;
  /** Stop once this returns true (checked before each action). */
  until?: () => boolean | Promise<boolean>;
  random: Random;
  /** One round: resolves to the number of faults it injected. */
  action: () => Promise<number>;
}

/** Runs a fault action every so often until told to stop or a limit is reached. */
export class Injector {
  faults = 0;
  rounds = 0;
  firstAt: number | undefined;
  lastAt: number | undefined;
  readonly errors: string[] = [];
  readonly done: Promise<void>;
  private stopped = false;
  private wake: (() => void) | undefined;

  constructor(
    readonly name: string,
    private readonly options: InjectorOptions,
  ) {
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    const { everyMs, jitter = 0.25, maxFaults, forMs, until, random, action } = this.options;
    const started = Date.now();
    for (;;) {
      const wait = Math.round(everyMs * (1 + jitter * (2 * random.next() - 1)));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
      if (this.stopped) return;
      if (forMs !== undefined && Date.now() - started >= forMs) return;
      if (until && (await until())) return;
      this.rounds += 1;
      try {
        const n = await action();
        if (n > 0) {
          this.faults += n;
          this.firstAt ??= Date.now();
          this.lastAt = Date.now();
        }
      } catch (err) {
        this.errors.push(err instanceof Error ? err.message : String(err));
      }
      if (maxFaults !== undefined && this.faults >= maxFaults) return;
    }
  }

  /** Stops after the action in progress, if any. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.done;
  }
}

/** Fault: SIGKILL a random live worker of the fleet and start a new one in its slot. */
export function crashAndRestart(fleet: WorkerFleet, random: Random, kills: Array<{ pid: number; at: number }>): () => Promise<number> {
  return async () => {
    const victim = random.pick(fleet.live());
    if (!victim) return 0;
    await fleet.kill(victim, 'SIGKILL');
    kills.push({ pid: victim.pid, at: Date.now() });
    await fleet.spawn(victim.slot);
    return 1;
  };
}

export interface BackendKillStats {
  pool: number;
  /** Pool connections that were running a statement or inside a transaction when killed. */
  poolBusy: number;
  listener: number;
  /** Time until each terminated listener's worker had a LISTEN connection again, ms. */
  listenerReturnMs: number[];
  /** Listeners that had not come back within the limit. */
  listenerNotBack: string[];
}

/**
 * Fault: pg_terminate_backend on `poolKills` random pool connections and `listenerKills`
 * random LISTEN connections of the fleet's live workers (found by client port, so other
 * processes' connections are never touched). Each listener kill is followed (in the
 * background) by a watch for its replacement connection.
 */
export function terminateBackends(
  chaos: ChaosDb,
  fleet: WorkerFleet,
  random: Random,
  stats: BackendKillStats,
  options: {
    poolKills: number;
    listenerKills: number;
    /** Chance that a round kills its listeners at all (default 1). */
    listenerChance?: number;
    listenerBackWithinMs?: number;
  },
  watches: Array<Promise<void>>,
): () => Promise<number> {
  return async () => {
    const backends = await fleet.backends();
    const pool = backends.filter((b) => b.application_name === POOL_APP);
    const listeners = backends.filter((b) => b.application_name.startsWith('skiplock listener '));
    const chosen: Backend[] = [];
    // Half of the pool kills go to a backend busy with a statement or a transaction, if any.
    const busy = pool.filter((b) => b.state !== 'idle');
    for (let i = 0; i < options.poolKills && pool.length > 0; i++) {
      const from = i % 2 === 0 && busy.length > 0 ? busy : pool;
      const [victim] = from.splice(random.int(from.length), 1);
      if (!victim) continue;
      chosen.push(victim);
      const other = from === busy ? pool : busy;
      const k = other.indexOf(victim);
      if (k >= 0) other.splice(k, 1);
    }
    const listenerKills = random.next() < (options.listenerChance ?? 1) ? options.listenerKills : 0;
    for (let i = 0; i < listenerKills && listeners.length > 0; i++) chosen.push(...listeners.splice(random.int(listeners.length), 1));
    let n = 0;
    for (const b of chosen) {
      const [row] = await chaos.rows<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [b.pid]);
      if (!row?.ok) continue;
      n += 1;
      if (b.application_name === POOL_APP) {
        stats.pool += 1;
        if (b.state !== 'idle') stats.poolBusy += 1;
        continue;
      }
      stats.listener += 1;
      const at = Date.now();
      const limit = options.listenerBackWithinMs ?? 15_000;
      watches.push(
        waitFor(
          async () =>
            (await chaos.count(`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND pid <> $2`, [b.application_name, b.pid])) > 0,
          limit,
          `listener ${b.application_name} to reconnect`,
          { intervalMs: 50, retryOnError: true },
        ).then(
          () => void stats.listenerReturnMs.push(Date.now() - at),
          () => {
            // Its worker may have been killed meanwhile; only a live worker's absence counts.
            const owner = fleet.live().find((p) => listenerApp(p.id) === b.application_name);
            if (owner) stats.listenerNotBack.push(b.application_name);
          },
        ),
      );
    }
    return n;
  };
}
