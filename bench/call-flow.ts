/**
 * Signalling latency of the whole local stack (one process, loopback): the Meta simulator's
 * webhooks → HTTP gateway → webhook function → dynalite + local SQS → in-process media worker →
 * SIP agent, and back to the simulator's Graph API.
 *
 * Per call (placed one after another, each with a real WebRTC relay):
 *  - webhook → INVITE: the simulator logs the `connect` webhook → the SIP agent receives the INVITE
 *    (the worker answers the WebRTC offer and pre-accepts at Meta first, by design);
 *  - 200 → accept: the SIP agent sends 200 OK → the simulator receives the Graph `accept`;
 *  - terminate → BYE: the user hangs up, the simulator logs the `terminate` webhook → the SIP agent
 *    receives the BYE (in-call event delivery through the control queue).
 * Simulator log times are epoch ms (1 ms resolution); agent-side times come from hooks on the
 * agent's call objects (sub-ms). The INVITE hook fires once the agent has opened its RTP port,
 * a fraction of a millisecond after the INVITE arrives.
 *
 * Usage: node --import tsx bench/call-flow.ts [--calls N]
 */
import type { AgentCall } from '#local/sip-agent.ts';
import { startTestStack } from '#test/helpers/test-stack.ts';
import { aim, machine, progress, round, sleep, summaryMs } from './lib/common.ts';

const args = process.argv.slice(2);
const CALLS = Number(args.includes('--calls') ? args[args.indexOf('--calls') + 1] : 60);
const TALK_MS = 300;
const WARMUP_CALLS = 2;

const nowMs = () => performance.timeOrigin + performance.now();

interface Marks {
  inviteAt?: number;
  okSentAt?: number;
}

async function main(): Promise<void> {
  const started = performance.now();
  const stack = await startTestStack({ SIP_RING_TIMEOUT_SECONDS: '10' }, { bridge: true });
  const agent = stack.agent!;
  const simulator = stack.simulator!;
  agent.configure({ behaviour: 'answer', codecs: ['PCMU'], audio: 'tone', earlyMedia: false, answerDelayMs: 0 });

  // Hooks on the agent: the call object is pushed when the INVITE has arrived, and its
  // InboundSipCall.answer() sends the 200 OK.
  const marks = new Map<AgentCall, Marks>();
  const calls = agent.calls;
  const push = calls.push.bind(calls);
  calls.push = (...items: AgentCall[]) => {
    for (const c of items) {
      const m: Marks = { inviteAt: nowMs() };
      marks.set(c, m);
      const sip = c.sip as unknown as { answer: (...a: unknown[]) => Promise<unknown> };
      const answer = sip.answer.bind(sip);
      sip.answer = (...a: unknown[]) => {
        m.okSentAt = nowMs();
        return answer(...a);
      };
    }
    return push(...items);
  };

  const webhookToInvite: number[] = [];
  const okToAccept: number[] = [];
  const terminateToBye: number[] = [];
  const connectToAccept: number[] = [];
  const failures: string[] = [];
  try {
    for (let i = 0; i < CALLS + WARMUP_CALLS; i++) {
      const waId = `55119${String(10_000_000 + i).slice(-8)}`;
      try {
        const next = agent.nextCall(10_000);
        const call = await simulator.placeUserCall({ user: { waId, name: `Bench ${i}` } });
        const agentCall = await next;
        await call.waitFor('accepted', 10_000);
        await sleep(TALK_MS);
        call.hangUp();
        await Promise.race([
          agentCall.ended,
          sleep(5000).then(() => {
            throw new Error('no BYE within 5 s');
          }),
        ]);
        const byeAt = nowMs();
        const log = call.log;
        const connect = log.find((e) => e.kind === 'webhook' && e.name === 'connect')?.at;
        const accept = log.find((e) => e.kind === 'action' && e.name === 'accept')?.at;
        const terminate = log.find((e) => e.kind === 'webhook' && e.name === 'terminate')?.at;
        const m = marks.get(agentCall) ?? {};
        if (connect === undefined || accept === undefined || terminate === undefined || !m.inviteAt || !m.okSentAt) {
          throw new Error(
            `missing marks: ${JSON.stringify({ connect, accept, terminate, ...m, log: log.map((e) => `${e.kind}:${e.name}`) })}`,
          );
        }
        if (i < WARMUP_CALLS) continue;
        webhookToInvite.push(m.inviteAt - connect);
        okToAccept.push(accept - m.okSentAt);
        terminateToBye.push(byeAt - terminate);
        connectToAccept.push(accept - connect);
      } catch (err) {
        failures.push(String(err));
        progress(`call ${i} failed: ${String(err)}`);
        if (failures.length > 5) throw new Error('too many failed calls');
      }
      // Let the worker finish writing the ended record before the next call.
      await sleep(100);
    }
  } finally {
    await stack.stop();
  }

  const w = summaryMs(webhookToInvite);
  const a = summaryMs(okToAccept);
  const t = summaryMs(terminateToBye);
  const out = {
    bench: 'call-flow',
    machine: machine(),
    setup: {
      note: 'whole local stack in one process (dynalite, local SQS, HTTP gateway, Meta simulator with WebRTC relay, in-process media worker, SIP agent), loopback; calls placed one after another, G.711 at the agent',
      calls: CALLS,
      warmupCalls: WARMUP_CALLS,
      talkMs: TALK_MS,
      resolution: 'simulator timestamps 1 ms',
    },
    results: {
      webhookToInvite: {
        ...w,
        meaning: 'connect webhook sent → INVITE at the SIP agent (includes WebRTC answer and pre_accept)',
      },
      okToAccept: { ...a, meaning: '200 OK sent by the SIP agent → Graph accept received by the simulator' },
      terminateToBye: { ...t, meaning: 'terminate webhook sent → BYE at the SIP agent' },
      connectToAccept: {
        ...summaryMs(connectToAccept),
        meaning: 'connect webhook → accept (whole answer path, agent answers at once)',
      },
      failures,
    },
    aims: [aim('terminate → BYE p99 ms', t.p99Ms, '<', 100)],
    durationS: round((performance.now() - started) / 1000, 1),
  };
  process.stdout.write(`${JSON.stringify({ ...out, allAimsPass: out.aims.every((x) => x.pass) })}\n`);
  setTimeout(() => process.exit(0), 200);
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
