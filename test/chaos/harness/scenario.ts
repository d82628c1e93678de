/** The setup and teardown every chaos scenario shares. */
import { afterEach } from 'vitest';
import { type FleetOptions, WorkerFleet } from './fleet.js';
import { type ChaosDb, createChaosDb } from './ledger.js';
import { Random, seedFromEnv } from './random.js';

export interface ChaosRun {
  /** Date.now() when the run began (before its schema was created). */
  readonly t0: number;
  /** The seed of `random`, printed in the summary; CHAOS_SEED=<seed> replays it. */
  readonly seed: number;
  readonly random: Random;
  readonly db: ChaosDb;
}

export interface ChaosScenario<Run extends ChaosRun> {
  /** Creates the scenario's schema and, when the scenario was given fleet options, starts its fleet. */
  start(): Promise<Run>;
  /** A fleet on the scenario's schema, not started (spawn its slots one by one); killed after the test. */
  newFleet(options: FleetOptions): WorkerFleet;
  /** A fleet on the scenario's schema, started and ready; killed after the test. */
  startFleet(options: FleetOptions): Promise<WorkerFleet>;
}

export interface ChaosScenarioOptions {
  /** The fleet start() starts (none: the test makes its own with newFleet or startFleet). */
  fleet?: FleetOptions;
  /**
   * Closes what a test opened besides the fleet and the schema (pools, server state). Runs
   * after each test once its fleets are killed, before the schema is dropped.
   */
  cleanup?: () => Promise<void>;
}

/**
 * Registers the afterEach of a scenario file: kill every worker process the test started,
 * run `cleanup`, drop the schema (waiting for the server if it restarted). `start()` then
 * gives each test its seed, schema (t_chaos_<name>_<random>) and, with `fleet`, its started
 * fleet.
 */
export function useChaosScenario(name: string, options: ChaosScenarioOptions & { fleet: FleetOptions }): ChaosScenario<ChaosRun & { fleet: WorkerFleet }>;
export function useChaosScenario(name: string, options?: ChaosScenarioOptions): ChaosScenario<ChaosRun>;
export function useChaosScenario(name: string, options: ChaosScenarioOptions = {}): ChaosScenario<ChaosRun & { fleet?: WorkerFleet }> {
  let chaos: ChaosDb | undefined;
  let fleets: WorkerFleet[] = [];

  afterEach(async () => {
    for (const fleet of fleets) await fleet.destroy(); // SIGKILL also ends a stopped process
    await options.cleanup?.();
    await chaos?.drop();
    fleets = [];
    chaos = undefined;
  });

  const db = (): ChaosDb => {
    if (!chaos) throw new Error(`chaos scenario ${name}: start() first`);
    return chaos;
  };
  const newFleet = (fleet: FleetOptions): WorkerFleet => {
    const created = new WorkerFleet(db(), fleet);
    fleets.push(created);
    return created;
  };
  const startFleet = async (fleet: FleetOptions): Promise<WorkerFleet> => {
    const started = newFleet(fleet);
    await started.start();
    return started;
  };

  return {
    async start() {
      const seed = seedFromEnv();
      const random = new Random(seed);
      const t0 = Date.now();
      chaos = await createChaosDb(name);
      const fleet = options.fleet ? await startFleet(options.fleet) : undefined;
      return { t0, seed, random, db: chaos, fleet };
    },
    newFleet,
    startFleet,
  };
}
