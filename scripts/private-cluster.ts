/**
 * A throwaway PostgreSQL cluster for the scripts that must not use the shared server
 * (scripts/soak.ts, bench/capacity.ts): the newest installed server binaries, a temporary
 * directory, 127.0.0.1 on the given port, trust authentication, the given settings; run as
 * the `postgres` OS user when started as root (PostgreSQL refuses root). `stop()` stops it
 * at once and removes the directory.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PrivateCluster {
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  readonly url: string;
  /** The data directory. */
  readonly data: string;
  /** The postmaster's process id. */
  postmasterPid(): number;
  /** Stops the server (immediate) and removes its directory; safe to call twice. */
  stop(): void;
}

const BIN = `/usr/lib/postgresql/${readdirSync('/usr/lib/postgresql').sort().pop()}/bin`;
const asRoot = process.getuid?.() === 0;

function run(tool: string, args: string[]): string {
  const command = join(BIN, tool);
  return asRoot
    ? execFileSync('runuser', ['-u', 'postgres', '--', command, ...args], { encoding: 'utf8' })
    : execFileSync(command, args, { encoding: 'utf8' });
}

/**
 * initdb and start. `settings` are postgresql.conf lines (port, listen address and socket
 * directory are set here). Throws with the tool's output when a step fails; what was made is
 * removed then.
 */
export function startPrivateCluster(name: string, port: number, settings: readonly string[]): PrivateCluster {
  const dir = mkdtempSync(join(tmpdir(), `skiplock-${name}-`));
  const data = join(dir, 'data');
  let stopped = false;
  const cluster: PrivateCluster = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    data,
    postmasterPid: () => Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]),
    stop() {
      if (stopped) return;
      stopped = true;
      try {
        run('pg_ctl', ['-D', data, '-m', 'immediate', 'stop']);
      } catch {
        // not started
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    if (asRoot) execFileSync('chown', ['postgres:postgres', dir]);
    chmodSync(dir, 0o700);
    run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8']);
    const conf = join(data, 'postgresql.auto.conf');
    writeFileSync(conf, [`port = ${port}`, "listen_addresses = '127.0.0.1'", `unix_socket_directories = '${dir}'`, ...settings, ''].join('\n'));
    if (asRoot) execFileSync('chown', ['postgres:postgres', conf]);
    run('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', 'start']);
    return cluster;
  } catch (err) {
    cluster.stop();
    throw err;
  }
}
