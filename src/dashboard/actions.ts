import type { Logger } from '../observability/logger.js';
import { type BulkAction, actingStatuses } from '../admin/jobs.js';
import { UnknownQueueError } from '../admin/queues.js';
import { SkiplockError } from '../errors.js';
import { UnknownScheduleError } from '../producer/schedules.js';
import { HttpError, bulkAction, describeFilter, filterForm, filterOf, filterParams, jobId, nameOf } from './filter.js';
import { type Api, type Outcome, backTo } from './routes.js';

const PAST: Record<BulkAction, string> = { retry: 'requeued', cancel: 'cancelled', delete: 'deleted' };
const FROM: Record<BulkAction, string> = { retry: 'failed or cancelled', cancel: 'queued or running', delete: 'not running' };

/** Who asked, for the log line of an action. */
export interface Actor {
  readonly remote: string | undefined;
}

/**
 * The POST actions: each changes what it names, logs `dashboard action` (info) with what it
 * did and how many jobs changed, and redirects back (303) with a flash message. A refusal of
 * the library that is no fault of the database (a dedupe key held, a job in another status)
 * is a flash message too; a bad id or filter is a 400, an unknown queue or schedule a 404.
 */
export async function act(api: Api, logger: Logger, actor: Actor, path: string, form: URLSearchParams): Promise<Outcome | undefined> {
  const log = (fields: Record<string, unknown>): void => logger.info({ ...fields, remote: actor.remote }, 'dashboard action');

  const one = /^\/jobs\/([^/]+)\/(retry|cancel|delete)$/.exec(path);
  if (one !== null) {
    const id = jobId(one[1]!);
    const action = bulkAction(one[2]!);
    let result: { changed: boolean; previous: string | undefined };
    try {
      result = action === 'delete' ? await api.jobs.delete(id) : action === 'retry' ? await api.producer.retry(id) : await api.producer.cancel(id);
    } catch (err) {
      if (err instanceof SkiplockError && err.cause === undefined) return backTo(`/jobs/${id}`, {}, err.message, true);
      throw err;
    }
    log({ action, jobId: id, previous: result.previous ?? null, changed: result.changed ? 1 : 0 });
    if (result.previous === undefined) return backTo('/jobs', {}, `no job ${id}`, true);
    if (!result.changed) return backTo(`/jobs/${id}`, {}, `job ${id} not ${PAST[action]}: it is ${result.previous} (only ${FROM[action]} jobs can be)`, true);
    if (action === 'delete') return backTo('/jobs', {}, `job ${id} deleted (was ${result.previous})`);
    return backTo(`/jobs/${id}`, {}, `job ${id} ${PAST[action]} (was ${result.previous})`);
  }

  if (path === '/jobs/bulk') {
    const action = bulkAction(form.get('action'));
    const fields = filterForm(form);
    const filter = filterOf(fields);
    const what = describeFilter(actingStatuses(action, filter), filter);
    const { matched, changed } = await api.jobs.bulk(action, filter);
    log({ action, filter, matched, changed });
    const skipped = matched - changed;
    return backTo(
      '/jobs',
      filterParams(fields),
      `${PAST[action]} ${changed} ${what}${skipped > 0 ? ` (${skipped} of the ${matched} matched had moved on${action === 'retry' ? ' or their dedupe key was held' : ''})` : ''}`,
    );
  }

  const queue = /^\/queues\/([^/]+)\/(pause|resume)$/.exec(path);
  if (queue !== null) {
    const name = nameOf('queue', decode(queue[1]!));
    const pause = queue[2] === 'pause';
    try {
      const settings = pause ? await api.queues.pause(name) : await api.queues.resume(name);
      log({ action: pause ? 'pause-queue' : 'resume-queue', queue: name, paused: settings.paused });
    } catch (err) {
      if (err instanceof UnknownQueueError) throw new HttpError(404, `unknown queue ${JSON.stringify(name)}: it has no jobs and no settings`);
      throw err;
    }
    return backTo('/', {}, `queue ${name} ${pause ? 'paused' : 'resumed'}`);
  }

  const schedule = /^\/schedules\/([^/]+)\/(pause|resume)$/.exec(path);
  if (schedule !== null) {
    const name = nameOf('schedule', decode(schedule[1]!));
    const pause = schedule[2] === 'pause';
    try {
      const info = pause ? await api.producer.pauseSchedule(name) : await api.producer.resumeSchedule(name);
      log({ action: pause ? 'pause-schedule' : 'resume-schedule', schedule: name, paused: info.paused });
    } catch (err) {
      if (err instanceof UnknownScheduleError) throw new HttpError(404, `unknown schedule ${JSON.stringify(name)}`);
      throw err;
    }
    return backTo('/schedules', {}, `schedule ${name} ${pause ? 'paused' : 'resumed'}`);
  }
  return undefined;
}

/** A path segment as text; a malformed escape is a 400. */
function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, `malformed path segment ${JSON.stringify(segment)}`);
  }
}
