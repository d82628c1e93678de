import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One file at a time: several files race dozens of connections or spawn eight worker
    // processes, and together they would pass PostgreSQL's default max_connections (100).
    fileParallelism: false,
    // Checks the server's headroom first and reports the peak connections afterwards.
    globalSetup: ['test/helpers/connections.ts'],
  },
});
