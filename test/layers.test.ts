// The layering check (`npm run lint:layers`: dependency-cruiser with .dependency-cruiser.cjs)
// run on copies of src/: it passes on the copy as it is and fails, naming the rule, on a copy
// with deliberate upward imports. A negative control: the check is not vacuous (e.g. a
// parser that skips .ts files would let everything pass).
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers/cli.js';

const CONFIG = '.dependency-cruiser.cjs';
const CRUISER = join(ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');

interface CruiseResult {
  code: number | null;
  output: string;
}

/** Runs the cruiser as `npm run lint:layers` does, in dir. */
function cruise(dir: string): Promise<CruiseResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CRUISER, 'src', '--config', CONFIG], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** A copy of src/ and the cruiser config in a directory of its own. */
function copyTree(dir: string): string {
  cpSync(join(ROOT, 'src'), join(dir, 'src'), { recursive: true });
  cpSync(join(ROOT, CONFIG), join(dir, CONFIG));
  return dir;
}

/** The first .ts file of a folder of src/ (the test does not depend on today's file names). */
function firstTsFile(dir: string, folder: string): string {
  const name = readdirSync(join(dir, 'src', folder))
    .filter((f) => f.endsWith('.ts'))
    .sort()[0];
  if (name === undefined) throw new Error(`no .ts file in src/${folder}`);
  return name;
}

function prepend(file: string, line: string): void {
  writeFileSync(file, `${line}\n${readFileSync(file, 'utf8')}`);
}

let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'skiplock-layers-'));
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('layering check (dependency-cruiser)', () => {
  it('passes on src/ as it is, and fails naming the rule on an upward import and on a type-only import', async () => {
    const clean = copyTree(join(tmp, 'clean'));
    const broken = copyTree(join(tmp, 'broken'));
    const dbFile = firstTsFile(broken, 'db');
    const workerFile = firstTsFile(broken, 'worker');
    const workerModule = workerFile.replace(/\.ts$/, '.js');
    const observabilityFile = firstTsFile(broken, 'observability');
    // A value import that pulls the worker into the store layer.
    prepend(join(broken, 'src', 'db', dbFile), `import '../worker/${workerModule}';`);
    // A type-only import of an internal module into the CLI: erased at runtime, still a dependency.
    prepend(
      join(broken, 'src', 'cli', 'main.ts'),
      `import type * as Internal from '../observability/${observabilityFile.replace(/\.ts$/, '.js')}';\nexport type Unused = typeof Internal;`,
    );

    const [ok, bad] = await Promise.all([cruise(clean), cruise(broken)]);

    expect(ok.code, ok.output).toBe(0);
    expect(ok.output).toMatch(/no dependency violations found \((\d+) modules/);
    expect(Number(/\((\d+) modules/.exec(ok.output)?.[1])).toBeGreaterThan(10); // .ts files were read

    expect(bad.code, bad.output).not.toBe(0);
    expect(bad.output).toContain(`error store-not-to-worker: src/db/${dbFile} → src/worker/${workerFile}`);
    expect(bad.output).toContain(`error cli-only-through-index: src/cli/main.ts → src/observability/${observabilityFile}`);
  });
});
