/** Errors cross from a media thread to the main thread as the same named errors, with their context. */
import { describe, expect, it } from 'vitest';
import { CallMediaClosedError } from '#worker/calls/call-media.ts';
import { MediaError, UnsupportedKeyExchangeError } from '#worker/media/errors.ts';
import { fromWire, toWire } from '#worker/threads/protocol.ts';

/** What the main thread gets for an error thrown on a media thread (through structured clone, as postMessage does). */
const crossed = (error: unknown) => fromWire(structuredClone(toWire(error)));

describe('errors from a media thread', () => {
  it('keep a MediaError’s code and context', () => {
    const error = crossed(new MediaError('invalid-sdp', 'no audio', { callId: 'wacid.1', component: 'whatsapp-leg' }));
    expect(error).toBeInstanceOf(MediaError);
    expect(error).toMatchObject({ code: 'invalid-sdp', message: 'no audio', context: { callId: 'wacid.1' } });
  });

  it('keep UnsupportedKeyExchangeError, so the call still ends unsupported-key-exchange', () => {
    const error = crossed(new UnsupportedKeyExchangeError('wacid.2'));
    expect(error).toBeInstanceOf(UnsupportedKeyExchangeError);
    expect(error).toMatchObject({ callId: 'wacid.2', keyExchange: 'SDES', setting: 'srtp_key_exchange_protocol' });
  });

  it('keep CallMediaClosedError with its call id', () => {
    const error = crossed(new CallMediaClosedError('wacid.3'));
    expect(error).toBeInstanceOf(CallMediaClosedError);
    expect(error).toMatchObject({ callId: 'wacid.3' });
  });

  it('keep the name and message of any other error', () => {
    const error = crossed(new RangeError('out of ports'));
    expect(error).toMatchObject({ name: 'RangeError', message: 'out of ports' });
    expect(crossed('a string')).toMatchObject({ name: 'Error', message: 'a string' });
  });
});
