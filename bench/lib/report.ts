import { ISOLATION_BASELINE, ISOLATION_SCENARIOS, SYSTEMS, type ScenarioName, type SystemName, round, runsIn } from './common.js';

/** The figure(s) of each scenario that the skiplock/peer ratios are taken on. */
export const HEADLINES: Readonly<Record<ScenarioName, ReadonlyArray<{ metric: string; better: 'higher' | 'lower' }>>> = {
  enqueue_single_1: [{ metric: 'jobs_per_s', better: 'higher' }],
  enqueue_single_16: [{ metric: 'jobs_per_s', better: 'higher' }],
  bulk_enqueue: [{ metric: 'jobs_per_s', better: 'higher' }],
  drain_1proc: [{ metric: 'jobs_per_s', better: 'higher' }],
  drain_2proc: [{ metric: 'jobs_per_s', better: 'higher' }],
  drain_4proc: [{ metric: 'jobs_per_s', better: 'higher' }],
  drain_8proc: [{ metric: 'jobs_per_s', better: 'higher' }],
  drain_c10: [{ metric: 'jobs_per_s', better: 'higher' }],
  drain_c32: [{ metric: 'jobs_per_s', better: 'higher' }],
  isolation_queue: [{ metric: 'jobs_per_s', better: 'higher' }],
  isolation_task: [{ metric: 'jobs_per_s', better: 'higher' }],
  latency_low: [
    { metric: 'p50_ms', better: 'lower' },
    { metric: 'p99_ms', better: 'lower' },
  ],
  latency_high: [
    { metric: 'p50_ms', better: 'lower' },
    { metric: 'p99_ms', better: 'lower' },
  ],
  mixed: [
    { metric: 'processed_per_s', better: 'higher' },
    { metric: 'p99_ms', better: 'lower' },
  ],
};

export interface ResultLine {
  type: 'result';
  scenario: ScenarioName;
  system: SystemName;
  version: string;
  ok: boolean;
  error?: string;
  wall_s: number;
  figures: Record<string, unknown>;
  conditions: Record<string, unknown>;
}

export const RATIO_NOTE =
  'ratio = skiplock figure / peer figure. For throughput metrics (better: higher) a ratio above 1 means skiplock is faster; ' +
  'for latency metrics (better: lower) a ratio below 1 means skiplock is faster. null: a side is missing or failed. ' +
  'skiplock is the tuned configuration; its ratio to skiplock-defaults (library defaults; every scenario but the isolation ones) is what the tuning buys.';

export const ISOLATION_NOTE =
  `isolation_vs_drain_c10 = a system's jobs_per_s behind the backlog / its jobs_per_s in ${ISOLATION_BASELINE} (the same drain, empty table); ` +
  '1 = the backlog costs nothing. null: a side is missing or failed.';

/** skiplock/peer for each scenario's headline figures, from the result lines of one run (or medians). */
export function ratios(figureOf: (scenario: ScenarioName, system: SystemName, metric: string) => number | undefined, scenarios: readonly ScenarioName[]) {
  const out: Record<string, Record<string, Record<string, unknown>>> = {};
  for (const scenario of scenarios) {
    const perMetric: Record<string, Record<string, unknown>> = {};
    for (const { metric, better } of HEADLINES[scenario]) {
      const mine = figureOf(scenario, 'skiplock', metric);
      const entry: Record<string, unknown> = { better };
      for (const peer of SYSTEMS) {
        if (peer === 'skiplock' || !runsIn(peer, scenario)) continue;
        const theirs = figureOf(scenario, peer, metric);
        entry[peer] = mine !== undefined && theirs !== undefined && theirs > 0 ? round(mine / theirs, 3) : null;
      }
      perMetric[metric] = entry;
    }
    out[scenario] = perMetric;
  }
  return out;
}

/** Each system's jobs_per_s behind a backlog over its jobs_per_s on an empty table (ISOLATION_BASELINE), for the isolation scenarios among `scenarios`. */
export function isolationRatios(
  figureOf: (scenario: ScenarioName, system: SystemName, metric: string) => number | undefined,
  scenarios: readonly ScenarioName[],
  systems: readonly SystemName[] = SYSTEMS,
) {
  const out: Record<string, Record<string, number | null>> = {};
  for (const scenario of ISOLATION_SCENARIOS) {
    if (!scenarios.includes(scenario)) continue;
    const entry: Record<string, number | null> = {};
    for (const system of systems) {
      if (!runsIn(system, scenario)) continue;
      const behind = figureOf(scenario, system, 'jobs_per_s');
      const empty = figureOf(ISOLATION_BASELINE, system, 'jobs_per_s');
      entry[system] = behind !== undefined && empty !== undefined && empty > 0 ? round(behind / empty, 3) : null;
    }
    out[scenario] = entry;
  }
  return out;
}

export function numberAt(record: Record<string, unknown>, key: string): number | undefined {
  const value = record[key];
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}
