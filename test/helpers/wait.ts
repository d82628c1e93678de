import { setTimeout as delay } from 'node:timers/promises';

export interface WaitOptions {
  /** Time between two checks (default 25 ms). */
  intervalMs?: number;
  /**
   * Treat a throwing check as "not yet" and try again (e.g. while the server restarts or a
   * connection was terminated); on timeout the last error is reported. Off by default: a
   * throwing check fails the wait at once.
   */
  retryOnError?: boolean;
  /** Checked before each round: a message fails the wait at once (e.g. fleet.deathNotice). */
  abortIf?: () => string | undefined;
}

/**
 * The one polling helper of the tests: calls `check` until it returns something other than
 * undefined/false and resolves to that, or throws once `timeoutMs` have passed, naming `what`.
 */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false>,
  timeoutMs = 30_000,
  what = 'condition',
  options: WaitOptions = {},
): Promise<T> {
  const { intervalMs = 25, retryOnError = false, abortIf } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    const abort = abortIf?.();
    if (abort !== undefined) throw new Error(`while waiting for ${what}: ${abort}`);
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      lastError = undefined;
    } catch (err) {
      if (!retryOnError) throw err;
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError === undefined ? '' : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await delay(intervalMs);
  }
}
