/**
 * A worker must not transcode on libopus's WebAssembly build without saying so: @evan/opus falls
 * back to it silently when its native addon does not load (issue 15 item 3).
 */
import { Encoder } from '@evan/opus';
import { describe, expect, it } from 'vitest';
import { checkOpusBackend, OpusBackendError, opusBackend } from '#worker/media/opus-backend.ts';

describe('the libopus backend', () => {
  it('is the native addon on this machine (the library’s Encoder extends the addon’s)', () => {
    expect(opusBackend()).toEqual({ backend: 'native' });
    expect(checkOpusBackend(false)).toBe('native');
  });

  it('a missing addon (another platform, a broken install) stops the worker, naming the load error', () => {
    const found = opusBackend(() => {
      throw new Error("Cannot find module './riscv64-linux.node'\nRequire stack: …");
    });

    expect(found).toEqual({ backend: 'wasm', reason: "Cannot find module './riscv64-linux.node'" });
    expect(() => checkOpusBackend(false, found)).toThrow(OpusBackendError);
    expect(() => checkOpusBackend(false, found)).toThrow(/riscv64-linux\.node.*OPUS_ALLOW_WASM=true/);
  });

  it('an addon that loads while the library chose WebAssembly (OPUS_FORCE_WASM) counts as WebAssembly', () => {
    const found = opusBackend(() => ({ Encoder: class NotTheExportedOne {} }));

    expect(found.backend).toBe('wasm');
    expect(() => checkOpusBackend(false, found)).toThrow(OpusBackendError);
  });

  it('OPUS_ALLOW_WASM=true lets it start on WebAssembly', () => {
    expect(checkOpusBackend(true, { backend: 'wasm', reason: 'x' })).toBe('wasm');
    expect(Encoder).toBeTypeOf('function');
  });
});
