import { createRequire } from 'node:module';
import type * as OtelApi from '@opentelemetry/api';
import type { ClaimedJob } from '../job.js';
import { VERSION } from '../version.js';

type Api = typeof OtelApi;

/**
 * The OpenTelemetry API when the application can load it (it is an optional peer; prom-client
 * also brings it), else undefined: then tracing costs nothing at all. Loaded once per Producer
 * or Worker, never per job. The API keeps its registered provider in a process-wide global,
 * so this copy and the application's see the same SDK.
 */
function loadApi(): Api | undefined {
  try {
    return createRequire(import.meta.url)('@opentelemetry/api') as Api;
  } catch {
    return undefined;
  }
}

/** The messaging system name on skiplock's spans (messaging.system). */
const SYSTEM = 'skiplock';
const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** An enqueue call's span: its context goes on the jobs it inserts (jobs.traceparent). */
export interface EnqueueSpan {
  /** W3C traceparent of the span, stored with each job of the call. */
  readonly traceparent: string;
  /** Ends the span: the jobs' ids on success, the error on failure. */
  end(result: { ids: readonly string[] } | { error: unknown }): void;
}

/** One attempt's span: open while its handler runs. */
export interface AttemptSpan {
  /** Runs fn with the span as the active context (spans the handler makes are its children). */
  within<T>(fn: () => T): T;
  end(outcome: { ok: true } | { ok: false; error: unknown }): void;
}

/**
 * Spans for enqueues and attempts, following OpenTelemetry's messaging conventions: a
 * PRODUCER span `send <queue>` per enqueue call (`messaging.batch.message_count` for a bulk
 * call), a CONSUMER span `process <queue>` per attempt, linked to the span of the enqueue
 * that made the job through the W3C trace context stored on the job. With no SDK registered
 * the API's spans do not record, and nothing is stored or linked.
 */
export class Tracing {
  private readonly tracer: OtelApi.Tracer;

  private constructor(private readonly api: Api) {
    this.tracer = api.trace.getTracer('skiplock', VERSION);
  }

  /** Tracing when enabled and the API can be loaded; undefined otherwise (no cost). */
  static create(enabled: boolean): Tracing | undefined {
    if (!enabled) return undefined;
    const api = loadApi();
    return api === undefined ? undefined : new Tracing(api);
  }

  /** A span for an enqueue call of `count` jobs to `queue` (the first job's, for a bulk call of several queues). */
  startEnqueue(queue: string, task: string, count: number): EnqueueSpan | undefined {
    const { api } = this;
    const attributes: OtelApi.Attributes = {
      'messaging.system': SYSTEM,
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'send',
      'messaging.destination.name': queue,
      'skiplock.task': task,
    };
    if (count > 1) attributes['messaging.batch.message_count'] = count;
    const span = this.tracer.startSpan(`send ${queue}`, { kind: api.SpanKind.PRODUCER, attributes });
    if (!span.isRecording()) {
      span.end();
      return undefined;
    }
    const sc = span.spanContext();
    const traceparent = `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
    return {
      traceparent,
      end: (result) => {
        if ('error' in result) {
          span.recordException(result.error instanceof Error ? result.error : String(result.error));
          span.setStatus({ code: api.SpanStatusCode.ERROR, message: errorText(result.error) });
        } else if (result.ids.length === 1) {
          span.setAttribute('messaging.message.id', result.ids[0]!);
        }
        span.end();
      },
    };
  }

  /** A span for one attempt of a claimed job, linked to its enqueue's span when the job has one. */
  startAttempt(job: ClaimedJob): AttemptSpan | undefined {
    const { api } = this;
    const links: OtelApi.Link[] = [];
    const parsed = job.traceparent === null ? null : TRACEPARENT_RE.exec(job.traceparent);
    if (parsed) links.push({ context: { traceId: parsed[1]!, spanId: parsed[2]!, traceFlags: Number.parseInt(parsed[3]!, 16), isRemote: true } });
    const span = this.tracer.startSpan(`process ${job.queue}`, {
      kind: api.SpanKind.CONSUMER,
      links,
      attributes: {
        'messaging.system': SYSTEM,
        'messaging.operation.type': 'process',
        'messaging.operation.name': 'process',
        'messaging.destination.name': job.queue,
        'messaging.message.id': job.id,
        'skiplock.task': job.task,
        'skiplock.attempt': job.attempt,
      },
    });
    if (!span.isRecording()) {
      span.end();
      return undefined;
    }
    return {
      within: (fn) => api.context.with(api.trace.setSpan(api.context.active(), span), fn),
      end: (outcome) => {
        if (!outcome.ok) {
          span.recordException(outcome.error instanceof Error ? outcome.error : String(outcome.error));
          span.setStatus({ code: api.SpanStatusCode.ERROR, message: errorText(outcome.error) });
        }
        span.end();
      },
    };
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
