import { defineConfig } from 'vitest/config';

/** Unit and integration suites that need npm packages only (`npm test`). */
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/interop/**'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    pool: 'forks',
  },
});
