import { DEFAULT_QUEUE, MAX_TIMER_MS, checkInteger, parseDuration, validateName } from '../config.js';
import { SkiplockError, errorMessage } from '../errors.js';
import type { JobSpec, NormalizedJob } from '../job.js';

export const DEFAULT_MAX_ATTEMPTS = 25;
/** Default cap on a payload's JSON size (1 MiB). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024;
const INT32_MAX = 2_147_483_647;
const MAX_KEY_LENGTH = 512;

const KNOWN_FIELDS = new Set([
  'task',
  'payload',
  'queue',
  'priority',
  'runAt',
  'delay',
  'maxAttempts',
  'dedupeKey',
  'concurrencyKey',
  'concurrencyLimit',
  'timeout',
]);

export interface NormalizeOptions {
  /** Largest payload JSON in bytes (default 1 MiB). */
  maxPayloadBytes?: number;
}

function checkKey(what: string, key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw new SkiplockError(`invalid ${what} ${JSON.stringify(key)}: expected a text of 1 to ${MAX_KEY_LENGTH} characters`);
  }
  return key;
}

/** Checks a job spec and turns it into statement values; throws SkiplockError when it is bad. */
export function normalizeJob(spec: JobSpec, options: NormalizeOptions = {}): NormalizedJob {
  if (spec === null || typeof spec !== 'object') throw new SkiplockError('a job must be an object');
  for (const key of Object.keys(spec)) {
    if (!KNOWN_FIELDS.has(key)) throw new SkiplockError(`unknown job field ${JSON.stringify(key)}`);
  }
  const task = validateName('task', spec.task);
  const queue = validateName('queue', spec.queue ?? DEFAULT_QUEUE);
  const priority = checkInteger(spec.priority ?? 0, 'priority', -INT32_MAX, INT32_MAX);
  const maxAttempts = checkInteger(spec.maxAttempts ?? DEFAULT_MAX_ATTEMPTS, 'maxAttempts', 1, 1_000_000);
  if (spec.runAt !== undefined && spec.delay !== undefined) {
    throw new SkiplockError('give runAt or delay, not both');
  }
  let runAt: Date | null = null;
  if (spec.runAt !== undefined) {
    runAt = spec.runAt instanceof Date ? spec.runAt : parseRunAt(spec.runAt);
    if (Number.isNaN(runAt.getTime())) throw new SkiplockError(`invalid runAt ${String(spec.runAt)}`);
  }
  let delayMs = 0;
  if (spec.delay !== undefined) {
    delayMs = typeof spec.delay === 'number' ? spec.delay : parseDuration(spec.delay, 'delay');
    checkInteger(delayMs, 'delay (ms)', 0, Number.MAX_SAFE_INTEGER);
  }
  const dedupeKey = spec.dedupeKey === undefined ? null : checkKey('dedupeKey', spec.dedupeKey);
  const concurrencyKey = spec.concurrencyKey === undefined ? null : checkKey('concurrencyKey', spec.concurrencyKey);
  if (spec.concurrencyLimit !== undefined && concurrencyKey === null) {
    throw new SkiplockError('concurrencyLimit needs a concurrencyKey');
  }
  const concurrencyLimit =
    concurrencyKey === null ? null : checkInteger(spec.concurrencyLimit ?? 1, 'concurrencyLimit', 1, 1_000_000);
  let timeoutMs: number | null = null;
  if (spec.timeout !== undefined) {
    timeoutMs = typeof spec.timeout === 'number' ? spec.timeout : parseDuration(spec.timeout, 'timeout');
    checkInteger(timeoutMs, 'timeout (ms)', 1, MAX_TIMER_MS);
  }
  const payload = serializePayload(spec.payload, options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES);
  return { queue, task, payload, priority, runAt, delayMs, maxAttempts, dedupeKey, concurrencyKey, concurrencyLimit, timeoutMs, traceparent: null };
}

function parseRunAt(text: string): Date {
  // ISO 8601: a date-time with Z or an offset (no local-time guessing), or a bare date (UTC).
  if (typeof text !== 'string' || !/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2}))?$/.test(text)) {
    throw new SkiplockError(
      `invalid runAt ${JSON.stringify(text)}: expected an ISO 8601 date-time with Z or an offset, such as 2030-01-31T12:00:00Z`,
    );
  }
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) throw new SkiplockError(`invalid runAt ${JSON.stringify(text)}`);
  return date;
}

/** JSON text of a payload; undefined becomes {}. */
export function serializePayload(payload: unknown, maxBytes = DEFAULT_MAX_PAYLOAD_BYTES): string {
  if (payload === undefined) return '{}';
  let text: string | undefined;
  try {
    text = JSON.stringify(payload);
  } catch (err) {
    throw new SkiplockError(`payload is not JSON-serialisable: ${errorMessage(err)}`);
  }
  if (text === undefined) throw new SkiplockError('payload is not JSON-serialisable');
  // Postgres jsonb rejects \u0000 in strings; say so before the database does.
  if (text.includes('\\u0000')) throw new SkiplockError('payload contains a \\u0000 character, which jsonb cannot store');
  // Cheap bound first: a UTF-16 length can be at most 3 bytes per unit in UTF-8.
  if (text.length * 3 > maxBytes) {
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > maxBytes) throw new SkiplockError(`payload is ${bytes} bytes of JSON, over the limit of ${maxBytes}`);
  }
  return text;
}
