/**
 * Meta refuses an API-started business call (D6): the request record says why in Meta's own words
 * (code, text), the call ends `meta-refused` (not `bridge-error`), and the ledger is corrected so the
 * next call is refused before Meta is bothered.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPermission } from '#core/permissions/service.ts';
import { grantPermission } from '../../helpers/permissions.ts';
import { eventually, startTestStack, TEST_BUSINESS, type TestStack } from '../../helpers/test-stack.ts';

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack({}, { bridge: true });
  stack.agent!.configure({ codecs: ['PCMU'], audio: 'tone', behaviour: 'answer' });
});
afterAll(() => stack?.stop());

describe('POST /v1/calls refused by Meta', () => {
  it("stores Meta's 138006 on the request, ends it meta-refused and corrects the ledger", async () => {
    // Before: the request ended `bridge-error` with the code only in a log line, and the ledger kept
    // its permanent permission, so every later call was placed and refused again.
    const number = '5511900000091';
    await grantPermission(stack, number);
    stack.simulator!.permissions.revoke(number); // Meta's side lost the permission; no webhook came.
    const res = await stack.api('/v1/calls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ to: number, mode: 'customer-first' }),
    });
    expect(res.status).toBe(202);
    const { requestId } = (await res.json()) as { requestId: string };
    const record = await eventually(async () => {
      const r = await stack.runtime.calls.get(requestId);
      return r?.state === 'ended' && r;
    }, 8000);
    expect(record).toMatchObject({
      endReason: 'meta-refused',
      endedBy: 'bridge',
      metaError: { code: 138006, httpStatus: 401 },
    });
    expect(record.metaError?.details ?? record.metaError?.message).toMatch(/permission/i);
    const { entry } = await findPermission(stack.runtime.permissions, TEST_BUSINESS.phoneNumberId, { phone: number });
    expect(entry).toMatchObject({ state: 'revoked', source: 'reconcile' });
  });
});

describe('a business call from a number set to SDES (srtp_key_exchange_protocol, M-SET)', () => {
  it("ends meta-refused with Meta's SDP validation text naming SDES, and leaves the ledger alone", async () => {
    const number = '5511900000092';
    await grantPermission(stack, number);
    stack.simulator!.settings.update({ calling: { srtp_key_exchange_protocol: 'SDES' } }, { appId: 'test' });
    try {
      const res = await stack.api('/v1/calls', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ to: number, mode: 'customer-first' }),
      });
      expect(res.status).toBe(202);
      const { requestId } = (await res.json()) as { requestId: string };
      const record = await eventually(async () => {
        const r = await stack.runtime.calls.get(requestId);
        return r?.state === 'ended' && r;
      }, 8000);
      // The bridge offers DTLS-SRTP; Meta in SDES mode refuses the connect before any call exists.
      expect(record).toMatchObject({ endReason: 'meta-refused', metaError: { code: 100 } });
      expect(record.metaError?.details ?? record.metaError?.message).toMatch(/SDES requires protocol RTP\/SAVP/);
      const { entry } = await findPermission(stack.runtime.permissions, TEST_BUSINESS.phoneNumberId, { phone: number });
      expect(entry?.state).not.toBe('revoked');
    } finally {
      stack.simulator!.settings.update({ calling: { srtp_key_exchange_protocol: 'DTLS' } }, { appId: 'test' });
    }
  });
});
