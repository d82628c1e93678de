import { readFileSync } from 'node:fs';

/** The package's version, read from its package.json (the same from src/ and dist/src/). */
export const VERSION: string = (() => {
  const url = new URL(import.meta.url.includes('/dist/src/') ? '../../package.json' : '../package.json', import.meta.url);
  const parsed = JSON.parse(readFileSync(url, 'utf8')) as { version?: unknown };
  return typeof parsed.version === 'string' ? parsed.version : '0.0.0';
})();
