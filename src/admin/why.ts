import type { WhyFacts } from '../db/adminstore.js';
import type { JobStatus } from '../job.js';

/**
 * Why a job is where it is, as one answer an operator can act on (`skiplock jobs why`):
 * `reason` names the first thing that holds it (in the order the claim checks them),
 * `message` says it in words with what to do, and `blockers` lists every reason that holds
 * now (a job may be both behind a paused queue and past a full concurrency key).
 */
export interface Diagnosis {
  readonly id: string;
  readonly status: JobStatus;
  readonly reason: WhyReason;
  readonly message: string;
  readonly blockers: readonly WhyReason[];
  /** For a full concurrency key: up to 10 running jobs that hold it. */
  readonly keyHolders?: readonly string[];
}

export type WhyReason =
  | 'succeeded'
  | 'failed'
  | 'cancelled'
  | 'running'
  | 'lease_expired'
  | 'delayed'
  | 'queue_paused'
  | 'no_worker'
  | 'concurrency_key_full'
  | 'queue_concurrency_limit'
  | 'queue_rate_limit'
  | 'jobs_ahead'
  | 'claimable';

/** "2m 5s", "3h 10m", "450 ms": a span for people. */
export function formatSpan(ms: number): string {
  const abs = Math.abs(ms);
  if (abs < 1000) return `${Math.round(abs)} ms`;
  const s = Math.floor(abs / 1000);
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${sec}s`;
  return `${sec}s`;
}

const at = (d: Date): string => d.toISOString();

/** The diagnosis of a job from the facts the why query gathered (a pure function). */
export function diagnose(f: WhyFacts): Diagnosis {
  const now = f.now.getTime();
  const base = { id: f.id, status: f.status };
  const attempts = `attempt ${f.attempts} of ${f.max_attempts}`;
  const one = (reason: WhyReason, message: string): Diagnosis => ({ ...base, reason, message, blockers: [reason] });
  switch (f.status) {
    case 'succeeded':
      return one('succeeded', `it ran: succeeded${f.finished_at ? ` at ${at(f.finished_at)}` : ''} (${attempts})`);
    case 'failed':
      return one(
        'failed',
        `it failed for good${f.finished_at ? ` at ${at(f.finished_at)}` : ''}: ${f.attempts >= f.max_attempts ? `attempts exhausted (${f.attempts} of ${f.max_attempts})` : `${attempts}, not retried`}` +
          `${f.last_error ? `; last error: ${firstLine(f.last_error)}` : ''}; \`skiplock jobs retry ${f.id}\` runs it again with fresh attempts`,
      );
    case 'cancelled':
      return one('cancelled', `it was cancelled${f.finished_at ? ` at ${at(f.finished_at)}` : ''}; \`skiplock jobs retry ${f.id}\` queues it again`);
    case 'running': {
      const expired = f.lease_expires_at !== null && f.lease_expires_at.getTime() < now;
      if (expired) {
        return one(
          'lease_expired',
          `it was running on worker ${f.locked_by ?? 'unknown'}, whose lease expired ${formatSpan(now - f.lease_expires_at!.getTime())} ago (the worker died or stalled); the reaper requeues it at its next round`,
        );
      }
      return one(
        'running',
        `it is running on worker ${f.locked_by ?? 'unknown'} since ${f.started_at ? at(f.started_at) : 'unknown'} (${attempts}), lease until ${f.lease_expires_at ? at(f.lease_expires_at) : 'unknown'}`,
      );
    }
    case 'queued':
      return diagnoseQueued(f, now);
  }
}

function firstLine(text: string): string {
  const line = text.split('\n')[0] ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

function diagnoseQueued(f: WhyFacts, now: number): Diagnosis {
  const found: Array<{ reason: WhyReason; message: string }> = [];
  const where = `task ${JSON.stringify(f.task)} in queue ${JSON.stringify(f.queue)}`;
  if (f.run_at.getTime() > now) {
    const retrying = f.attempts > 0 && f.last_error !== null;
    found.push({
      reason: 'delayed',
      message: `${retrying ? `it waits to retry after attempt ${f.attempts} of ${f.max_attempts} failed (${firstLine(f.last_error!)}): ` : ''}it is delayed until ${at(f.run_at)} (in ${formatSpan(f.run_at.getTime() - now)})`,
    });
  }
  if (f.queue_paused) {
    found.push({ reason: 'queue_paused', message: `its queue ${JSON.stringify(f.queue)} is paused; \`skiplock queues resume ${f.queue}\` lets workers take it` });
  }
  if (f.live_workers === 0) {
    found.push({
      reason: 'no_worker',
      message:
        f.all_live_workers === 0
          ? `no worker is running (none has reported in its last few seconds); start one that handles ${where}`
          : `no live worker handles ${where} (${f.all_live_workers} worker${f.all_live_workers === 1 ? '' : 's'} live, none takes it); start one with that task and queue`,
    });
  }
  if (f.concurrency_key !== null && f.concurrency_limit !== null && (f.key_running ?? 0) >= f.concurrency_limit) {
    found.push({
      reason: 'concurrency_key_full',
      message: `its concurrency key ${JSON.stringify(f.concurrency_key)} is at its limit: ${f.key_running} of ${f.concurrency_limit} running (jobs ${(f.key_holders ?? []).join(', ')}); it starts when one of them ends`,
    });
  }
  if (f.queue_concurrency_limit !== null && f.queue_running >= f.queue_concurrency_limit) {
    found.push({
      reason: 'queue_concurrency_limit',
      message: `its queue ${JSON.stringify(f.queue)} is at its concurrency limit: ${f.queue_running} of ${f.queue_concurrency_limit} running`,
    });
  }
  if (f.queue_rate_limit !== null && (f.queue_recent_starts ?? 0) >= f.queue_rate_limit) {
    const frees = f.queue_rate_frees_at;
    found.push({
      reason: 'queue_rate_limit',
      message: `its queue ${JSON.stringify(f.queue)} is at its rate limit: ${f.queue_recent_starts} started in the last ${formatSpan(f.queue_rate_window_ms ?? 0)} (limit ${f.queue_rate_limit})${frees ? `; room again at ${at(frees)}` : ''}`,
    });
  }
  if ((f.due_ahead ?? 0) > 0) {
    found.push({
      reason: 'jobs_ahead',
      message: `${f.due_ahead! > 10_000 ? 'more than 10000 due jobs are' : `${f.due_ahead} due job${f.due_ahead === 1 ? ' is' : 's are'}`} ahead of it in claim order (priority, due time, id) for ${where}`,
    });
  }
  if (found.length === 0) {
    found.push({ reason: 'claimable', message: `it is due and nothing holds it: a live worker takes it at its next claim (${where})` });
  }
  const first = found[0]!;
  const keyFull = found.some((r) => r.reason === 'concurrency_key_full');
  return {
    id: f.id,
    status: f.status,
    reason: first.reason,
    message: found.length === 1 ? first.message : `${first.message}; also: ${found.slice(1).map((r) => r.message).join('; ')}`,
    blockers: found.map((r) => r.reason),
    ...(keyFull && { keyHolders: f.key_holders ?? [] }),
  };
}
