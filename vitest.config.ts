import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

/** Unit and integration suites that need npm packages only (`npm test`). */
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/interop/**'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Two files at a time even on a 2-core machine: most files wait on sockets and timers, not the
    // CPU, and the suite is meant to hold with both cores busy (scripts/test-repeat.sh --busy).
    maxWorkers: Math.max(2, availableParallelism() - 1),
  },
});
