import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startMetricsServer } from '../src/index.js';
import { useTestSchema } from './helpers/setup.js';
import { waitFor } from './helpers/wait.js';

// deploy/ (Grafana dashboard, Prometheus rules) against what a running worker serves: every
// skiplock_ metric the dashboard's queries and the rules name must be in a real scrape, so a
// renamed or misspelled metric fails here instead of drawing an empty panel or an alert that
// can never fire.
const { producer, workers } = useTestSchema('deploy', { max: 3 });

const ROOT = path.resolve(import.meta.dirname, '..');
const DASHBOARD = path.join(ROOT, 'deploy/grafana/skiplock.json');
const RULES = path.join(ROOT, 'deploy/prometheus/skiplock-rules.yml');
const RULES_TESTS = path.join(ROOT, 'deploy/prometheus/skiplock-rules.test.yml');

/** A skiplock_ metric name, not inside a longer identifier (recording rules are skiplock:...). */
const METRIC_NAME = /(?<![A-Za-z0-9_:])skiplock_[a-z0-9_]+/g;
const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'];

/** Every skiplock_ metric name the expressions mention. */
function metricNames(expressions: readonly string[]): Set<string> {
  const names = new Set<string>();
  for (const expr of expressions) for (const match of expr.matchAll(METRIC_NAME)) names.add(match[0]);
  return names;
}

/** Metric name → type, from the `# TYPE` lines of a Prometheus text scrape. */
function servedTypes(scrape: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const line of scrape.split('\n')) {
    const m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) types.set(m[1]!, m[2]!);
  }
  return types;
}

/** The served metric a referenced name reads (a histogram's _bucket/_sum/_count → the histogram), or undefined. */
function servedMetric(name: string, types: ReadonlyMap<string, string>): string | undefined {
  if (types.has(name)) return name;
  for (const suffix of HISTOGRAM_SUFFIXES) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    if (types.get(base) === 'histogram') return base;
  }
  return undefined;
}

/** The referenced names no served metric answers to. */
function unservedMetrics(names: Iterable<string>, types: ReadonlyMap<string, string>): string[] {
  return [...names].filter((name) => servedMetric(name, types) === undefined).sort();
}

interface Panel {
  type: string;
  title?: string;
  description?: string;
  datasource?: { type?: string; uid?: string };
  targets?: Array<{ expr?: string; datasource?: { type?: string; uid?: string } }>;
  panels?: Panel[];
}

interface Dashboard {
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query?: string | { query?: string }; definition?: string }> };
}

/** Every panel, rows' nested (collapsed) panels included. */
function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

/** The PromQL of the dashboard: its panels' targets and its query variables. */
function dashboardQueries(dashboard: Dashboard): string[] {
  const exprs = allPanels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ''));
  for (const v of dashboard.templating.list) {
    if (v.type !== 'query') continue;
    exprs.push(typeof v.query === 'string' ? v.query : (v.query?.query ?? ''), v.definition ?? '');
  }
  return exprs.filter((e) => e !== '');
}

/** The dashboard's queries and its panels' descriptions (which name the metrics they show). */
function dashboardTexts(dashboard: Dashboard): string[] {
  return [...dashboardQueries(dashboard), ...allPanels(dashboard.panels).map((p) => p.description ?? '')];
}

/**
 * The values of `key:` in a rules-like YAML file, inline or as a block scalar (`key: |`
 * followed by more indented lines). Enough for the files in deploy/prometheus (no YAML
 * library among the dependencies).
 */
