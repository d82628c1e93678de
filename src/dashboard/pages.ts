import type { TaskStats, WorkerInfo } from '../admin/jobs.js';
import type { QueueInfo } from '../admin/queues.js';
import { formatRateLimit } from '../config.js';
import type { ScheduleInfo } from '../producer/schedules.js';
import { type Html, html, localUrl } from './html.js';
import { type View, badge, empty, layout, postButton, span, time, when } from './layout.js';

/** A count that links to the job list of that queue (and status), "0" plain. */
function countLink(n: number, params: Record<string, string>): Html {
  return n === 0 ? html`<span class="muted">0</span>` : html`<a href="${localUrl('/jobs', params)}">${n}</a>`;
}

function queuesTable(view: View, queues: readonly QueueInfo[]): Html {
  if (queues.length === 0) return empty('No queues yet: a queue appears with its first job (or its first setting).');
  return html`<table data-table="queues">
<thead><tr><th>Queue</th><th>State</th><th class="num">Queued</th><th class="num">Scheduled</th><th class="num">Running</th><th class="num">Succeeded</th><th class="num">Failed</th><th class="num">Cancelled</th><th class="num">Oldest wait</th><th>Concurrency limit</th><th>Rate limit</th>${!view.readOnly && html`<th></th>`}</tr></thead>
<tbody>${queues.map(
    (q) => html`<tr data-queue="${q.name}">
<td><a href="${localUrl('/jobs', { queue: q.name })}">${q.name}</a></td>
<td>${q.paused ? badge('paused') : badge('active')}</td>
<td class="num">${countLink(q.queued, { queue: q.name, status: 'queued' })}</td>
<td class="num">${q.scheduled}</td>
<td class="num">${countLink(q.running, { queue: q.name, status: 'running' })}</td>
<td class="num">${countLink(q.succeeded, { queue: q.name, status: 'succeeded' })}</td>
<td class="num">${countLink(q.failed, { queue: q.name, status: 'failed' })}</td>
<td class="num">${countLink(q.cancelled, { queue: q.name, status: 'cancelled' })}</td>
<td class="num">${span(q.oldestWaitMs)}</td>
<td>${q.concurrencyLimit ?? '-'}</td>
<td>${q.rateLimit === null ? '-' : formatRateLimit(q.rateLimit)}</td>
${!view.readOnly && html`<td>${q.paused ? postButton(view, `/queues/${encodeURIComponent(q.name)}/resume`, 'Resume', { primary: true }) : postButton(view, `/queues/${encodeURIComponent(q.name)}/pause`, 'Pause')}</td>`}
</tr>`,
  )}</tbody></table>`;
}

function statsTable(stats: readonly TaskStats[]): Html {
  if (stats.length === 0) return empty('No jobs yet.');
  return html`<table data-table="stats">
<thead><tr><th>Queue</th><th>Task</th><th class="num">Queued</th><th class="num">Running</th><th class="num">Done 1m</th><th class="num">Done 1h</th><th class="num">Failed 1m</th><th class="num">Failed 1h</th><th class="num">Errors 1h</th><th class="num">Failed (all)</th><th class="num">Wait p50</th><th class="num">p95</th><th class="num">p99</th><th class="num">Oldest wait</th></tr></thead>
<tbody>${stats.map(
    (s) => html`<tr>
<td>${s.queue}</td><td><a href="${localUrl('/jobs', { queue: s.queue, task: s.task })}">${s.task}</a></td>
<td class="num">${s.queued}</td><td class="num">${s.running}</td>
<td class="num">${s.succeeded_1m}</td><td class="num">${s.succeeded_1h}</td>
<td class="num">${s.failed_1m}</td><td class="num">${s.failed_1h}</td><td class="num">${s.errors_1h}</td>
<td class="num">${countLink(s.failed, { queue: s.queue, task: s.task, status: 'failed' })}</td>
<td class="num">${span(s.wait_p50_ms)}</td><td class="num">${span(s.wait_p95_ms)}</td><td class="num">${span(s.wait_p99_ms)}</td>
<td class="num">${span(s.oldest_wait_ms)}</td>
</tr>`,
  )}</tbody></table>`;
}

