import { SkiplockError } from '../errors.js';

/** Retry delay after the n-th failed attempt: min(maxMs, baseMs * 2^(n-1)), plus up to `jitter` of it. */
export interface BackoffOptions {
  /** Delay after the first failure (default 1000 ms). */
  baseMs: number;
  /** Cap on the exponential part (default 1 hour). */
  maxMs: number;
  /** Random extra, as a fraction of the delay, 0 to 1 (default 0.25). */
  jitter: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({ baseMs: 1000, maxMs: 3_600_000, jitter: 0.25 });

export function resolveBackoff(...layers: Array<Partial<BackoffOptions> | undefined>): BackoffOptions {
  const out: BackoffOptions = { ...DEFAULT_BACKOFF };
  for (const layer of layers) {
    if (layer?.baseMs !== undefined) out.baseMs = layer.baseMs;
    if (layer?.maxMs !== undefined) out.maxMs = layer.maxMs;
    if (layer?.jitter !== undefined) out.jitter = layer.jitter;
  }
  if (!(out.baseMs >= 0 && out.maxMs >= out.baseMs && out.jitter >= 0 && out.jitter <= 1)) {
    throw new SkiplockError(
      `invalid backoff ${JSON.stringify(out)}: need 0 <= baseMs <= maxMs and 0 <= jitter <= 1`,
    );
  }
  return out;
}

/** The delay before retrying after failed attempt number `attempt` (1-based). */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const exponent = Math.max(0, Math.min(attempt - 1, 52));
  const base = Math.min(options.maxMs, options.baseMs * 2 ** exponent);
  return Math.round(base + base * options.jitter * random());
}