function yamlValues(text: string, key: string): string[] {
  const lines = text.split('\n');
  const values: string[] = [];
  const keyLine = new RegExp(`^(\\s*)(?:-\\s+)?${key}:\\s*(.*)$`);
  for (let i = 0; i < lines.length; i++) {
    const m = keyLine.exec(lines[i]!);
    if (!m) continue;
    const indent = m[1]!.length;
    const value = m[2]!.trim();
    if (/^[|>][-+]?$/.test(value)) {
      const block: string[] = [];
      while (i + 1 < lines.length && (lines[i + 1]!.trim() === '' || lines[i + 1]!.search(/\S/) > indent)) block.push(lines[++i]!.trim());
      values.push(block.join('\n').trim());
    } else {
      values.push(value.replace(/^(['"])(.*)\1$/, '$2'));
    }
  }
  return values;
}

const dashboardText = readFileSync(DASHBOARD, 'utf8');
const rulesText = readFileSync(RULES, 'utf8');
const rulesTestsText = readFileSync(RULES_TESTS, 'utf8');

/** What the worker below served, once its jobs ran. */
let scrape = '';

describe('deploy/: dashboard and alert rules against a running worker', () => {
  it('a worker runs a success, a retried failure, a final failure and a scheduled job, and serves them on /metrics', async () => {
    let flakyRuns = 0;
    const worker = await workers.start(
      {
        'deploy-ok': () => undefined,
        'deploy-flaky': () => {
          flakyRuns += 1;
          if (flakyRuns === 1) throw new Error('first attempt fails');
        },
        'deploy-fail': () => {
          throw new Error('always fails');
        },
        'deploy-tick': { handler: () => undefined, schedule: '* * * * * *' },
      },
      { scheduleIntervalMs: 100, backoff: { baseMs: 50, maxMs: 50, jitter: 0 } },
    );
    const server = await startMetricsServer({ metrics: worker.metrics, port: 0, health: () => worker.health() });
    try {
      await producer.enqueue('deploy-ok', {});
      await producer.enqueue('deploy-flaky', {}, { queue: 'deploy-q' });
      await producer.enqueue('deploy-fail', {}, { maxAttempts: 1 });
      const wanted = [
        'skiplock_jobs_completed_total{queue="default",task="deploy-ok",outcome="succeeded"} 1',
        'skiplock_jobs_completed_total{queue="deploy-q",task="deploy-flaky",outcome="retried"} 1',
        'skiplock_jobs_completed_total{queue="deploy-q",task="deploy-flaky",outcome="succeeded"} 1',
        'skiplock_jobs_completed_total{queue="default",task="deploy-fail",outcome="failed"} 1',
        'skiplock_schedule_jobs_enqueued_total{schedule="deploy-tick"}',
        'skiplock_job_wait_seconds_bucket{le="+Inf",queue="deploy-q",task="deploy-flaky"} 2',
        'skiplock_schedule_lag_seconds{schedule="deploy-tick"}',
        'skiplock_queue_depth{queue="default",status="failed"} 1',
        'skiplock_oldest_transaction_age_seconds ',
        'skiplock_table_dead_tuples{table="jobs"} ',
        'skiplock_table_live_tuples{table="jobs"} ',
        'skiplock_table_size_bytes{table="jobs"} ',
      ];
      scrape = await waitFor(
        async () => {
          const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
          const text = await res.text();
          return res.ok && wanted.every((line) => text.includes(line)) ? text : undefined;
        },
        20_000,
        'the scrape to show every job and the schedule',
        { intervalMs: 200 },
      );
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await worker.stop({ graceMs: 0 });
    }
    expect(servedTypes(scrape).get('skiplock_job_wait_seconds')).toBe('histogram');
  });

  it('every skiplock_ metric the dashboard, the rules and the rules tests name is served by the worker', () => {
    expect(scrape).not.toBe('');
    const types = servedTypes(scrape);
    const dashboard = JSON.parse(dashboardText) as Dashboard;
    const fromDashboard = metricNames(dashboardTexts(dashboard));
    const ruleExprs = yamlValues(rulesText, 'expr');
    // One expression per rule: the extraction saw them all.
    expect(ruleExprs.length).toBe((rulesText.match(/^\s*- (alert|record):/gm) ?? []).length);
    const fromRules = metricNames([...ruleExprs, ...yamlValues(rulesText, 'description'), ...yamlValues(rulesText, 'summary')]);
    const fromTests = metricNames([...yamlValues(rulesTestsText, 'series'), ...yamlValues(rulesTestsText, 'expr')]);

    for (const [source, names] of [
      ['dashboard', fromDashboard],
      ['rules', fromRules],
      ['rules tests', fromTests],
    ] as const) {
      expect(names.size, `${source} names some metrics`).toBeGreaterThan(3);
      expect(unservedMetrics(names, types), `${source}: metrics the worker does not serve`).toEqual([]);
    }
    // The panels cover the operator's questions (the names, after histogram suffixes).
    const covered = new Set([...fromDashboard].map((n) => servedMetric(n, types)));
    for (const name of [
      'skiplock_jobs_completed_total',
      'skiplock_job_wait_seconds',
      'skiplock_job_duration_seconds',
      'skiplock_queue_depth',
      'skiplock_queue_paused',
      'skiplock_lease_losses_total',
      'skiplock_notify_reconnects_total',
      'skiplock_reaper_jobs_total',
      'skiplock_pruned_jobs_total',
      'skiplock_schedule_lag_seconds',
      'skiplock_schedule_jobs_enqueued_total',
      'skiplock_oldest_transaction_age_seconds',
      'skiplock_table_dead_tuples',
      'skiplock_table_live_tuples',
      'skiplock_table_size_bytes',
    ]) {
      expect(covered.has(name), `dashboard shows ${name}`).toBe(true);
    }
    expect([...new Set([...fromRules].map((n) => servedMetric(n, types)))].sort()).toEqual(
      expect.arrayContaining([
        'skiplock_job_wait_seconds',
        'skiplock_jobs_completed_total',
        'skiplock_lease_losses_total',
        'skiplock_queue_depth',
        'skiplock_schedule_lag_seconds',
        'skiplock_oldest_transaction_age_seconds',
        'skiplock_table_dead_tuples',
        'skiplock_table_live_tuples',
      ]),
    );
  });

  it('the extraction catches a wrong name: a misspelled metric, a suffix on a non-histogram, a gauge taken for a histogram', () => {
    const types = servedTypes(scrape);
    const names = metricNames([
      'sum(rate(skiplock_jobs_complete_total[5m]))',
      'histogram_quantile(0.9, sum by (le) (rate(skiplock_job_wait_seconds_bucket[5m])))',
      'rate(skiplock_job_duration_seconds_count[5m]) + skiplock_nodejs_eventloop_lag_p99_seconds',
      'skiplock_queue_depth_bucket',
      'skiplock:jobs_completed:rate5m',
      'my_skiplock_thing',
    ]);
    expect([...names].sort()).toEqual([
      'skiplock_job_duration_seconds_count',
      'skiplock_job_wait_seconds_bucket',
      'skiplock_jobs_complete_total',
      'skiplock_nodejs_eventloop_lag_p99_seconds',
      'skiplock_queue_depth_bucket',
    ]);
    expect(unservedMetrics(names, types)).toEqual(['skiplock_jobs_complete_total', 'skiplock_queue_depth_bucket']);
    expect(servedMetric('skiplock_job_wait_seconds_bucket', types)).toBe('skiplock_job_wait_seconds');
  });

  it('the dashboard parses, has the datasource, job, queue and task variables, and every panel a datasource and a query', () => {
    const dashboard = JSON.parse(dashboardText) as Dashboard;
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    const vars = Object.fromEntries(dashboard.templating.list.map((v) => [v.name, v]));
    expect(vars.datasource).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const name of ['job', 'queue', 'task']) {
      expect(vars[name]?.type, `variable ${name}`).toBe('query');
      expect(vars[name]?.definition, `variable ${name}`).toMatch(/^label_values\(skiplock_[a-z_]+(\{[^}]*\})?, [a-z]+\)$/);
    }
    const panels = allPanels(dashboard.panels);
    // Rows only lay the panels out: they hold no query.
    const queried = panels.filter((p) => p.type !== 'row');
    expect(queried.length).toBeGreaterThan(20);
    for (const panel of queried) {
      expect(panel.datasource, `panel "${panel.title}" datasource`).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(panel.targets?.length ?? 0, `panel "${panel.title}" targets`).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) {
        expect(target.expr ?? '', `panel "${panel.title}" query`).toMatch(/skiplock_|up\{/);
        expect(target.datasource, `panel "${panel.title}" target datasource`).toEqual({ type: 'prometheus', uid: '${datasource}' });
      }
    }
    for (const panel of panels.filter((p) => p.type === 'row')) expect(panel.targets ?? []).toEqual([]);
  });

  // promtool ships with Prometheus (Debian package "prometheus"; .ci/run installs it).
  const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;
  describe.skipIf(!promtool)('with promtool', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'skiplock-deploy-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('every dashboard query is valid PromQL (variables substituted), checked as recording rules', () => {
      const exprs = dashboardQueries(JSON.parse(dashboardText) as Dashboard).filter((e) => !e.startsWith('label_values('));
      const substituted = exprs.map((e) => e.replaceAll('$__rate_interval', '5m').replace(/\$(job|queue|task)\b/g, '.*'));
      const rules = substituted.map((expr, i) => `      - record: dashboard:query_${i}\n        expr: ${JSON.stringify(expr)}\n`).join('');
      const file = path.join(dir, 'dashboard-rules.yml');
      writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${rules}`);
      const out = execFileSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
      expect(out).toContain(`SUCCESS: ${exprs.length} rules found`);
    });

    it('promtool checks the rules and passes their unit tests', () => {
      expect(execFileSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' })).toContain('SUCCESS');
      expect(execFileSync('promtool', ['test', 'rules', RULES_TESTS], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })).toContain('SUCCESS');
    });
  });
});
