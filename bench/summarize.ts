/**
 * tsx bench/summarize.ts <run1.jsonl> <run2.jsonl> ...
 *
 * Medians over several runs of `npm run bench` (use --out to keep each run's lines): one
 * Markdown table row per scenario x system with the median of each headline figure (and the
 * spread), then the skiplock/peer ratios of those medians as a JSON line, and, for the
 * isolation scenarios, each system's median behind the backlog over its median drain_c10.
 */
import { readFileSync } from 'node:fs';
import { SCENARIOS, SYSTEMS, type ScenarioName, type SystemName, percentile, round } from './lib/common.js';
import { HEADLINES, ISOLATION_NOTE, RATIO_NOTE, type ResultLine, isolationRatios, numberAt, ratios } from './lib/report.js';

const EXTRA: Readonly<Partial<Record<ScenarioName, readonly string[]>>> = {
  drain_1proc: ['started_jobs_per_s'],
  drain_2proc: ['started_jobs_per_s'],
  drain_4proc: ['started_jobs_per_s'],
  drain_8proc: ['started_jobs_per_s'],
  drain_c10: ['started_jobs_per_s'],
  drain_c32: ['started_jobs_per_s'],
  isolation_queue: ['started_jobs_per_s', 'backlog_taken'],
  isolation_task: ['started_jobs_per_s', 'backlog_taken'],
  latency_low: ['p90_ms', 'achieved_rate'],
  latency_high: ['p90_ms', 'achieved_rate'],
  mixed: ['enqueued_per_s', 'p50_ms', 'backlog_at_end'],
};

function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  return percentile(
    [...values].sort((a, b) => a - b),
    50,
  );
}

function main(files: readonly string[]): void {
  if (files.length === 0) {
    process.stderr.write('usage: tsx bench/summarize.ts <run.jsonl> [<run.jsonl> ...]\n');
    process.exit(2);
  }
  const results: ResultLine[] = [];
  const totals: number[] = [];
  for (const file of files) {
    for (const text of readFileSync(file, 'utf8').split('\n')) {
      if (text.trim() === '') continue;
      const line = JSON.parse(text) as { type?: string; total_s?: number };
      if (line.type === 'result') results.push(line as ResultLine);
      else if (line.type === 'ratios' && typeof line.total_s === 'number') totals.push(line.total_s);
    }
  }
  const scenarios = SCENARIOS.filter((s) => results.some((r) => r.scenario === s));
  const samples = (scenario: ScenarioName, system: SystemName, metric: string): number[] =>
    results
      .filter((r) => r.scenario === scenario && r.system === system && r.ok)
      .map((r) => numberAt(r.figures, metric))
      .filter((v): v is number => v !== undefined);

  const out: string[] = [];
  out.push(`runs: ${files.length}; total time of one run (s): ${totals.map((t) => round(t, 0)).join(', ')}`);
  out.push('');
  out.push('| scenario | system | figure | median | runs (min-max) |');
  out.push('| --- | --- | --- | ---: | --- |');
  for (const scenario of scenarios) {
    const metrics = [...HEADLINES[scenario].map((h) => h.metric), ...(EXTRA[scenario] ?? [])];
    for (const system of SYSTEMS) {
      const failed = results.filter((r) => r.scenario === scenario && r.system === system && !r.ok).length;
      if (failed === 0 && samples(scenario, system, metrics[0] ?? '').length === 0) continue;
      for (const metric of metrics) {
        const values = samples(scenario, system, metric);
        const m = median(values);
        const spread = values.length > 0 ? `${values.length} (${Math.min(...values)}-${Math.max(...values)})` : '0';
        out.push(`| ${scenario} | ${system} | ${metric} | ${m === undefined ? 'n/a' : round(m, 2)} | ${spread}${failed > 0 ? `, ${failed} failed` : ''} |`);
      }
    }
  }
  out.push('');
  const medianRatios = ratios((scenario, system, metric) => median(samples(scenario, system, metric)), scenarios);
  out.push(JSON.stringify({ type: 'median_ratios', note: RATIO_NOTE, runs: files.length, ratios: medianRatios }));
  const systems = SYSTEMS.filter((system) => results.some((r) => r.system === system));
  const isolation = isolationRatios((scenario, system, metric) => median(samples(scenario, system, metric)), scenarios, systems);
  if (Object.keys(isolation).length > 0) {
    out.push(JSON.stringify({ type: 'median_isolation_ratios', note: ISOLATION_NOTE, runs: files.length, isolation_vs_drain_c10: isolation }));
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

main(process.argv.slice(2));
