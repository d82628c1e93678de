import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = fileURLToPath(new URL('../../bin/skiplock.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Environment for a CLI run: the caller's, without PG* or DATABASE_URL leaking in, plus extra. */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('PG') && k !== 'DATABASE_URL' && k !== 'SKIPLOCK_SCHEMA') env[k] = v;
  }
  return { ...env, ...extra };
}

/** Starts `skiplock <args>` (the built bin) as a child process. */
export function startCli(args: string[], options: { env?: Record<string, string>; input?: string } = {}): ChildProcess & {
  done: Promise<CliResult>;
  output: () => { stdout: string; stderr: string };
} {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: cliEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  if (options.input !== undefined) child.stdin?.end(options.input);
  else child.stdin?.end();
  const done = new Promise<CliResult>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return Object.assign(child, { done, output: () => ({ stdout, stderr }) });
}

/**
 * Runs `skiplock <args>` to its end and returns what it printed; kills it (and fails) after
 * timeoutMs. A CLI that stops reading stdin early (a bad line) must not crash the test with
 * EPIPE.
 */
export async function runCli(
  args: string[],
  options: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  const { timeoutMs = 30_000, ...start } = options;
  const child = startCli(args, start);
  child.stdin?.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`skiplock ${args.join(' ')} still running after ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([child.done, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
