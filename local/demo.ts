/**
 * `npm run demo [-- --json]`: brings up the local stack (Meta simulator, control plane, media
 * worker, SIP agent) on free loopback ports and checks three calls end to end — two user-initiated
 * calls the agent answers with G.711 (transcoding) and with Opus (passthrough), and one
 * business-initiated call the PBX starts after the user granted permission: a 1 kHz tone each way
 * measured on the far side of the bridge, DTMF each way, and the hang-up. Prints one line per call;
 * exits non-zero if any check fails.
 */
import { parseArgs } from 'node:util';
import pino from 'pino';
import type { CallRecord } from '#core/calls/call-record.ts';
import { measureTone } from '#simulator/media/audio.ts';
import type { SimCall } from '#simulator/simulator.ts';
import type { SipCodecName } from '#worker/media/sip-sdp.ts';
import { loadLocalConfig } from './config.ts';
import { freePort } from './ports.ts';
import type { AgentCall } from './sip-agent.ts';
import { startLocalStack } from './stack.ts';

interface CallReport {
  direction: 'user-initiated' | 'business-initiated';
  /** For business-initiated calls: who started it. */
  startedBy?: 'pbx';
  codec: SipCodecName;
  mode?: string;
  result: 'ok' | 'failed';
  setupMs?: number;
  answerMs?: number;
  toneToSip?: { hz: number; dbfs: number };
  toneToWhatsApp?: { hz: number; dbfs: number };
  dtmf?: { sent: string; received: string };
  dtmfToWhatsApp?: { sent: string; received: string };
  hangup?: 'ok' | 'failed';
  hangupToSipMs?: number;
  failures: string[];
}

const TONE_HZ = 1000;
const TONE_DBFS = -12;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { json: { type: 'boolean', default: false } } });
  const json = values.json ?? false;
  const say = (text: string) => {
    if (!json) process.stdout.write(`${text}\n`);
  };
  const config = loadLocalConfig({
    ...process.env,
    PORT: '0',
    META_SIMULATOR_PORT: '0',
    SIP_PORT: String(await freePort('127.0.0.1')),
    LOCAL_SIP_AGENT_PORT: String(await freePort('127.0.0.2')),
    SIP_TARGET_URI: '',
    LOG_LEVEL: 'ERROR',
  });
  say('starting the local stack…');
  const quiet = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };
  const stack = await startLocalStack({
    config,
    logger: quiet,
    worker: 'in-process',
    workerLogger: pino({ level: 'silent' }),
    agent: { audio: 'tone', toneHz: TONE_HZ, toneDbfs: TONE_DBFS },
  });
  const reports: CallReport[] = [];
  try {
    for (const codec of ['PCMU', 'opus'] as const) {
      say(`calling the SIP agent through the bridge (agent answers with ${codec})…`);
      const report = await demoCall(stack, codec);
      reports.push(report);
      if (json) process.stdout.write(`${JSON.stringify(report)}\n`);
      else say(describe(report));
    }
    say('asking the WhatsApp user for call permission, then calling them from the PBX…');
    const report = await demoBusinessCall(stack);
    reports.push(report);
    if (json) process.stdout.write(`${JSON.stringify(report)}\n`);
    else say(describe(report));
  } finally {
    await stack.stop();
  }
  process.exitCode = reports.every((r) => r.result === 'ok') ? 0 : 1;
}

