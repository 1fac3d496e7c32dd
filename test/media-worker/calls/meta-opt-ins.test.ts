/**
 * Meta-side recording and transcription, opted in from the worker's settings (M-REC, meta-calling-api.md
 * Corrections item 7). Meta refuses an `accept`/`connect` whose ENABLED opt-in lacks a purpose, has one over 250
 * characters, or names an announcement language off its list — every call would then fail — so the bridge checks
 * the same rules when its configuration loads and refuses to start, naming the setting.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '#core/errors.ts';
import { loadWorkerConfig } from '#worker/config.ts';
import { grantPermission } from '../../helpers/permissions.ts';
import { eventually, startTestStack, type TestStack } from '../../helpers/test-stack.ts';

const RECORDING = { purpose: 'quality assurance', announcement_language: 'en_US' };
const TRANSCRIPTION = { purpose: 'quality assurance', announcement_language: 'es_ES' };

describe('a worker configured to record and transcribe calls at Meta', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack(
      {},
      {
        bridge: true,
        workerEnv: { META_RECORDING: JSON.stringify(RECORDING), META_TRANSCRIPTION: JSON.stringify(TRANSCRIPTION) },
      },
    );
    stack.agent!.configure({ behaviour: 'answer', answerDelayMs: 200, earlyMedia: false });
  });
  afterAll(() => stack?.stop());

  it('opts a user-initiated call in on accept, and Meta accepts the call', async () => {
    const call = await stack.simulator!.placeUserCall({ user: { waId: '5511900000901' } });
    await call.waitFor('accepted', 8000);
    expect(call.record.optIns).toEqual({
      recording: { status: 'ENABLED', ...RECORDING },
      transcription: { status: 'ENABLED', ...TRANSCRIPTION },
    });
    call.hangUp();
  });

  it('opts a business-initiated call in on connect, and the user picks up', async () => {
    const number = '5511900000902';
    await grantPermission(stack, number);
    stack.simulator!.users.setScript(number, { bicAnswer: 'accept', bicAnswerDelayMs: 300 });
    const res = await stack.api('/v1/calls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ to: number, mode: 'customer-first' }),
    });
    expect(res.status).toBe(202);
    const call = await eventually(
      () =>
        stack.simulator!.calls.find(
          (c) => c.direction === 'BUSINESS_INITIATED' && c.user.waId === number && c.state === 'accepted',
        ),
      8000,
      'the WhatsApp user to pick up',
    );
    expect(call.record.optIns).toEqual({
      recording: { status: 'ENABLED', ...RECORDING },
      transcription: { status: 'ENABLED', ...TRANSCRIPTION },
    });
    call.hangUp();
  });
});

describe('a recording opt-in Meta would refuse', () => {
  const env = (extra: Record<string, string>) => ({
    SIP_TARGET_URI: 'sip:agent@127.0.0.1:5060',
    META_GRAPH_URL: 'http://127.0.0.1:1/v23.0',
    META_ACCESS_TOKEN: 'token',
    CALLS_TABLE: 'calls',
    WORKERS_TABLE: 'workers',
    CALL_JOBS_QUEUE_URL: 'http://127.0.0.1:1/queue/jobs',
    ...extra,
  });
  const refusal = (extra: Record<string, string>) => {
    try {
      loadWorkerConfig(env(extra));
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as Error).message;
    }
    throw new Error('the configuration loaded');
  };

  it('stops the worker at start-up, naming the setting and the rule', () => {
    expect(refusal({ META_RECORDING: JSON.stringify({ announcement_language: 'en_US' }) })).toContain('META_RECORDING');
    expect(refusal({ META_RECORDING: JSON.stringify({ announcement_language: 'en_US' }) })).toContain(
      'purpose is required',
    );
    expect(
      refusal({ META_RECORDING: JSON.stringify({ purpose: 'x'.repeat(251), announcement_language: 'en_US' }) }),
    ).toContain('purpose must be at most 250 characters (got 251)');
    expect(
      refusal({ META_TRANSCRIPTION: JSON.stringify({ purpose: 'quality assurance', announcement_language: 'fr_FR' }) }),
    ).toMatch(/META_TRANSCRIPTION.*announcement_language must be one of en_US, es_ES, nl \(got fr_FR\)/);
    expect(refusal({ META_RECORDING: 'yes' })).toMatch(/META_RECORDING.*not valid JSON/);
    // Unset: nothing is opted in.
    expect(loadWorkerConfig(env({})).meta.optIns).toEqual({});
  });
});
