import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../src/index.js';
import { useTestSchema } from './helpers/setup.js';
import { waitFor } from './helpers/wait.js';

// A real SDK with the in-memory exporter, registered for this file's process only (vitest
// runs each file in a worker of its own).
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const contextManager = new AsyncLocalStorageContextManager();

const { db, producer, workers } = useTestSchema('tracing', { max: 3 });
const S = `"${db.schema}"`;
const fast = { pollIntervalMs: 100, leaseMs: 5000, concurrency: 2, backoff: { baseMs: 10, maxMs: 10, jitter: 0 } };

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
  trace.setGlobalTracerProvider(provider);
});

afterAll(async () => {
  await provider.shutdown();
  trace.disable();
  context.disable();
});

const spans = (name: string): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.name === name);
const hex = (sc: { traceId: string; spanId: string }) => `${sc.traceId}-${sc.spanId}`;

describe('OpenTelemetry spans', () => {
  it('a PRODUCER span per enqueue call, its context stored on the job; a CONSUMER span per attempt linked to it', async () => {
    exporter.reset();
    const handlerSpans: Array<string | undefined> = [];
    await workers.start(
      {
        traced: async (_p, ctx) => {
          // The handler runs in the attempt's context: its own spans are children of it.
          handlerSpans.push(trace.getActiveSpan()?.spanContext().spanId);
          trace.getTracer('app').startSpan('handler work').end();
          if (ctx.job.attempt === 1) throw new Error('first attempt fails');
        },
      },
      { ...fast, queues: ['traces'] },
    );
    const { id } = await producer.enqueue('traced', { n: 1 }, { queue: 'traces' });
    await waitFor(async () => spans('process traces').length === 2 || undefined, 10_000, 'two attempt spans');

    const [send] = spans('send traces');
    expect(send).toBeDefined();
    expect(send!.kind).toBe(SpanKind.PRODUCER);
    expect(send!.attributes).toMatchObject({
      'messaging.system': 'skiplock',
      'messaging.operation.type': 'send',
      'messaging.destination.name': 'traces',
      'messaging.message.id': id,
      'skiplock.task': 'traced',
    });
    const [row] = await db.rows<{ traceparent: string }>(`SELECT traceparent FROM ${S}.jobs WHERE id = $1`, [id]);
    expect(row!.traceparent).toBe(`00-${hex(send!.spanContext())}-01`);

    const attempts = spans('process traces').sort((a, b) => Number(a.attributes['skiplock.attempt']) - Number(b.attributes['skiplock.attempt']));
    for (const [i, span] of attempts.entries()) {
      expect(span.kind).toBe(SpanKind.CONSUMER);
      expect(span.attributes).toMatchObject({ 'messaging.operation.type': 'process', 'messaging.message.id': id, 'skiplock.attempt': i + 1 });
      expect(span.links.map((l) => hex(l.context))).toEqual([hex(send!.spanContext())]);
    }
    expect(attempts[0]!.status.code).toBe(SpanStatusCode.ERROR);
    expect(attempts[0]!.status.message).toBe('first attempt fails');
    expect(attempts[1]!.status.code).toBe(SpanStatusCode.UNSET);
    expect(handlerSpans).toEqual(attempts.map((s) => s.spanContext().spanId));
    const work = spans('handler work');
    expect(work.map((s) => s.parentSpanContext?.spanId).sort()).toEqual(attempts.map((s) => s.spanContext().spanId).sort());
  });

  it('one span for a bulk enqueue, shared by its jobs; the enqueue span is a child of the caller\'s span', async () => {
    exporter.reset();
    const parent = trace.getTracer('app').startSpan('request');
    const ids = await context.with(trace.setSpan(context.active(), parent), () =>
      producer.enqueueMany([1, 2, 3].map((n) => ({ task: 'bulk', queue: 'traces-bulk', payload: { n } }))),
    );
    parent.end();
    const [send] = spans('send traces-bulk');
    expect(send!.attributes['messaging.batch.message_count']).toBe(3);
    expect(send!.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    const rows = await db.rows<{ traceparent: string }>(`SELECT traceparent FROM ${S}.jobs WHERE id = ANY($1)`, [ids.ids]);
    expect(new Set(rows.map((r) => r.traceparent))).toEqual(new Set([`00-${hex(send!.spanContext())}-01`]));
  });

  it('a failed enqueue ends its span with the error', async () => {
    exporter.reset();
    const broken = new Producer({ connectionString: 'postgres://postgres@127.0.0.1:1/nowhere', schema: db.schema, coalesce: false, handoff: false });
    await expect(broken.enqueue('x', {})).rejects.toThrow();
    await broken.close();
    const [send] = spans('send default');
    expect(send!.status.code).toBe(SpanStatusCode.ERROR);
  });

  it('tracing: false records nothing and stores no context', async () => {
    exporter.reset();
    const quiet = new Producer({ pool: db.pool, schema: db.schema, tracing: false });
    const { id } = await quiet.enqueue('quiet', {}, { queue: 'traces-off' });
    expect(exporter.getFinishedSpans()).toEqual([]);
    const [row] = await db.rows<{ traceparent: string | null }>(`SELECT traceparent FROM ${S}.jobs WHERE id = $1`, [id]);
    expect(row!.traceparent).toBeNull();
  });

  it('with no SDK registered, jobs carry no context', async () => {
    trace.disable();
    const plain = new Producer({ pool: db.pool, schema: db.schema });
    try {
      const { id } = await plain.enqueue('untraced', {}, { queue: 'traces-none' });
      const [row] = await db.rows<{ traceparent: string | null }>(`SELECT traceparent FROM ${S}.jobs WHERE id = $1`, [id]);
      expect(row!.traceparent).toBeNull();
    } finally {
      trace.setGlobalTracerProvider(provider);
    }
  });
});
