import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { withSettingsTable } from '../../scripts/settings-table.ts';

describe('README settings table', () => {
  it('matches the config schema (run `npm run docs:settings` after changing settings)', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(withSettingsTable(readme)).toBe(readme);
  });
});
