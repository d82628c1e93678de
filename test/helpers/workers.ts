import { Worker, type TaskList, type WorkerOptions } from '../../src/index.js';
import type { TestSchema } from './db.js';

/**
 * The workers one test file starts on its schema, with timings suited to tests (fast polls
 * and reaping); `stopAll()` in afterAll stops whatever is still running.
 */
export class TestWorkers {
  readonly started: Worker[] = [];

  constructor(
    private readonly db: () => TestSchema,
    private readonly defaults: Partial<WorkerOptions> = { pollIntervalMs: 200, leaseMs: 5000, reaperIntervalMs: 200 },
  ) {}

  async start(tasks: TaskList, options: Partial<WorkerOptions> = {}): Promise<Worker> {
    const { connectionString, schema } = this.db();
    const worker = new Worker({ connectionString, schema, tasks, ...this.defaults, ...options });
    this.started.push(worker);
    await worker.start();
    return worker;
  }

  byId(id: string): Worker {
    const worker = this.started.find((w) => w.id === id);
    if (!worker) throw new Error(`no test worker ${id}`);
    return worker;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.started.splice(0).map((w) => w.stop({ graceMs: 0 })));
  }
}
