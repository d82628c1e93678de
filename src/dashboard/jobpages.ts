import type { BulkAction, Diagnosis, JobPage, JobSummary } from '../admin/jobs.js';
import type { JobRecord, JobStatus } from '../job.js';
import { type FilterForm, JOB_STATUSES, filterParams } from './filter.js';
import { type Html, html, localUrl } from './html.js';
import { type View, badge, empty, layout, oneLine, postButton, span, time, when } from './layout.js';

const VERB: Record<BulkAction, string> = { retry: 'Retry', cancel: 'Cancel', delete: 'Delete' };

/** Which single-job actions apply to a job in a status (the library's transitions). */
export function actionsFor(status: JobStatus): BulkAction[] {
  const out: BulkAction[] = [];
  if (status === 'failed' || status === 'cancelled') out.push('retry');
  if (status === 'queued' || status === 'running') out.push('cancel');
  if (status !== 'running') out.push('delete');
  return out;
}

function filterFormHtml(form: FilterForm): Html {
  return html`<form class="filters" method="get" action="/jobs">
<fieldset><legend>Status</legend>${JOB_STATUSES.map(
    (s) => html`<label><input type="checkbox" name="status" value="${s}"${form.status.includes(s) ? html` checked` : html``}> ${s}</label>`,
  )}</fieldset>
<label>Queue <input type="text" name="queue" value="${form.queue}"></label>
<label>Task <input type="text" name="task" value="${form.task}"></label>
<label>Schedule <input type="text" name="schedule" value="${form.schedule}"></label>
<label>Older than <input type="text" name="older_than" value="${form.olderThan}" placeholder="30s, 5m, 1h, 7d"></label>
<div class="actions"><button type="submit" class="primary">Filter</button><a class="button" href="/jobs">Clear</a></div>
</form>`;
}

function jobRow(view: View, j: JobSummary): Html {
  const due = j.status === 'queued' && j.run_at.getTime() > view.now;
  return html`<tr data-job="${j.id}">
<td class="num"><a href="/jobs/${j.id}">${j.id}</a></td><td>${badge(j.status)}</td><td>${j.queue}</td><td>${j.task}</td>
<td class="num">${j.attempts}/${j.max_attempts}</td><td>${when(view, j.created_at)}</td><td>${due ? when(view, j.run_at) : html`<span class="muted">-</span>`}</td>
<td class="error">${oneLine(j.last_error)}</td>
</tr>`;
}

export function jobListPage(view: View, form: FilterForm, after: string | undefined, page: JobPage): Html {
  const params = filterParams(form);
  const table =
    page.jobs.length === 0
      ? empty(after === undefined ? 'No jobs match.' : 'No more jobs.')
      : html`<table data-table="jobs"><thead><tr><th class="num">ID</th><th>Status</th><th>Queue</th><th>Task</th><th class="num">Attempts</th><th>Created</th><th>Runs</th><th>Last error</th></tr></thead>
<tbody>${page.jobs.map((j) => jobRow(view, j))}</tbody></table>`;
  const pager = html`<div class="pager">${after !== undefined && html`<a href="${localUrl('/jobs', params)}">« Newest</a>`}${
    page.next !== null && html`<a data-link="older" href="${localUrl('/jobs', { ...params, after: page.next })}">Older »</a>`
  }</div>`;
  const bulk = !view.readOnly && html`<section class="card"><h2>Act on every job of this filter</h2><div class="actions">${(['retry', 'cancel', 'delete'] as const).map(
    (a) => html`<a class="button" data-bulk="${a}" href="${localUrl('/jobs/bulk', { ...params, action: a })}">${VERB[a]} all matching…</a>`,
  )}<span class="muted">Each shows how many jobs it would change and asks first.</span></div></section>`;
  return layout(
    view,
    'Jobs',
    '/jobs',
    html`<h1>Jobs</h1><section class="card">${filterFormHtml(form)}</section>
<section class="card">${table}${pager}</section>${bulk}`,
  );
}

