import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { validateName } from '../config.js';
import { SkiplockError, errorMessage } from '../errors.js';
import type { TaskDefinition, TaskHandler, TaskList, TaskOptions, TaskSchedule } from './types.js';

const EXTENSIONS = ['.js', '.mjs', '.ts'] as const;

function isFunction(value: unknown): value is TaskHandler<never> {
  return typeof value === 'function';
}

async function importModule(file: string): Promise<Record<string, unknown>> {
  const url = pathToFileURL(file).href;
  if (file.endsWith('.ts')) {
    // TypeScript task files are compiled on load by tsx.
    const { tsImport } = await import('tsx/esm/api');
    return (await tsImport(url, import.meta.url)) as Record<string, unknown>;
  }
  return (await import(url)) as Record<string, unknown>;
}

/**
 * Loads a task directory: each `<task-name>.js|.mjs|.ts` file is one task, its default
 * export the handler, an optional named export `options` its TaskOptions and an optional
 * named export `schedule` its TaskSchedule (a cron expression or `{ cron, timezone, ... }`). Files whose
 * names start with "_" or "." or end in .d.ts / .test.* are skipped.
 */
export async function loadTaskDirectory(dir: string): Promise<TaskList> {
  const absolute = path.resolve(dir);
  let entries: string[];
  try {
    entries = await readdir(absolute);
  } catch (err) {
    throw new SkiplockError(`cannot read task directory ${absolute}: ${errorMessage(err)}`);
  }
  const tasks: Record<string, TaskDefinition<never>> = Object.create(null) as Record<string, TaskDefinition<never>>;
  const sources = new Map<string, string>();
  for (const file of entries.sort()) {
    const ext = EXTENSIONS.find((e) => file.endsWith(e));
    if (ext === undefined || file.startsWith('_') || file.startsWith('.') || file.endsWith('.d.ts') || /\.test\.[cm]?[jt]s$/.test(file)) {
      continue;
    }
    const name = validateName('task', file.slice(0, -ext.length));
    const previous = sources.get(name);
    if (previous !== undefined) throw new SkiplockError(`task ${name} is defined twice: ${previous} and ${file}`);
    sources.set(name, file);
    let mod: Record<string, unknown>;
    try {
      mod = await importModule(path.join(absolute, file));
    } catch (err) {
      throw new SkiplockError(`cannot load task ${name} from ${file}: ${errorMessage(err)}`, { cause: err });
    }
    const handler = mod.default;
    if (!isFunction(handler)) throw new SkiplockError(`task file ${file} must export a handler function as default`);
    const options = mod.options as TaskOptions | undefined;
    const schedule = mod.schedule as TaskSchedule | undefined;
    tasks[name] = { handler, ...(options !== undefined ? { options } : {}), ...(schedule !== undefined ? { schedule } : {}) };
  }
  return tasks;
}
