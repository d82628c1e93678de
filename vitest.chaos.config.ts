import { defineConfig } from 'vitest/config';

/**
 * The chaos suite (npm run test:chaos): worker processes under crashes, terminated backends,
 * server restarts and frozen processes. One file at a time: each one starts several worker
 * processes and some restart or kill server connections, which would disturb the others.
 */
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.chaos.ts'],
    testTimeout: 300_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    sequence: { concurrent: false },
  },
});
