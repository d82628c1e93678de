/** An error whose message is fit to show a user as is (one line, no secrets). */
export class SkiplockError extends Error {
  override readonly name = 'SkiplockError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Removes any password from a text that may contain a connection string. */
export function redactSecrets(text: string, secrets: readonly string[] = []): string {
  let out = text.replace(/(postgres(?:ql)?:\/\/[^:/@\s]*:)([^@\s]*)@/gi, '$1***@');
  out = out.replace(/(password\s*[=:]\s*)('[^']*'|"[^"]*"|\S+)/gi, '$1***');
  for (const secret of secrets) {
    if (secret.length > 0) out = out.split(secret).join('***');
  }
  return out;
}

/** The message of anything thrown, as text. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return typeof err === 'string' ? err : JSON.stringify(err) ?? String(err);
}

/** Node's socket error codes of a failed connection, in a few words. */
export const CONNECT_CODES: ReadonlyMap<string, string> = new Map([
  ['ECONNREFUSED', 'connection refused'],
  ['ENOTFOUND', 'unknown host'],
  ['EAI_AGAIN', 'host name lookup failed'],
  ['ETIMEDOUT', 'timed out'],
  ['EHOSTUNREACH', 'host unreachable'],
  ['ECONNRESET', 'connection reset'],
  ['ENOENT', 'no such socket'],
]);
