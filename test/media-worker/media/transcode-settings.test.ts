/** The transcoding settings of the worker: the retired de-jitter key fails fast. */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '#core/errors.ts';
import { readSettings } from '#core/settings.ts';
import { WORKER_SETTINGS } from '#worker/config.ts';

const transcode = {
  TRANSCODE_JITTER_MS: WORKER_SETTINGS.TRANSCODE_JITTER_MS,
  TRANSCODE_OPUS_COMPLEXITY: WORKER_SETTINGS.TRANSCODE_OPUS_COMPLEXITY,
};

describe('Settings: TRANSCODE_*', () => {
  it('accepts TRANSCODE_JITTER_MS unset or 0 (encode on arrival)', () => {
    expect(readSettings(transcode, {})).toEqual({ TRANSCODE_JITTER_MS: 0, TRANSCODE_OPUS_COMPLEXITY: 1 });
    expect(readSettings(transcode, { TRANSCODE_JITTER_MS: '0' }).TRANSCODE_JITTER_MS).toBe(0);
  });

  it('stops the worker at start-up when TRANSCODE_JITTER_MS asks for the removed de-jitter buffer', () => {
    const attempt = () => readSettings(transcode, { TRANSCODE_JITTER_MS: '40' });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/TRANSCODE_JITTER_MS.*must be 0.*removed/);
  });
});
