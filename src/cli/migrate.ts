import { Command } from 'commander';
import { migrate } from '../index.js';
import { type GlobalOptions, openContext } from './common.js';

export function migrateCommand(): Command {
  return new Command('migrate')
    .description('create or upgrade the schema (safe to run from many processes at once)')
    .action(async function (this: Command) {
      const ctx = openContext(this.optsWithGlobals<GlobalOptions>(), 1);
      try {
        const result = await migrate(ctx.pool, ctx.schema).catch((err: unknown) => {
          throw ctx.describe(err);
        });
        const changes = [
          result.applied.length > 0 ? `applied ${result.applied.join(', ')}` : '',
          result.functions.length > 0 ? `functions ${result.functions.join(', ')}` : '',
        ].filter(Boolean);
        const applied = changes.length > 0 ? changes.join('; ') : 'already up to date';
        process.stdout.write(`schema ${ctx.schema} at version ${result.version} (${applied})\n`);
      } finally {
        await ctx.pool.end();
      }
    });
}
