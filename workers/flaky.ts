import type { TaskHandler, TaskOptions } from '../src/index.js';

/**
 * Fails with probability `failRate` (default 0.5): shows retries with backoff.
 * Payload: { "failRate": 0.5 }
 */
interface FlakyPayload {
  failRate?: number;
}

export const options: TaskOptions = { backoff: { baseMs: 500, maxMs: 10_000 } };

const flaky: TaskHandler<FlakyPayload> = (payload, ctx) => {
  if (Math.random() < (payload.failRate ?? 0.5)) {
    throw new Error(`flaky failure on attempt ${ctx.job.attempt}`);
  }
  ctx.logger.info('flaky job got through');
};

export default flaky;