async function demoCall(stack: Awaited<ReturnType<typeof startLocalStack>>, codec: SipCodecName): Promise<CallReport> {
  const sim = stack.simulator!;
  const agent = stack.agent!;
  agent.configure({ codecs: [codec], behaviour: 'answer', audio: 'tone', toneHz: TONE_HZ, toneDbfs: TONE_DBFS });
  const report: CallReport = { direction: 'user-initiated', codec, result: 'failed', failures: [] };
  const check = (ok: boolean, what: string) => {
    if (!ok) report.failures.push(what);
  };
  try {
    const nextAgentCall = agent.nextCall(10_000);
    const call = await sim.placeUserCall({ user: { waId: '5511987654321', name: 'Demo Caller' } });
    const agentCall = await nextAgentCall;
    await call.waitFor('accepted', 10_000);

    const record = await checkMediaAndHangUp(stack, call, agentCall, report, check);
    check(record?.endReason === 'caller-hung-up', 'ended as caller-hung-up');
    if (record?.timings?.setupMs !== undefined) report.setupMs = record.timings.setupMs;
    if (record?.timings?.answerMs !== undefined) report.answerMs = record.timings.answerMs;
    if (record?.media) report.mode = record.media.mode;
  } catch (error) {
    report.failures.push(error instanceof Error ? error.message : String(error));
  }
  report.result = report.failures.length === 0 ? 'ok' : 'failed';
  return report;
}

/**
 * A business-initiated call started from the PBX side: the business asks the user for permission
 * through the control API (the simulated user accepts), then the SIP agent, acting as the PBX,
 * sends an INVITE to sip:+<number>@<bridge>; the user answers in WhatsApp.
 */