function workersTable(view: View, workers: readonly WorkerInfo[]): Html {
  if (workers.length === 0) return empty('No worker has reported in.');
  return html`<table data-table="workers">
<thead><tr><th>Worker</th><th>State</th><th>Host</th><th class="num">PID</th><th>Version</th><th>Queues</th><th>Tasks</th><th class="num">Running</th><th class="num">Concurrency</th><th>Started</th><th>Last seen</th></tr></thead>
<tbody>${workers.map(
    (w) => html`<tr>
<td class="mono">${w.id}</td><td>${w.alive ? badge('alive') : badge('dead', 'gone')}</td><td>${w.host}</td><td class="num">${w.pid}</td><td>${w.version}</td>
<td>${w.queues === null ? html`<span class="muted">all</span>` : w.queues.join(', ')}</td><td>${w.tasks.join(', ')}</td>
<td class="num">${w.running}</td><td class="num">${w.concurrency}</td><td>${when(view, w.started_at)}</td><td>${when(view, w.seen_at)}</td>
</tr>`,
  )}</tbody></table>`;
}

export function overviewPage(view: View, data: { queues: readonly QueueInfo[]; stats: readonly TaskStats[]; workers: readonly WorkerInfo[] }): Html {
  const live = data.workers.filter((w) => w.alive).length;
  return layout(
    view,
    'Overview',
    '/',
    html`<h1>Overview</h1>
<section class="card"><h2>Queues</h2>${queuesTable(view, data.queues)}</section>
<section class="card"><h2>Tasks <span class="muted">throughput, failures and wait (time from due to start) percentiles, last hour</span></h2>${statsTable(data.stats)}</section>
<section class="card"><h2>Workers <span class="muted">${live} live</span></h2>${workersTable(view, data.workers)}</section>`,
  );
}

export function schedulesPage(view: View, schedules: readonly ScheduleInfo[]): Html {
  const body =
    schedules.length === 0
      ? empty('No schedules: define one with producer.schedule(), `skiplock schedules set`, or a task file\'s `export const schedule`.')
      : html`<table data-table="schedules">
<thead><tr><th>Name</th><th>Cron</th><th>Zone</th><th>Task</th><th>Queue</th><th>State</th><th>Catch-up</th><th>Next slot</th><th>Last slot</th><th>Last enqueued</th>${!view.readOnly && html`<th></th>`}</tr></thead>
<tbody>${schedules.map(
          (s) => html`<tr data-schedule="${s.name}">
<td><a href="${localUrl('/jobs', { schedule: s.name })}">${s.name}</a></td><td class="mono">${s.cron}</td><td>${s.timezone}</td><td>${s.task}</td><td>${s.queue}</td>
<td>${s.paused ? badge('paused') : badge('active')}</td><td>${s.catchUp}</td>
<td>${s.paused ? html`<span class="muted">-</span>` : time(s.nextSlot)}</td><td>${time(s.lastSlot)}</td><td>${when(view, s.lastEnqueuedAt)}</td>
${!view.readOnly && html`<td>${s.paused ? postButton(view, `/schedules/${encodeURIComponent(s.name)}/resume`, 'Resume', { primary: true }) : postButton(view, `/schedules/${encodeURIComponent(s.name)}/pause`, 'Pause')}</td>`}
</tr>`,
        )}</tbody></table>`;
  return layout(view, 'Schedules', '/schedules', html`<h1>Schedules</h1><section class="card">${body}</section>`);
}

/** The login form (with an auth token): posts the token, which sets the login cookie. */
export function loginPage(view: View, next: string, failed: boolean): Html {
  return layout(
    { ...view, flash: failed ? { text: 'That is not the token.', error: true } : view.flash },
    'Log in',
    '',
    html`<section class="card login"><h1>Log in</h1>
<p class="muted">This dashboard needs its auth token (the <span class="mono">--auth-token</span> it was started with).</p>
<form method="post" action="/login"><input type="hidden" name="_csrf" value="${view.csrf}"><input type="hidden" name="next" value="${next}">
<label>Token <input type="password" name="token" autocomplete="current-password" autofocus required></label>
<button type="submit" class="primary">Log in</button></form></section>`,
  );
}

/** A page for a request that failed: its status and one line. */
export function errorPage(view: View, status: number, message: string): Html {
  const title = status === 400 ? 'Bad request' : status === 403 ? 'Forbidden' : status === 404 ? 'Not found' : status === 405 ? 'Method not allowed' : 'Error';
  return layout(view, title, '', html`<section class="card"><h1>${status} ${title}</h1><p data-error>${message}</p><p><a href="/">Back to the overview</a></p></section>`);
}
