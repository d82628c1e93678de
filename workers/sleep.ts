import { setTimeout as delay } from 'node:timers/promises';
import type { TaskHandler } from '../src/index.js';

/**
 * Waits `ms` milliseconds, stopping early (and failing) when the job's AbortSignal fires:
 * the pattern for long work that must give way on shutdown or lease loss.
 * Payload: { "ms": 2000 }
 */
interface SleepPayload {
  ms?: number;
}

const sleep: TaskHandler<SleepPayload> = async (payload, ctx) => {
  const ms = Math.max(0, Math.min(payload.ms ?? 1000, 3_600_000));
  await delay(ms, undefined, { signal: ctx.signal });
  ctx.logger.info({ ms }, 'slept');
};

export default sleep;
