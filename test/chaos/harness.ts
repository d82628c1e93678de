/**
 * Chaos harness: real `skiplock worker` processes against the real server, a producer,
 * fault injectors, a ledger written by the chaos-ledger task, invariant checks and a
 * one-line summary per scenario. Scenarios live in test/chaos/*.chaos.ts; the parts live in
 * harness/ (see README.md), re-exported here.
 */
export { Injector, type InjectorOptions, type BackendKillStats, crashAndRestart, terminateBackends } from './harness/faults.js';
export { type FleetOptions, type WorkerExit, type WorkerProcess, WorkerFleet } from './harness/fleet.js';
export { type LedgerFigures, coreViolations, ledgerFigures, ledgerSummary, rescueTimes } from './harness/invariants.js';
export { freePort, maxOverlap } from '../helpers/measure.js';
export {
  CHAOS_TASK,
  CHAOS_TASKS,
  type ChaosDb,
  type ChaosPayload,
  createChaosDb,
  enqueueBulk,
  formatStatuses,
  statusCounts,
  waitForDrain,
} from './harness/ledger.js';
export { type Backend, POOL_APP, clientPortsOf, healthz, listenerApp, scrapeMetric } from './harness/observe.js';
export { Random, seedFromEnv } from './harness/random.js';
export { type ChaosRun, type ChaosScenario, useChaosScenario } from './harness/scenario.js';
export { type ServerControl, serverControl } from './harness/server.js';
export { Sampler, checkoutClients, processState, seconds, summary } from './harness/util.js';
