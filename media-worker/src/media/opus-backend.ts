/**
 * Which libopus build `@evan/opus` runs: its prebuilt native addon (`node/<arch>-<platform>.node`,
 * shipped for linux x64/arm64, darwin and win32 x64) or the WebAssembly build it falls back to,
 * silently, when the addon does not load (another platform or libc, a broken install, or
 * `OPUS_FORCE_WASM`). Transcoding is mostly libopus time, so the fallback would cut a worker's
 * transcoding capacity without a word; the worker refuses to start on it unless told otherwise
 * (`OPUS_ALLOW_WASM=true`; issue 15 item 3).
 *
 * @module
 */

import { createRequire } from 'node:module';
import { Encoder } from '@evan/opus';

/** The libopus build in use. */
export type OpusBackend = 'native' | 'wasm';

/** The native libopus addon did not load and the WebAssembly build was not allowed. */
export class OpusBackendError extends Error {
  override readonly name = 'OpusBackendError';
  constructor(
    readonly platform: string,
    readonly reason: string,
  ) {
    super(
      `libopus: the native addon of @evan/opus is not in use on ${platform} (${reason}); the WebAssembly fallback ` +
        'transcodes several times slower. Fix the install, or set OPUS_ALLOW_WASM=true to run on it anyway',
    );
  }
}

const require = createRequire(import.meta.url);

/**
 * The backend `@evan/opus` chose: native when its exported `Encoder` extends the native addon's
 * (the library's classes extend whichever build it loaded).
 *
 * @param loadNative - loads the addon's module (replaceable in tests)
 */
export function opusBackend(
  loadNative: () => { Encoder: unknown } = () => require('@evan/opus/node/index.js') as { Encoder: unknown },
): { backend: OpusBackend; reason?: string } {
  try {
    const native = loadNative();
    return Object.getPrototypeOf(Encoder) === native.Encoder
      ? { backend: 'native' }
      : { backend: 'wasm', reason: 'the addon loads, but the library chose WebAssembly (OPUS_FORCE_WASM?)' };
  } catch (error) {
    return { backend: 'wasm', reason: error instanceof Error ? error.message.split('\n')[0]! : String(error) };
  }
}

/**
 * Throws {@link OpusBackendError} unless the native addon is in use or `allowWasm`; returns the
 * backend otherwise (for the start-up log).
 */
export function checkOpusBackend(
  allowWasm: boolean,
  found: { backend: OpusBackend; reason?: string } = opusBackend(),
): OpusBackend {
  if (found.backend === 'wasm' && !allowWasm) {
    throw new OpusBackendError(`${process.platform}-${process.arch}`, found.reason ?? 'unknown');
  }
  return found.backend;
}
