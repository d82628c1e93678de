import { SkiplockError } from './errors.js';

export const DEFAULT_SCHEMA = 'skiplock';
export const DEFAULT_QUEUE = 'default';

const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,47}$/;
const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/;

/** Validates a schema name: lower-case letters, digits and underscores, at most 48 characters. */
export function validateSchema(schema: string): string {
  if (!SCHEMA_RE.test(schema)) {
    throw new SkiplockError(
      `invalid schema name ${JSON.stringify(schema)}: use lower-case letters, digits and _, start with a letter or _, at most 48 characters`,
    );
  }
  return schema;
}

/** Validates a queue, task or schedule name: letters, digits, _ . : -, 1 to 128 characters. */
export function validateName(kind: 'queue' | 'task' | 'schedule', name: string): string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new SkiplockError(
      `invalid ${kind} name ${JSON.stringify(name)}: use letters, digits and _ . : - (1 to 128 characters, not starting with . : -)`,
    );
  }
  return name;
}

const MAX_BIGINT = 9223372036854775807n;

/**
 * Checks a job id (or a list cursor, which is one): digits of a positive bigint, as the
 * database stores ids. Returns it unchanged.
 */
export function checkJobId(id: string, what = 'job id'): string {
  if (typeof id !== 'string' || !/^\d{1,19}$/.test(id) || BigInt(id) > MAX_BIGINT) {
    throw new SkiplockError(`invalid ${what} ${JSON.stringify(id)}: expected a whole number from 0 to ${MAX_BIGINT}`);
  }
  return id;
}

/** The longest age an operator may name (100 years): beyond it the database's intervals overflow. */
export const MAX_AGE_MS = 100 * 365 * 86_400_000;

/** Parses an age ("30s", "7d", ms as digits), at most MAX_AGE_MS. */
export function parseAge(text: string, what = 'age'): number {
  const ms = parseDuration(text, what);
  if (ms > MAX_AGE_MS) throw new SkiplockError(`invalid ${what} ${JSON.stringify(text)}: at most 100 years`);
  return ms;
}

/** Checks an age in ms (a filter's or the pruner's): whole or not, 0 to MAX_AGE_MS. */
export function checkAge(ms: number, what: string): number {
  if (!(Number.isFinite(ms) && ms >= 0 && ms <= MAX_AGE_MS)) {
    throw new SkiplockError(`invalid ${what} ${String(ms)} ms: expected 0 to ${MAX_AGE_MS} (100 years)`);
  }
  return ms;
}

/** The quoted schema identifier for SQL text (the name was validated first). */
export function quoteSchema(schema: string): string {
  return `"${validateSchema(schema)}"`;
}

/** The LISTEN/NOTIFY channel a schema's producers and workers share. */
export function channelFor(schema: string): string {
  return `${validateSchema(schema)}_jobs`;
}

/** The channel on which a change of a queue's settings (pause, limits) is announced. */
export function queuesChannelFor(schema: string): string {
  return `${validateSchema(schema)}_queues`;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The largest delay Node's timers accept. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Parses a duration: a number of milliseconds ("1500") or a number with a unit
 * ("250ms", "30s", "5m", "2h", "1d").
 */
export function parseDuration(text: string, what = 'duration'): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!match) {
    throw new SkiplockError(`invalid ${what} ${JSON.stringify(text)}: expected e.g. 500, 250ms, 30s, 5m, 2h`);
  }
  const ms = Number(match[1]) * (UNIT_MS[match[2] ?? 'ms'] ?? 1);
  if (!Number.isFinite(ms)) throw new SkiplockError(`invalid ${what} ${JSON.stringify(text)}`);
  return Math.round(ms);
}

/** Parses a whole number within [min, max]. */
export function parseInteger(text: string, what: string, min: number, max: number): number {
  if (!/^\s*-?\d+\s*$/.test(text)) {
    throw new SkiplockError(`invalid ${what} ${JSON.stringify(text)}: expected a whole number`);
  }
  return checkInteger(Number(text), what, min, max);
}

/** Checks that a number is a whole number within [min, max]. */
export function checkInteger(value: number, what: string, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new SkiplockError(`invalid ${what} ${String(value)}: expected a whole number from ${min} to ${max}`);
  }
  return value;
}

/** Checks a duration in milliseconds: whole, within [min, max]. */
export function checkDuration(ms: number, what: string, min: number, max = MAX_TIMER_MS): number {
  return checkInteger(ms, `${what} (ms)`, min, max);
}

/** The longest finite retention (100 years, in ms). */
const MAX_RETENTION_MS = 100 * 365 * 86_400_000;

/** Checks a retention in milliseconds: 0 up to 100 years, or Infinity (keep forever). */
export function checkRetention(ms: number, what: string): number {
  if (ms === Number.POSITIVE_INFINITY) return ms;
  return checkInteger(ms, `${what} (ms)`, 0, MAX_RETENTION_MS);
}

/** Parses a retention: a duration (see parseDuration) or "forever". */
export function parseRetention(text: string, what: string): number {
  if (text.trim() === 'forever') return Number.POSITIVE_INFINITY;
  return checkRetention(parseDuration(text, what), what);
}

/** A queue's rate limit: at most `limit` starts in any `windowMs`. */
export interface RateLimit {
  readonly limit: number;
  readonly windowMs: number;
}

/** Checks a rate limit: 1 to 2^31 - 1 starts per 1 ms to 2^31 - 1 ms (about 24 days). */
export function checkRateLimit(rate: RateLimit): RateLimit {
  return { limit: checkInteger(rate.limit, 'rate limit', 1, 2 ** 31 - 1), windowMs: checkDuration(rate.windowMs, 'rate limit window', 1) };
}

/** Parses a rate limit "N/<duration>" ("100/1s", "6000/1m", "5/250ms"), or "none" (null). */
export function parseRateLimit(text: string): RateLimit | null {
  if (text.trim() === 'none') return null;
  const match = /^\s*(\d+)\s*\/\s*(\S+)\s*$/.exec(text);
  if (!match) throw new SkiplockError(`invalid rate limit ${JSON.stringify(text)}: expected N/<duration> (e.g. 100/1s, 6000/1m) or none`);
  const window = /^\d/.test(match[2]!) ? match[2]! : `1${match[2]!}`;
  let windowMs: number;
  try {
    windowMs = parseDuration(window, 'rate limit window');
  } catch {
    throw new SkiplockError(`invalid rate limit ${JSON.stringify(text)}: the window must be a duration such as 1s, 500ms, 1m, 1h`);
  }
  return checkRateLimit({ limit: Number(match[1]), windowMs });
}

/** A rate limit as text: "100/1s". */
export function formatRateLimit(rate: RateLimit): string {
  const units: Array<[string, number]> = [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]];
  const unit = units.find(([, ms]) => rate.windowMs % ms === 0);
  return unit ? `${rate.limit}/${rate.windowMs / unit[1]}${unit[0]}` : `${rate.limit}/${rate.windowMs}ms`;
}
