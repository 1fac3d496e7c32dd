import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { withSettingsTables } from '../../scripts/settings-table.ts';

describe('README settings table', () => {
  it('match the config schemas (run `npm run docs:settings` after changing settings)', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(withSettingsTables(readme)).toBe(readme);
  });
});
