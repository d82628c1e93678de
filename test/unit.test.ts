import { describe, expect, it } from 'vitest';
import { parseDuration, parseInteger, validateName, validateSchema } from '../src/config.js';
import { parseNamedQueries, withSchema } from '../src/db/queries.js';
import { describeDbError } from '../src/db/pool.js';
import { redactSecrets } from '../src/errors.js';
import { normalizeJob } from '../src/producer/jobspec.js';
import { backoffDelay, resolveBackoff } from '../src/worker/backoff.js';
import { resolveWorkerOptions } from '../src/worker/options.js';

describe('durations and numbers', () => {
  it.each([
    ['1500', 1500],
    ['250ms', 250],
    ['30s', 30_000],
    ['1.5s', 1500],
    ['5m', 300_000],
    ['2h', 7_200_000],
    ['1d', 86_400_000],
  ])('parses %s', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', 'soon', '-5s', '5 minutes', '1e3', 's'])('rejects %j', (text) => expect(() => parseDuration(text)).toThrow(/invalid duration/));

  it('parses whole numbers within bounds only', () => {
    expect(parseInteger('-7', 'n', -10, 10)).toBe(-7);
    expect(() => parseInteger('1.5', 'n', 0, 10)).toThrow(/whole number/);
    expect(() => parseInteger('11', 'n', 0, 10)).toThrow(/from 0 to 10/);
  });
});

describe('names', () => {
  it('accepts plain schema names and rejects anything that would need quoting', () => {
    expect(validateSchema('skiplock_2')).toBe('skiplock_2');
    for (const bad of ['', 'Upper', '1abc', 'a-b', 'a"b', 'a;drop', 'x'.repeat(49)]) {
      expect(() => validateSchema(bad)).toThrow(/invalid schema name/);
    }
  });

  it('validates queue and task names; __proto__ is just a name', () => {
    expect(validateName('task', 'send-email.v2:eu')).toBe('send-email.v2:eu');
    expect(validateName('task', '__proto__')).toBe('__proto__');
    for (const bad of ['', 'a b', 'a/b', '-lead', 'x'.repeat(129), 'é']) {
      expect(() => validateName('queue', bad)).toThrow(/invalid queue name/);
    }
  });
});

describe('named queries', () => {
  it('splits -- name: blocks, drops comments and the final semicolon, and fills in the schema', () => {
    const parsed = parseNamedQueries('-- header\n-- name: one\n-- about one\nSELECT 1\nFROM {{schema}}.jobs;\n\n-- name: two\nSELECT 2;\n');
    expect([...parsed.keys()]).toEqual(['one', 'two']);
    expect(parsed.get('one')).toBe('SELECT 1\nFROM {{schema}}.jobs');
    expect(withSchema(parsed.get('one') ?? '', 'abc')).toBe('SELECT 1\nFROM "abc".jobs');
    expect(() => withSchema('x', 'bad"name')).toThrow();
  });
});

describe('job specs', () => {
  it('fills defaults', () => {
    expect(normalizeJob({ task: 't' })).toEqual({
      queue: 'default',
      task: 't',
      payload: '{}',
      priority: 0,
      runAt: null,
      delayMs: 0,
      maxAttempts: 25,
      dedupeKey: null,
      concurrencyKey: null,
      concurrencyLimit: null,
      timeoutMs: null,
      traceparent: null,
    });
  });

  it('rejects bad fields with a message naming them', () => {
    expect(() => normalizeJob({ task: 't', priority: 1.5 })).toThrow(/priority/);
    expect(() => normalizeJob({ task: 't', maxAttempts: 0 })).toThrow(/maxAttempts/);
    expect(() => normalizeJob({ task: 't', runAt: 'tomorrow' })).toThrow(/runAt/);
    expect(() => normalizeJob({ task: 't', runAt: new Date(), delay: 5 })).toThrow(/not both/);
    expect(() => normalizeJob({ task: 't', delay: -1 })).toThrow(/delay/);
    expect(() => normalizeJob({ task: 't', payload: { n: 1n } })).toThrow(/JSON/);
    expect(() => normalizeJob({ task: 't', payload: 'a\u0000b' })).toThrow(/u0000/);
    expect(() => normalizeJob({ task: 't', colour: 'red' } as never)).toThrow(/unknown job field "colour"/);
  });

  it('checks keys, limits, timeouts and the payload size', () => {
    expect(normalizeJob({ task: 't', concurrencyKey: 'k' }).concurrencyLimit).toBe(1);
    expect(normalizeJob({ task: 't', concurrencyKey: 'k', concurrencyLimit: 3 }).concurrencyLimit).toBe(3);
    expect(() => normalizeJob({ task: 't', concurrencyLimit: 3 })).toThrow(/needs a concurrencyKey/);
    expect(() => normalizeJob({ task: 't', concurrencyKey: 'k', concurrencyLimit: 0 })).toThrow(/concurrencyLimit/);
    expect(() => normalizeJob({ task: 't', dedupeKey: '' })).toThrow(/dedupeKey/);
    expect(normalizeJob({ task: 't', timeout: '30s' }).timeoutMs).toBe(30_000);
    expect(() => normalizeJob({ task: 't', timeout: 2 ** 31 })).toThrow(/timeout/);
    expect(() => normalizeJob({ task: 't', timeout: 0 })).toThrow(/timeout/);
    expect(() => normalizeJob({ task: 't', payload: 'x'.repeat(100) }, { maxPayloadBytes: 50 })).toThrow(/over the limit of 50/);
    expect(normalizeJob({ task: 't', payload: 'x'.repeat(40) }, { maxPayloadBytes: 50 }).payload).toHaveLength(42);
  });

  it('reads delays as durations', () => {
    expect(normalizeJob({ task: 't', delay: '5m' }).delayMs).toBe(300_000);
    expect(normalizeJob({ task: 't', runAt: '2030-01-01T00:00:00Z' }).runAt?.toISOString()).toBe('2030-01-01T00:00:00.000Z');
  });
});

describe('backoff', () => {
  const opts = resolveBackoff({ baseMs: 1000, maxMs: 60_000, jitter: 0.5 });

  it('doubles per attempt up to the cap, jitter adding at most its fraction', () => {
    expect(backoffDelay(1, opts, () => 0)).toBe(1000);
    expect(backoffDelay(2, opts, () => 0)).toBe(2000);
    expect(backoffDelay(5, opts, () => 0)).toBe(16_000);
    expect(backoffDelay(30, opts, () => 0)).toBe(60_000);
    expect(backoffDelay(1, opts, () => 0.999)).toBe(1500);
    expect(backoffDelay(1000, opts, () => 1)).toBe(90_000);
  });

  it('layers overrides and rejects nonsense', () => {
    expect(resolveBackoff({ baseMs: 10 }, { maxMs: 20 })).toEqual({ baseMs: 10, maxMs: 20, jitter: 0.25 });
    expect(() => resolveBackoff({ baseMs: 100, maxMs: 10 })).toThrow(/invalid backoff/);
    expect(() => resolveBackoff({ jitter: 2 })).toThrow(/invalid backoff/);
  });
});

describe('secrets', () => {
  it('redacts passwords from connection strings and key=value text', () => {
    expect(redactSecrets('postgres://bob:hunter2@db:5432/x failed')).toBe('postgres://bob:***@db:5432/x failed');
    expect(redactSecrets('password=hunter2 host=db')).toBe('password=*** host=db');
  });

  it('names the target of a failed connection without its password', () => {
    const err = Object.assign(new Error('password authentication failed for user "bob" (hunter2)'), { code: '28P01' });
    const described = describeDbError(err, 'postgres://bob:hunter2@db.example:6543/app');
    expect(described.message).toContain('cannot connect to PostgreSQL at db.example:6543/app');
    expect(described.message).not.toContain('hunter2');
  });
});

describe('worker options', () => {
  const tasks = { t: () => undefined };

  it('fills in the defaults: a buffer ceiling of 1,000, or 10 per slot when more', () => {
    expect(resolveWorkerOptions({ tasks }).prefetch).toBe(1000);
    expect(resolveWorkerOptions({ tasks, concurrency: 500 }).prefetch).toBe(5000);
    expect(resolveWorkerOptions({ tasks, prefetch: 0 }).prefetch).toBe(0);
    const config = resolveWorkerOptions({ tasks, leaseMs: 9000 });
    expect(config).toMatchObject({ concurrency: 10, leaseMs: 9000, heartbeatMs: 3000, maxBufferedSilenceMs: 6000, handoff: true, poolSize: 14 });
  });

  it('refuses bad settings before anything starts', () => {
    expect(() => resolveWorkerOptions({ tasks: {} })).toThrow(/at least one task/);
    expect(() => resolveWorkerOptions({ tasks, heartbeatIntervalMs: 30_000 })).toThrow(/heartbeat/);
    expect(() => resolveWorkerOptions({ tasks: { t: { handler: () => undefined, options: { timeoutMs: 60_000 } } } })).toThrow(/shorter than task t/);
    expect(() => resolveWorkerOptions({ tasks, queues: [] })).toThrow(/queues must not be empty/);
  });
});
