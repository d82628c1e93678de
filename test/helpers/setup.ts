import { afterAll, beforeAll } from 'vitest';
import { migrate } from '../../src/db/migrate.js';
import { Producer, type WorkerOptions } from '../../src/index.js';
import { type TestSchema, newTestSchema } from './db.js';
import { TestWorkers } from './workers.js';

export interface TestSchemaFixture {
  /** The file's schema; migrated in beforeAll. */
  readonly db: TestSchema;
  /** A producer on the schema's pool. */
  readonly producer: Producer;
  /** The workers the file starts; stopped in afterAll. */
  readonly workers: TestWorkers;
}

/**
 * The setup most integration test files share: a schema of their own (t_<prefix>_<random>),
 * migrated in beforeAll, a producer and the file's TestWorkers. afterAll stops the workers and
 * drops the schema. Call it at the top level of the file; the objects it returns can be used
 * from the tests at once (the schema exists once beforeAll ran).
 */
export function useTestSchema(prefix: string, options: { max?: number; workerDefaults?: Partial<WorkerOptions> } = {}): TestSchemaFixture {
  const db = newTestSchema(prefix, { max: options.max });
  const producer = new Producer({ pool: db.pool, schema: db.schema });
  const workers = new TestWorkers(() => db, options.workerDefaults);

  beforeAll(async () => {
    await migrate(db.pool, db.schema);
  });

  afterAll(async () => {
    await workers.stopAll();
    await db.drop();
  });

  return { db, producer, workers };
}