/** The confirmation of a bulk action: the dry-run count and one button that does it. */
export function bulkConfirmPage(view: View, action: BulkAction, form: FilterForm, what: string, matched: number): Html {
  const params = filterParams(form);
  const button =
    matched === 0
      ? html`<p>Nothing to do.</p>`
      : postButton(view, '/jobs/bulk', `${VERB[action]} ${matched} job${matched === 1 ? '' : 's'}`, {
          danger: action !== 'retry',
          primary: action === 'retry',
          fields: { ...params, action },
          testId: `confirm-${action}`,
        });
  return layout(
    view,
    `${VERB[action]} jobs`,
    '/jobs',
    html`<section class="card"><h1>${VERB[action]} every matching job?</h1>
<p>This would ${action} <strong data-count>${matched}</strong> ${what} (counted now; jobs that change status meanwhile are left as they are).</p>
<div class="actions">${button}<a class="button" href="${localUrl('/jobs', params)}">Back to the list</a></div></section>`,
  );
}

function field(label: string, value: Html | string | number | null): Html {
  return html`<dt>${label}</dt><dd>${value === null || value === '' ? html`<span class="muted">-</span>` : value}</dd>`;
}

function attemptsTable(job: JobRecord): Html {
  if (job.attempt_history.length === 0) return empty('No attempt yet.');
  return html`<table data-table="attempts"><thead><tr><th class="num">Attempt</th><th>Worker</th><th>Started</th><th>Ended</th><th class="num">Took</th><th>Outcome</th><th>Error</th><th>Due again</th></tr></thead>
<tbody>${job.attempt_history.map((a) => {
    const took = a.started_at !== null && a.ended_at !== null ? new Date(a.ended_at).getTime() - new Date(a.started_at).getTime() : null;
    const kind = a.outcome === 'succeeded' ? 'succeeded' : a.outcome === 'running' ? 'running' : a.outcome === 'cancelled' ? 'cancelled' : 'failed';
    return html`<tr><td class="num">${a.attempt}</td><td class="mono">${a.worker ?? '-'}</td><td class="nowrap">${time(a.started_at)}</td><td class="nowrap">${time(a.ended_at)}</td><td class="num nowrap">${span(took)}</td>
<td>${badge(kind, a.outcome.replace('_', ' '))}</td><td class="error"><div class="errtext">${a.error ?? ''}</div></td><td class="nowrap">${time(a.retry_at)}</td></tr>`;
  })}</tbody></table>`;
}

export function jobDetailPage(view: View, job: JobRecord, why: Diagnosis | undefined): Html {
  const buttons = actionsFor(job.status).map((a) => postButton(view, `/jobs/${job.id}/${a}`, VERB[a], { danger: a !== 'retry', primary: a === 'retry' }));
  const payload = JSON.stringify(job.payload, null, 2) ?? 'null';
  const schedule =
    job.schedule_name === null ? null : html`<a href="${localUrl('/jobs', { schedule: job.schedule_name })}">${job.schedule_name}</a> <span class="muted">slot ${time(job.schedule_slot)}</span>`;
  return layout(
    view,
    `Job ${job.id}`,
    '/jobs',
    html`<h1>Job <span class="mono">${job.id}</span> ${badge(job.status)} <span class="muted">${job.task} in ${job.queue}</span> <span class="actions">${buttons}</span></h1>
${why !== undefined && html`<p class="why" data-why="${why.reason}"><strong>Why ${job.status}:</strong> ${why.message}</p>`}
<section class="card"><h2>Fields</h2><dl class="fields">
${field('ID', job.id)}${field('Status', badge(job.status))}
${field('Queue', html`<a href="${localUrl('/jobs', { queue: job.queue })}">${job.queue}</a>`)}${field('Task', job.task)}
${field('Priority', job.priority)}${field('Attempts', `${job.attempts} of ${job.max_attempts}`)}
${field('Created', time(job.created_at))}${field('Run at', time(job.run_at))}
${field('Started', time(job.started_at))}${field('Finished', time(job.finished_at))}
${field('Lease expires', time(job.lease_expires_at))}${field('Locked by', job.locked_by)}
${field('Dedupe key', job.dedupe_key)}${field('Concurrency key', job.concurrency_key === null ? null : `${job.concurrency_key} (limit ${job.concurrency_limit ?? 1})`)}
${field('Timeout', job.timeout_ms === null ? null : span(job.timeout_ms))}${field('Schedule', schedule)}
</dl></section>
<div class="grid2">
<section class="card"><h2>Payload</h2><pre data-payload>${payload}</pre></section>
<section class="card"><h2>Last error</h2>${job.last_error === null ? empty('None.') : html`<pre class="error" data-last-error>${job.last_error}</pre>`}</section>
</div>
<section class="card"><h2>Attempt history</h2>${attemptsTable(job)}</section>`,
  );
}
