import type { NormalizedJob } from '../job.js';

interface Waiting {
  job: NormalizedJob;
  resolve: (id: string) => void;
  reject: (err: unknown) => void;
}

/**
 * Whether the server refused the statement for its data (SQLSTATE classes 22, data
 * exception, and 23, integrity constraint): it was rolled back, so its jobs can be retried
 * one by one. Any other failure (a lost connection above all) may have happened after the
 * commit, so retrying could insert a job twice: those calls fail instead.
 */
function refusedData(err: unknown): boolean {
  const codeOf = (e: unknown): unknown => (e as { code?: unknown } | null)?.code;
  const code = codeOf(err) ?? codeOf((err as { cause?: unknown } | null)?.cause);
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23'));
}

/** Inserts jobs in one statement and returns their ids in order. */
export type InsertJobs = (jobs: readonly NormalizedJob[]) => Promise<string[]>;

/**
 * Merges single-job enqueue calls that arrive at once into one INSERT (and so one commit
 * and one NOTIFY). A statement starts after the current event-loop turn when none is in
 * flight; calls that arrive while it runs go into the next one, so a lone caller waits for
 * nothing and many concurrent callers share statements. Each call still gets its own id,
 * committed when its promise resolves. When the database refuses a shared statement's data,
 * its jobs are retried one statement each, so a job it refuses fails only its own call.
 */
export class EnqueueCoalescer {
  private waiting: Waiting[] = [];
  private running: Promise<void> | undefined;

  constructor(
    private readonly insert: InsertJobs,
    private readonly maxBatch = 1000,
  ) {}

  add(job: NormalizedJob): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      this.waiting.push({ job, resolve, reject });
      this.running ??= this.run();
    });
  }

  /** Resolves once every call made so far has been settled. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async run(): Promise<void> {
    try {
      await new Promise<void>((resolve) => setImmediate(resolve));
      while (this.waiting.length > 0) {
        const batch = this.waiting.splice(0, this.maxBatch);
        await this.write(batch);
      }
    } finally {
      this.running = undefined;
      // A call made after the loop's last check and before this point starts a new round.
      if (this.waiting.length > 0) this.running = this.run();
    }
  }

  private async write(batch: Waiting[]): Promise<void> {
    try {
      const ids = await this.insert(batch.map((w) => w.job));
      batch.forEach((w, i) => {
        const id = ids[i];
        if (id === undefined) w.reject(new Error('enqueue returned no id'));
        else w.resolve(id);
      });
    } catch (err) {
      if (batch.length === 1 || !refusedData(err)) {
        for (const w of batch) w.reject(err);
        return;
      }
      // The database refused some job's data (and rolled the statement back): alone, each
      // job succeeds or fails on its own.
      await Promise.all(batch.map((w) => this.write([w])));
    }
  }
}
