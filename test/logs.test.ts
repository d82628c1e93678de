// Every log message skiplock writes is listed in the README's Logs table, and every message
// listed there is one the code writes.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('../', import.meta.url);

function sourceFiles(dir: string): string[] {
  return readdirSync(new URL(dir, ROOT), { withFileTypes: true }).flatMap((entry) => {
    const rel = path.posix.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(`${rel}/`);
    return entry.name.endsWith('.ts') ? [rel] : [];
  });
}

/** The messages of the logger calls in a source text: the quoted texts with a space in them. */
export function logMessages(source: string): string[] {
  const out: string[] = [];
  const start = /\blogger(?:\.(?:trace|debug|info|warn|error|fatal)|\[[^\]]*\])\(/g;
  for (let m = start.exec(source); m !== null; m = start.exec(source)) {
    let depth = 1;
    let i = m.index + m[0].length;
    for (; i < source.length && depth > 0; i++) {
      if (source[i] === '(') depth += 1;
      else if (source[i] === ')') depth -= 1;
    }
    const call = source.slice(m.index + m[0].length, i - 1);
    for (const s of call.matchAll(/'([^'\n]*)'/g)) if (s[1]!.includes(' ')) out.push(s[1]!);
  }
  return out;
}

function readmeMessages(): string[] {
  const readme = readFileSync(new URL('README.md', ROOT), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Logs'), readme.indexOf('\n## ', readme.indexOf('\n## Logs') + 1));
  return [...section.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]!);
}

describe('log messages', () => {
  it('the extractor finds messages in the shapes the code uses', () => {
    expect(logMessages(`run.logger[ok ? 'info' : 'warn']({ a: 1 }, 'one two');\nlogger.warn({ e: f(x) }, x === 'a' ? 'b c' : 'd e');`)).toEqual(['one two', 'b c', 'd e']);
  });

  it('every message in src/ is in the README table, and every message there is in src/', () => {
    const inCode = new Set(sourceFiles('src/').flatMap((file) => logMessages(readFileSync(new URL(file, ROOT), 'utf8'))));
    const inReadme = new Set(readmeMessages());
    expect(inCode.size).toBeGreaterThan(30);
    expect([...inCode].filter((m) => !inReadme.has(m)).sort()).toEqual([]);
    expect([...inReadme].filter((m) => !inCode.has(m)).sort()).toEqual([]);
  });
});
