import { defineConfig } from 'vitest/config';

/** Suites that need system packages (SIPp, baresip, Chromium): `npm run test:interop`. */
export default defineConfig({
  test: {
    include: ['test/interop/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    passWithNoTests: false,
  },
});
