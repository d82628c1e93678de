import type { TaskHandler } from '../src/index.js';

/** Logs a greeting. Payload: { "name": "world" } */
interface HelloPayload {
  name?: string;
}

const hello: TaskHandler<HelloPayload> = (payload, ctx) => {
  ctx.logger.info({ greeting: `hello, ${payload.name ?? 'world'}` }, 'said hello');
};

export default hello;
