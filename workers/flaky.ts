import type { TaskHandler, TaskOptions } from '../src/index.js';

/**
 * Shows retries with backoff. With `failTimes`, its first `failTimes` attempts fail and the
 * next one succeeds (the same on every run: the demo's job fails exactly once); without it,
 * each attempt fails with probability `failRate` (default 0.5).
 * Payload: { "failTimes": 1 } or { "failRate": 0.5 }
 */
interface FlakyPayload {
  failTimes?: number;
  failRate?: number;
}

export const options: TaskOptions = { backoff: { baseMs: 500, maxMs: 10_000 } };

const flaky: TaskHandler<FlakyPayload> = (payload, ctx) => {
  const fails =
    typeof payload.failTimes === 'number' ? ctx.job.attempt <= payload.failTimes : Math.random() < (payload.failRate ?? 0.5);
  if (fails) {
    throw new Error(`flaky failure on attempt ${ctx.job.attempt}`);
  }
  ctx.logger.info('flaky job got through');
};

export default flaky;
