import { type BulkAction, JOB_STATUSES, type JobFilter, checkFilter } from '../admin/jobs.js';
import { formatSpan } from '../admin/why.js';
import { parseDuration, validateName } from '../config.js';
import { SkiplockError } from '../errors.js';
import type { JobStatus } from '../job.js';

/** A request the dashboard cannot act on: a page with the status and the message. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Runs a check of the library; its SkiplockError becomes a 400 with the same message. */
export function badInput<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof SkiplockError) throw new HttpError(400, err.message);
    throw err;
  }
}

/** The job list's filter as its form sends it (the CLI's filter options, named alike). */
export interface FilterForm {
  readonly status: readonly string[];
  readonly queue: string;
  readonly task: string;
  readonly schedule: string;
  readonly olderThan: string;
}

/** The form fields of a query or a POST body (`status` may repeat or be comma-separated). */
export function filterForm(params: URLSearchParams): FilterForm {
  const text = (name: string): string => (params.get(name) ?? '').trim();
  return {
    status: [...new Set(params.getAll('status').flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== ''))],
    queue: text('queue'),
    task: text('task'),
    schedule: text('schedule'),
    olderThan: text('older_than'),
  };
}

/** The filter a form names; bad values are a 400 with the library's message. */
export function filterOf(form: FilterForm): JobFilter {
  return badInput(() => {
    const filter: { -readonly [K in keyof JobFilter]: JobFilter[K] } = {};
    if (form.status.length > 0) filter.statuses = form.status as JobStatus[];
    if (form.queue !== '') filter.queue = form.queue;
    if (form.task !== '') filter.task = form.task;
    if (form.schedule !== '') filter.schedule = form.schedule;
    if (form.olderThan !== '') filter.olderThanMs = parseDuration(form.olderThan, 'age (older than)');
    return checkFilter(filter);
  });
}

/** The form's fields as query parameters (for links that keep the filter). */
export function filterParams(form: FilterForm): Record<string, string | readonly string[]> {
  return { status: form.status, queue: form.queue, task: form.task, schedule: form.schedule, older_than: form.olderThan };
}

export const BULK_ACTIONS: readonly BulkAction[] = ['retry', 'cancel', 'delete'];

export function bulkAction(text: string | null): BulkAction {
  const action = BULK_ACTIONS.find((a) => a === text);
  if (action === undefined) throw new HttpError(400, `invalid action ${JSON.stringify(text ?? '')}: expected retry, cancel or delete`);
  return action;
}

/** A job id from a path; a bad one is a 400. */
export function jobId(text: string): string {
  if (!/^\d{1,19}$/.test(text)) throw new HttpError(400, `invalid job id ${JSON.stringify(text)}: expected a whole number`);
  return text;
}

/** A queue or schedule name from a path; a bad one is a 400. */
export function nameOf(what: 'queue' | 'schedule', text: string): string {
  return badInput(() => validateName(what, text));
}

/** The filter in words: "failed or cancelled jobs of queue emails". */
export function describeFilter(statuses: readonly string[], f: JobFilter): string {
  const parts = [statuses.length > 0 ? `${statuses.join(' or ')} jobs` : 'jobs'];
  if (f.queue !== undefined) parts.push(`of queue ${f.queue}`);
  if (f.task !== undefined) parts.push(`of task ${f.task}`);
  if (f.schedule !== undefined) parts.push(`of schedule ${f.schedule}`);
  if (f.olderThanMs !== undefined) parts.push(`created more than ${formatSpan(f.olderThanMs)} ago`);
  return parts.join(' ');
}

export { JOB_STATUSES };
