/**
 * Meta's `connect` refusals as the PBX hears them (D8.3, D6): one SIP status per Meta code, a Reason
 * header with Meta's own code and text, and Retry-After where Meta says when to try again.
 */
import { describe, expect, it } from 'vitest';
import { MetaApiError } from '#core/errors.ts';
import { sipStatusForMeta } from '#worker/calls/sip-refusal.ts';

const T0 = Date.UTC(2026, 3, 1, 9, 0, 0);

function metaError(code: number, details: string, errorData: Record<string, unknown> = {}): MetaApiError {
  return new MetaApiError(`(#${code}) ${details}`, {
    status: 400,
    metaCode: code,
    details,
    errorData: { messaging_product: 'whatsapp', details, ...errorData },
  });
}

describe('SIP answers to Meta connect errors', () => {
  it.each([
    [138006, 403, 'no-permission'],
    [138013, 403, 'business-country-blocked'],
    [131030, 403, 'test-number-allow-list'],
    [138000, 403, 'calling-disabled'],
    [131055, 403, 'sip-mode-enabled'],
    [138012, 480, 'daily-limit'],
    [138014, 480, 'calling-temporarily-disabled'],
    [138001, 404, 'not-on-whatsapp'],
    [138003, 486, 'already-in-a-call'],
    [138002, 503, 'meta-rate-limit'],
    [138005, 503, 'meta-rate-limit'],
  ])('Meta %i is SIP %i (%s)', (code, status, text) => {
    // Before: 131030, 138000, 138014 and 131055 all became 503 meta-unavailable, 138012 a 403.
    expect(sipStatusForMeta(metaError(code, 'why'), T0)).toMatchObject({ status, text: `${text} (Meta ${code}: why)` });
  });

  it("carries Meta's code and text in the Reason header", () => {
    const refusal = sipStatusForMeta(metaError(131030, 'Recipient phone number not in allowed list'), T0);
    expect(refusal.headers).toEqual({
      Reason:
        'SIP;cause=403;text="test-number-allow-list (Meta 131030: Recipient phone number not in allowed list)", ' +
        'WhatsApp;cause=131030;text="Recipient phone number not in allowed list"',
    });
  });

  it('adds Retry-After when Meta names the next allowed time (138012)', () => {
    const until = Math.floor(T0 / 1000) + 3600;
    const refusal = sipStatusForMeta(metaError(138012, 'Limit reached', { limit_expiration_time: until }), T0);
    expect(refusal.status).toBe(480);
    expect(refusal.headers['Retry-After']).toBe('3600');
    const next = sipStatusForMeta(metaError(138012, 'Limit reached', { next_allowed_time: String(until + 60) }), T0);
    expect(next.headers['Retry-After']).toBe('3660');
  });

  it('answers 503 meta-unavailable, without a Meta reason, when Meta could not be reached', () => {
    expect(sipStatusForMeta(new MetaApiError('timeout', { status: 0 }), T0)).toEqual({
      status: 503,
      text: 'meta-unavailable',
      headers: { Reason: 'SIP;cause=503;text="meta-unavailable"' },
    });
  });
});
