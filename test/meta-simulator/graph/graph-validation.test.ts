/**
 * Exact Graph error bodies for request-level validation (meta-calling-api.md §3, §6, §7 item 1).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callEvent, type Env, stableError, startEnv } from './harness.ts';

let env: Env;
beforeAll(async () => {
  env = await startEnv();
});
afterAll(async () => {
  await env.close();
});

const err = (code: number, message: string, details: string, extra: Record<string, unknown> = {}) => ({
  error: {
    message,
    type: 'OAuthException',
    code,
    error_data: { messaging_product: 'whatsapp', details },
    ...extra,
    fbtrace_id: 'X',
  },
});

describe('Graph request validation', () => {
  const calls = () => `/${env.sim.business.phoneNumberId}/calls`;

  it('a missing or wrong Bearer token is 401 with code 190', async () => {
    const missing = await env.graph(
      'POST',
      calls(),
      { messaging_product: 'whatsapp', action: 'terminate', call_id: 'x' },
      { token: null },
    );
    expect(missing.status).toBe(401);
    expect(stableError(missing.body)).toEqual(
      err(
        190,
        '(#190) Invalid OAuth access token - Cannot parse access token',
        'An access token is required to request this resource.',
      ),
    );
    const wrong = await env.graph('POST', calls(), { messaging_product: 'whatsapp' }, { token: 'EAAG-wrong' });
    expect(wrong.status).toBe(401);
    expect(stableError(wrong.body)).toEqual(
      err(
        190,
        '(#190) Invalid OAuth access token - Cannot parse access token',
        'The access token could not be decrypted',
      ),
    );
  });

  it('any v17+ version is served; older versions and unknown phone-number ids are errors', async () => {
    const v = await fetch(`${env.sim.baseUrl}/v17.0/${env.sim.business.phoneNumberId}/settings`, {
      headers: { Authorization: 'Bearer EAAG-test-token' },
    });
    expect(v.status).toBe(200);
    const old = await fetch(`${env.sim.baseUrl}/v14.0/${env.sim.business.phoneNumberId}/settings`, {
      headers: { Authorization: 'Bearer EAAG-test-token' },
    });
    expect(old.status).toBe(400);
    const unknown = await env.graph('POST', '/999999/calls', { messaging_product: 'whatsapp' });
    expect(unknown.status).toBe(400);
    expect(stableError(unknown.body)).toEqual(
      err(
        100,
        '(#100) Invalid parameter',
        "Unsupported post request. Object with ID '999999' does not exist, cannot be loaded due to missing permissions, or does not support this operation.",
        { error_subcode: 33 },
      ),
    );
  });

  it('bad JSON, missing/wrong messaging_product, unknown action and missing call_id are error 100', async () => {
    const bad = await env.graph('POST', calls(), undefined, { raw: '{"messaging_product":' });
    expect(bad.status).toBe(400);
    expect(stableError(bad.body)).toEqual(err(100, '(#100) Invalid parameter', 'Request body is not valid JSON'));

    const noMp = await env.graph('POST', calls(), { action: 'terminate', call_id: 'x' });
    expect(stableError(noMp.body)).toEqual(
      err(100, '(#100) Invalid parameter', 'The parameter messaging_product is required.'),
    );

    const wrongMp = await env.graph('POST', calls(), { messaging_product: 'sms', action: 'terminate', call_id: 'x' });
    expect(wrongMp.body.error.error_data.details).toBe(
      "Invalid value for messaging_product: 'sms'. Expected 'whatsapp'.",
    );

    const action = await env.graph('POST', calls(), { messaging_product: 'whatsapp', action: 'hold', call_id: 'x' });
    expect(action.body.error.error_data.details).toBe(
      "Invalid action 'hold'. Expected one of connect, pre_accept, accept, reject, terminate.",
    );

    const noId = await env.graph('POST', calls(), { messaging_product: 'whatsapp', action: 'reject' });
    expect(stableError(noId.body)).toEqual(err(100, '(#100) Invalid parameter', 'The parameter call_id is required.'));
  });

  it('biz_opaque_callback_data: 512 characters pass, 513 are error 100', async () => {
    const call = await env.sim.placeUserCall({ user: { waId: '5511955557777' } });
    await env.rx.waitFor(callEvent('connect', call.id));
    const tooLong = await env.graph('POST', calls(), {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'terminate',
      biz_opaque_callback_data: 'x'.repeat(513),
    });
    expect(tooLong.status).toBe(400);
    expect(stableError(tooLong.body)).toEqual(
      err(100, '(#100) Invalid parameter', 'biz_opaque_callback_data must be at most 512 characters (got 513)'),
    );
    const ok = await env.graph('POST', calls(), {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'terminate',
      biz_opaque_callback_data: 'x'.repeat(512),
    });
    expect(ok).toEqual({ status: 200, body: { messaging_product: 'whatsapp', success: true } });
  });

  it('accept without session, and connect with sdp_type "answer", are error 100', async () => {
    const call = await env.sim.placeUserCall({ user: { waId: '5511955558888' } });
    const noSession = await env.graph('POST', calls(), {
      messaging_product: 'whatsapp',
      call_id: call.id,
      action: 'accept',
    });
    expect(noSession.body.error.error_data.details).toBe('The parameter session is required for action accept.');
    call.hangUp();
    const connect = await env.graph('POST', calls(), {
      messaging_product: 'whatsapp',
      to: '5511955558888',
      action: 'connect',
      session: { sdp_type: 'answer', sdp: 'v=0\r\n' },
    });
    expect(connect.body.error.error_data.details).toBe(
      "Invalid session.sdp_type 'answer' for action connect: expected 'offer'.",
    );
  });

  it('recording/transcription opt-ins: ENABLED needs a purpose ≤ 250 characters and a listed announcement_language (M-REC)', async () => {
    const accept = (optIns: Record<string, unknown>) =>
      env.graph('POST', calls(), {
        messaging_product: 'whatsapp',
        call_id: 'wacid.opt-in-check',
        action: 'accept',
        session: { sdp_type: 'answer', sdp: 'v=0\r\n' },
        ...optIns,
      });
    const details = async (optIns: Record<string, unknown>) => {
      const res = await accept(optIns);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe(100);
      return res.body.error.error_data.details as string;
    };
    expect(await details({ recording: { status: 'ENABLED', announcement_language: 'en_US' } })).toBe(
      'The parameter recording.purpose is required when recording.status is ENABLED.',
    );
    expect(
      await details({
        transcription: { status: 'ENABLED', purpose: 'x'.repeat(251), announcement_language: 'en_US' },
      }),
    ).toBe('transcription.purpose must be at most 250 characters (got 251).');
    expect(
      await details({ recording: { status: 'ENABLED', purpose: 'quality assurance', announcement_language: 'xx_YY' } }),
    ).toBe("Invalid recording.announcement_language 'xx_YY'. Supported: en_US, es_ES, nl.");
    expect(await details({ recording: { status: 'ENABLED', purpose: 'quality assurance' } })).toBe(
      "Invalid recording.announcement_language 'undefined'. Supported: en_US, es_ES, nl.",
    );
    // Valid opt-ins (and DISABLED without a purpose) pass validation: the request then fails on the unknown call.
    expect(
      await details({
        recording: { status: 'ENABLED', purpose: 'x'.repeat(250), announcement_language: 'en_US' },
        transcription: { status: 'DISABLED' },
      }),
    ).toBe('Invalid call_id: no call with id wacid.opt-in-check for this phone number');
    // The same rules on a business-initiated connect.
    const connect = await env.graph('POST', calls(), {
      messaging_product: 'whatsapp',
      to: '5511955559999',
      action: 'connect',
      session: { sdp_type: 'offer', sdp: 'v=0\r\n' },
      recording: { status: 'ENABLED', purpose: '', announcement_language: 'en_US' },
    });
    expect(connect.body.error.error_data.details).toBe(
      'The parameter recording.purpose is required when recording.status is ENABLED.',
    );
  });
});
