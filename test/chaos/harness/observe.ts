/**
 * Watching worker processes from outside: their server connections (found by client port in
 * /proc and pg_stat_activity), /healthz and /metrics.
 */
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { DATABASE_URL } from '../../helpers/db.js';
import type { WorkerProcess } from './fleet.js';

export interface Backend {
  pid: number;
  application_name: string;
  client_port: number;
  /** pg_stat_activity.state: active, idle, idle in transaction, ... */
  state: string | null;
}

/** What the workers' connections are called in pg_stat_activity. */
export const POOL_APP = 'skiplock worker';
export function listenerApp(workerId: string): string {
  return `skiplock listener ${workerId}`.slice(0, 63);
}

/** The port of the test server (DATABASE_URL). */
export function serverPort(): number {
  try {
    return Number(new URL(DATABASE_URL).port || 5432);
  } catch {
    return 5432;
  }
}

/** Local ports of the TCP connections these processes hold to `remotePort` (Linux /proc). */
export function clientPortsOf(pids: readonly number[], remotePort: number): number[] {
  const inodes = new Set<string>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m?.[1]) inodes.add(m[1]);
      } catch {
        // closed meanwhile
      }
    }
  }
  const ports: number[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const local = f[1];
      const remote = f[2];
      const inode = f[9];
      if (!local || !remote || !inode || !inodes.has(inode)) continue;
      if (parseInt(remote.split(':')[1] ?? '', 16) !== remotePort) continue;
      ports.push(parseInt(local.split(':')[1] ?? '', 16));
    }
  }
  return ports;
}

export async function healthz(proc: WorkerProcess): Promise<{ ok: boolean; state: string; running: number; listening: boolean | null } | undefined> {
  if (proc.port === undefined) return undefined;
  const res = await fetch(`http://127.0.0.1:${proc.port}/healthz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
  if (!res) return undefined;
  return (await res.json()) as { ok: boolean; state: string; running: number; listening: boolean | null };
}

/** One unlabelled (or summed over labels) metric from a worker's /metrics. */
export async function scrapeMetric(proc: WorkerProcess, name: string): Promise<number | undefined> {
  if (proc.port === undefined) return undefined;
  const res = await fetch(`http://127.0.0.1:${proc.port}/metrics`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
  if (!res?.ok) return undefined;
  const text = await res.text();
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([-+\\d.eE]+|NaN)$`).exec(line);
    if (m?.[1]) sum = (sum ?? 0) + Number(m[1]);
  }
  return sum;
}