async function demoBusinessCall(stack: Awaited<ReturnType<typeof startLocalStack>>): Promise<CallReport> {
  const sim = stack.simulator!;
  const agent = stack.agent!;
  const number = '5511912345678';
  agent.configure({ codecs: ['PCMU'], behaviour: 'answer', audio: 'tone', toneHz: TONE_HZ, toneDbfs: TONE_DBFS });
  const report: CallReport = {
    direction: 'business-initiated',
    startedBy: 'pbx',
    codec: 'PCMU',
    result: 'failed',
    failures: [],
  };
  const check = (ok: boolean, what: string) => {
    if (!ok) report.failures.push(what);
  };
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${stack.url}${path}`, {
      ...init,
      headers: {
        authorization: `Bearer ${stack.runtime.config.controlApiKey}`,
        'content-type': 'application/json',
        ...(init.headers ?? {}),
      },
      signal: AbortSignal.timeout(5000),
    });
  try {
    sim.users.setScript(number, {
      permissionReply: 'accept_permanent',
      permissionReplyDelayMs: 10,
      bicAnswer: 'accept',
      bicAnswerDelayMs: 300,
    });
    const asked = await api(`/v1/permissions/${number}/request`, {
      method: 'POST',
      body: JSON.stringify({ kind: 'template' }),
    });
    check(asked.status === 201, `permission request answered ${asked.status}`);
    const granted = await waitFor(async () => {
      const r = (await (await api(`/v1/permissions/${number}`)).json()) as { effectiveState?: string };
      return r.effectiveState === 'permanent' ? r : undefined;
    }, 5000);
    check(granted !== undefined, 'permission granted');

    const contact = stack.worker!.sipContact;
    const invitedAt = Date.now();
    const agentCall = await agent.dial(`sip:+${number}@${contact.slice(contact.indexOf('@') + 1)}`);
    report.answerMs = Date.now() - invitedAt;
    const call = sim.calls.find(
      (c) => c.direction === 'BUSINESS_INITIATED' && c.user.waId === number && c.state === 'accepted',
    );
    if (!call) throw new Error('the WhatsApp side of the call is not up');

    const record = await checkMediaAndHangUp(stack, call, agentCall, report, check);
    check(record?.endedBy === 'whatsapp', 'ended by the WhatsApp user');
    if (record?.media) report.mode = record.media.mode;
  } catch (error) {
    report.failures.push(error instanceof Error ? error.message : String(error));
  }
  report.result = report.failures.length === 0 ? 'ok' : 'failed';
  return report;
}

/**
 * The checks every demo call makes once both sides are up: a tone each way measured on the far
 * side, DTMF each way, then the WhatsApp user hangs up and the SIP side must get its BYE.
 * Returns the ended call record (with media statistics).
 */
async function checkMediaAndHangUp(
  stack: Awaited<ReturnType<typeof startLocalStack>>,
  call: SimCall,
  agentCall: AgentCall,
  report: CallReport,
  check: (ok: boolean, what: string) => void,
): Promise<CallRecord | undefined> {
  // WhatsApp plays a tone; the agent plays one too. Each side records what reaches it.
  call.relay.startRecording();
  call.relay.playTone(TONE_HZ, TONE_DBFS);
  await sleep(2000);
  const atWhatsApp = measureTone(call.relay.stopRecording().slice(-48_000), 48_000);
  const atSip = measureTone(agentCall.recording().slice(-agentCall.sampleRate), agentCall.sampleRate);
  report.toneToWhatsApp = rounded(atWhatsApp);
  report.toneToSip = rounded(atSip);
  check(Math.abs(atWhatsApp.hz - TONE_HZ) <= 10 && Math.abs(atWhatsApp.dbfs - TONE_DBFS) <= 3, 'tone to WhatsApp');
  check(Math.abs(atSip.hz - TONE_HZ) <= 10 && Math.abs(atSip.dbfs - TONE_DBFS) <= 3, 'tone to SIP');

  await call.relay.sendDtmf('159#');
  await waitUntil(() => agentCall.receivedDigits.length >= 4, 3000);
  report.dtmf = { sent: '159#', received: agentCall.receivedDigits };
  check(agentCall.receivedDigits === '159#', 'DTMF to SIP');
  await stack.agent!.sendDtmf(agentCall, '42*');
  await waitUntil(() => call.relay.receivedDigits.length >= 3, 3000);
  report.dtmfToWhatsApp = { sent: '42*', received: call.relay.receivedDigits };
  check(call.relay.receivedDigits === '42*', 'DTMF to WhatsApp');

  const hungUpAt = Date.now();
  call.hangUp();
  const reached = await Promise.race([agentCall.ended.then(() => true), sleep(2000).then(() => false)]);
  report.hangupToSipMs = Date.now() - hungUpAt;
  const record = await waitFor(async () => {
    const r = await stack.runtime.calls.get(call.id);
    return r?.state === 'ended' && r.media ? r : undefined;
  }, 5000);
  report.hangup = reached && record !== undefined ? 'ok' : 'failed';
  check(report.hangup === 'ok', 'hang-up');
  if (record?.media) report.mode = record.media.mode;
  return record;
}

function describe(r: CallReport): string {
  const t = (x?: { hz: number; dbfs: number }) => (x ? `${x.hz} Hz at ${x.dbfs} dBFS` : 'n/a');
  return [
    `  ${r.result === 'ok' ? 'OK' : 'FAILED'}: ${r.direction}${r.startedBy ? ` from the ${r.startedBy.toUpperCase()}` : ''}, ${r.codec} (${r.mode ?? '?'}) setup ${r.setupMs ?? '-'} ms, answer ${r.answerMs ?? '?'} ms`,
    `    tone WhatsApp→SIP ${t(r.toneToSip)}; SIP→WhatsApp ${t(r.toneToWhatsApp)}`,
    `    DTMF to SIP ${r.dtmf?.received ?? '-'} (sent ${r.dtmf?.sent ?? '-'}); to WhatsApp ${r.dtmfToWhatsApp?.received ?? '-'} (sent ${r.dtmfToWhatsApp?.sent ?? '-'})`,
    `    hang-up ${r.hangup ?? '?'} (BYE at SIP after ${r.hangupToSipMs ?? '?'} ms)${r.failures.length ? `; failed: ${r.failures.join(', ')}` : ''}`,
  ].join('\n');
}

function rounded(x: { hz: number; dbfs: number }): { hz: number; dbfs: number } {
  return { hz: Math.round(x.hz * 10) / 10, dbfs: Math.round(x.dbfs * 10) / 10 };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check() && Date.now() < deadline) await sleep(20);
}

async function waitFor<T>(get: () => Promise<T | undefined>, timeoutMs: number): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await get();
    if (v) return v;
    await sleep(25);
  }
  return undefined;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
