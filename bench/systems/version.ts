import { readFileSync } from 'node:fs';

/** The installed version of a package (or of this repository, for "skiplock"); the peers live in bench/node_modules (bench/package.json). */
export function installedVersion(name: string): string {
  const path = name === 'skiplock' ? '../../package.json' : `../node_modules/${name}/package.json`;
  const parsed = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as { version?: unknown };
  return typeof parsed.version === 'string' ? parsed.version : 'unknown';
}
