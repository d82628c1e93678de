/** Controlling the PostgreSQL server itself (restart.chaos.ts). */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { DATABASE_URL } from '../../helpers/db.js';

const execFileAsync = promisify(execFile);

export interface ServerControl {
  /** Undefined when the suite can control the server; else why not. */
  readonly unavailable: string | undefined;
  /** Restarts the cluster (fast mode); resolves to how long the command took, ms. */
  restart(): Promise<number>;
  /** Starts the cluster if it is down; a no-op when it runs. */
  ensureUp(): Promise<void>;
}

/** The local cluster behind DATABASE_URL, driven with pg_ctlcluster (Debian/Ubuntu), as root. */
export function serverControl(): ServerControl {
  const ctl = ['/usr/bin/pg_ctlcluster', '/usr/sbin/pg_ctlcluster'].find((p) => existsSync(p));
  let host = '';
  try {
    host = new URL(DATABASE_URL).hostname;
  } catch {
    // unparsable: treated as remote
  }
  const versions = existsSync('/etc/postgresql') ? readdirSync('/etc/postgresql').filter((v) => existsSync(`/etc/postgresql/${v}/main`)) : [];
  let unavailable: string | undefined;
  if (!ctl) unavailable = 'pg_ctlcluster not found';
  else if (process.getuid?.() !== 0) unavailable = 'not running as root';
  else if (!['127.0.0.1', 'localhost', '::1', '[::1]'].includes(host)) unavailable = `the test server (${host}) is not local`;
  else if (versions.length !== 1) unavailable = `expected one cluster named main under /etc/postgresql, found versions [${versions.join(', ')}]`;
  const version = versions[0] ?? '';
  const run = (action: string, extra: string[] = []): Promise<{ stdout: string; stderr: string }> =>
    execFileAsync(ctl ?? 'pg_ctlcluster', ['--skip-systemctl-redirect', ...extra, version, 'main', action], { timeout: 120_000 });
  return {
    unavailable,
    async restart(): Promise<number> {
      if (unavailable) throw new Error(`cannot restart the server: ${unavailable}`);
      const t0 = Date.now();
      await run('restart', ['--mode', 'fast']);
      return Date.now() - t0;
    },
    async ensureUp(): Promise<void> {
      if (unavailable) return;
      try {
        await run('status');
      } catch {
        await run('start');
      }
    },
  };
}
