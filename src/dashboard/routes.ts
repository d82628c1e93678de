import { type Jobs, actingStatuses } from '../admin/jobs.js';
import type { Queues } from '../admin/queues.js';
import type { Producer } from '../producer/producer.js';
import { HttpError, bulkAction, describeFilter, filterForm, filterOf, jobId } from './filter.js';
import { type Html, localUrl } from './html.js';
import { bulkConfirmPage, jobDetailPage, jobListPage } from './jobpages.js';
import type { View } from './layout.js';
import { overviewPage, schedulesPage } from './pages.js';

/** The library's objects the dashboard works through (the public API only). */
export interface Api {
  readonly jobs: Jobs;
  readonly queues: Queues;
  readonly producer: Producer;
}

/** What a request ends in: a page, or a redirect (303, after a POST). */
export type Outcome = { readonly status: number; readonly page: Html } | { readonly redirect: string };

/** The jobs of one list page. */
export const PAGE_SIZE = 50;

/** A 303 target: a local path with parameters and a flash message. */
export function backTo(path: string, params: Readonly<Record<string, string | readonly string[]>>, flash: string, error = false): Outcome {
  return { redirect: localUrl(path, { ...params, flash: flash.slice(0, 500), ...(error && { flash_error: '1' }) }) };
}

/** The GET pages: `path` is the URL's path, `query` its parameters. undefined: no such page. */
export async function page(api: Api, view: View, path: string, query: URLSearchParams): Promise<Outcome | undefined> {
  if (path === '/') {
    const [queues, stats, workers] = await Promise.all([api.queues.list(), api.jobs.stats(), api.jobs.workers()]);
    return { status: 200, page: overviewPage(view, { queues, stats, workers }) };
  }
  if (path === '/jobs') {
    const form = filterForm(query);
    const filter = filterOf(form);
    const after = query.get('after') ?? undefined;
    if (after !== undefined && !/^\d{1,19}$/.test(after)) throw new HttpError(400, `invalid cursor ${JSON.stringify(after)}: expected the "Older" link of a previous page`);
    const list = await api.jobs.list(filter, { limit: PAGE_SIZE, ...(after !== undefined && { after }) });
    return { status: 200, page: jobListPage(view, form, after, list) };
  }
  if (path === '/jobs/bulk') {
    if (view.readOnly) throw new HttpError(403, 'read-only dashboard: actions are off');
    const action = bulkAction(query.get('action'));
    const form = filterForm(query);
    const filter = filterOf(form);
    const { matched } = await api.jobs.bulk(action, filter, { dryRun: true });
    return { status: 200, page: bulkConfirmPage(view, action, form, describeFilter(actingStatuses(action, filter), filter), matched) };
  }
  const job = /^\/jobs\/([^/]+)$/.exec(path);
  if (job !== null) {
    const id = jobId(job[1]!);
    const [record, why] = await Promise.all([api.jobs.get(id), api.jobs.why(id)]);
    if (record === undefined) throw new HttpError(404, `no job ${id} (it may have been deleted or pruned)`);
    return { status: 200, page: jobDetailPage(view, record, why) };
  }
  if (path === '/schedules') {
    return { status: 200, page: schedulesPage(view, await api.producer.listSchedules()) };
  }
  return undefined;
}
