/**
 * The process under test: the bridge side of N calls, exactly as the media worker wires them
 * (WhatsAppLeg ⇄ MediaBridge ⇄ RtpSession), and nothing else. Driven over IPC by
 * bench/media-bridge.ts (the orchestrator, which relays call setup from the load generator,
 * bench/media/generator-process.ts, another process), so the generator's CPU is not counted
 * here. The orchestrator pins this process to core 0 and the generator to core 1 (`taskset`).
 *
 * Messages in:  {type:'setup', id, offer, sipSdp} | {type:'measure-start'} | {type:'measure-end'}
 *               | {type:'close-all'} | {type:'exit'}
 * Messages out: {type:'ready'} | {type:'setup-ok', id, answer, rtpPort} | {type:'setup-failed', id, error}
 *               | {type:'measured', ...} | {type:'closed'}
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import pino from 'pino';
import type { CallMediaPort } from '#worker/calls/media-port.ts';
import { DelayHistogram } from '#worker/media/delay-histogram.ts';
import { MediaBridge } from '#worker/media/media-bridge.ts';
import { RtpSession } from '#worker/media/rtp-session.ts';
import { parseSipAnswer } from '#worker/media/sip-sdp.ts';
import { MediaThreadPool } from '#worker/threads/pool.ts';
import { WhatsAppLeg } from '#worker/webrtc/whatsapp-leg.ts';

/**
 * `BENCH_MEDIA_THREADS=N` (bench/media-bridge.ts --media-threads N): the calls' media runs on N
 * media threads as the worker runs it with MEDIA_THREADS=N (CallMedia per call, pinned by
 * admission). The bridge's own counters (pacing, hold histogram) stay in the threads and are not
 * reported; loss is the generator's count as always, CPU is the whole process, and each thread's
 * CPU and last core are read from /proc (`threadCpu`).
 */
const MEDIA_THREADS = Number(process.env.BENCH_MEDIA_THREADS ?? 0);
const pool =
  MEDIA_THREADS > 0
    ? await MediaThreadPool.start({
        threads: MEDIA_THREADS,
        maxCalls: 10_000,
        media: {
          codecs: ['opus', 'PCMU', 'PCMA'],
          bindAddress: '127.0.0.1',
          portMin: 10000,
          portMax: 19999,
          transcode: { opusComplexity: 1 },
        },
        logger: pino({ level: 'silent' }),
        lagIntervalMs: 1000,
      })
    : undefined;
const threaded = new Map<string, CallMediaPort>();

/** CPU ticks (utime + stime) and the last core of each thread of this process (Linux /proc). */
function threadTicks(): Map<string, { name: string; ticks: number; core: number }> {
  const out = new Map<string, { name: string; ticks: number; core: number }>();
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const name = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // Fields after the name: state is [0], utime [11], stime [12], processor [36] (proc(5), 1-based 3, 14, 15, 39).
      out.set(tid, { name, ticks: Number(f[11]) + Number(f[12]), core: Number(f[36]) });
    }
  } catch {
    // not Linux
  }
  return out;
}
let ticksAtStart = threadTicks();

interface Call {
  leg: WhatsAppLeg;
  rtp: RtpSession;
  bridge: MediaBridge;
}

type Msg =
  | { type: 'setup'; id: string; offer: string; sipSdp: string }
  | { type: 'measure-start' }
  | { type: 'measure-end' }
  | { type: 'close-all' }
  | { type: 'profile-start' }
  | { type: 'profile-stop' }
  | { type: 'exit' };

let profiler: Session | undefined;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** Self time of a V8 CPU profile, by function and by area (werift sub-package, codec, node, bridge). */
function summarise(profile: { nodes: ProfileNode[]; samples?: number[]; timeDeltas?: number[] }) {
  const total = (profile.samples ?? []).length || 1;
  const area = (url: string, fn: string): string => {
    if (!url)
      return fn === '(garbage collector)'
        ? 'gc'
        : fn === '(idle)'
          ? 'idle (main thread waiting)'
          : fn === '(program)'
            ? 'program'
            : 'native (addons, libuv, crypto, syscalls)';
    // werift ships as one bundle (lib/index.mjs): its functions are told apart in topFunctions.
    if (url.includes('/werift/')) return 'werift';
    if (url.includes('@evan/opus')) return '@evan/opus';
    if (url.startsWith('node:')) return url;
    if (url.includes('/media-worker/')) return `media-worker/${url.split('/media-worker/')[1]}`;
    if (url.includes('node_modules/')) return url.split('node_modules/')[1]!.split('/')[0]!;
    return url.slice(-50);
  };
  const byArea = new Map<string, number>();
  const byFn = new Map<string, number>();
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    if (!hits) continue;
    const a = area(n.callFrame.url, n.callFrame.functionName);
    byArea.set(a, (byArea.get(a) ?? 0) + hits);
    const f = `${n.callFrame.functionName || '(anonymous)'} ${a}:${n.callFrame.lineNumber + 1}`;
    byFn.set(f, (byFn.get(f) ?? 0) + hits);
  }
  const top = (m: Map<string, number>, k: number) =>
    [...m.entries()]
      .sort((x, y) => y[1] - x[1])
      .slice(0, k)
      .map(([name, hits]) => ({ name, selfPct: Math.round((hits / total) * 1000) / 10 }));
  return { samples: total, byArea: top(byArea, 15), topFunctions: top(byFn, 20) };
}

const calls = new Map<string, Call>();
/** Histogram resolution: recorded values are the timer interval, so lag = value − resolution. */
const ELD_RESOLUTION_MS = 10;
const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
eld.enable();

/** GC pauses in the current window. */
const gc = { count: 0, totalMs: 0, maxMs: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gc.count++;
    gc.totalMs += e.duration;
    gc.maxMs = Math.max(gc.maxMs, e.duration);
  }
}).observe({ entryTypes: ['gc'] });

let window:
  | {
      cpu: NodeJS.CpuUsage;
      at: number;
      stats: ReturnType<typeof totals>;
      hold: Uint32Array;
      loopStalls: number;
      loopStallMs: number;
    }
  | undefined;

/** Every call's SIP→WhatsApp hold histogram, merged. */
function holdNow(): DelayHistogram {
  const h = new DelayHistogram();
  for (const c of calls.values()) h.merge(c.bridge.sipToWhatsappHold);
  return h;
}

/**
 * `BENCH_LOOP_STALL=1` (bench/media-bridge.ts --loop-stall): block this process's event loop
 * with a busy wait of 100–200 ms every 3–5 s, as a GC pause or another call's DTLS handshake.
 */
let loopStalls = 0;
/** Time spent in those busy blocks, ms: taken out of the CPU figure (it is the stall, not the bridge's work). */
let loopStallMs = 0;
if (process.env.BENCH_LOOP_STALL === '1') {
  const between = (lo: number, hi: number) => lo + Math.random() * (hi - lo);
  const stall = () => {
    const from = performance.now();
    const until = from + between(100, 200);
    while (performance.now() < until) {
      // busy: the loop is blocked, sockets queue up
    }
    loopStalls++;
    loopStallMs += performance.now() - from;
    setTimeout(stall, between(3000, 5000)).unref();
  };
  setTimeout(stall, between(3000, 5000)).unref();
}

function send(msg: Record<string, unknown>): void {
  process.send?.(msg);
}

function totals() {
  const t = {
    waIn: 0,
    waOut: 0,
    waLost: 0,
    sipIn: 0,
    sipOut: 0,
    sipLost: 0,
    paced: 0,
    overflowDropped: 0,
    late: 0,
  };
  for (const c of calls.values()) {
    const s = c.bridge.stats();
    t.waIn += s.whatsappToSip.packetsIn;
    t.waOut += s.whatsappToSip.packetsOut;
    t.waLost += s.whatsappToSip.lost;
    t.sipIn += s.sipToWhatsapp.packetsIn;
    t.sipOut += s.sipToWhatsapp.packetsOut;
    t.sipLost += s.sipToWhatsapp.lost;
    t.paced += s.sipToWhatsapp.paced;
    t.overflowDropped += s.sipToWhatsapp.overflowDropped;
    t.late += s.sipToWhatsapp.late;
  }
  return t;
}

async function setupThreaded(m: Extract<Msg, { type: 'setup' }>): Promise<void> {
  const media = pool!.open(pino({ level: 'silent' }), m.id);
  try {
    const answer = await media.leg.answer(m.offer);
    media.leg.startSilence();
    const sdp = await media.openSip();
    media.start(parseSipAnswer(m.sipSdp), m.id);
    threaded.set(m.id, media);
    send({ type: 'setup-ok', id: m.id, answer, rtpPort: sdp.port, mode: media.mode });
  } catch (err) {
    await media.close();
    send({ type: 'setup-failed', id: m.id, error: String(err) });
  }
}

async function setup(m: Extract<Msg, { type: 'setup' }>): Promise<void> {
  if (pool) return setupThreaded(m);
  const leg = new WhatsAppLeg({ callId: m.id });
  try {
    const answer = await leg.answer(m.offer);
    leg.startSilence();
    const rtp = await RtpSession.open({ bindAddress: '127.0.0.1', portRange: [10000, 19999], callId: m.id });
    const bridge = new MediaBridge({ whatsapp: leg, rtp, sip: parseSipAnswer(m.sipSdp), callId: m.id });
    bridge.start();
    calls.set(m.id, { leg, rtp, bridge });
    send({ type: 'setup-ok', id: m.id, answer, rtpPort: rtp.port, mode: bridge.mode });
  } catch (err) {
    await leg.close().catch(() => undefined);
    send({ type: 'setup-failed', id: m.id, error: String(err) });
  }
}

function lagMs(q: number): number {
  return Math.max(0, eld.percentile(q) / 1e6 - ELD_RESOLUTION_MS);
}

process.on('message', (raw: unknown) => {
  const m = raw as Msg;
  switch (m.type) {
    case 'setup':
      void setup(m);
      return;
    case 'measure-start':
      ticksAtStart = threadTicks();
      eld.reset();
      gc.count = 0;
      gc.totalMs = 0;
      gc.maxMs = 0;
      window = {
        cpu: process.cpuUsage(),
        at: performance.now(),
        stats: totals(),
        hold: holdNow().counts,
        loopStalls,
        loopStallMs,
      };
      send({ type: 'measure-started' });
      return;
    case 'measure-end': {
      if (!window) return;
      const cpu = process.cpuUsage(window.cpu);
      const wallMs = performance.now() - window.at;
      const now = totals();
      const before = window.stats;
      const delta = Object.fromEntries(
        Object.entries(now).map(([k, v]) => [k, v - before[k as keyof typeof before]]),
      ) as typeof now;
      // Threaded: the media threads' loops are what the calls wait on; their last 1 s reports, worst thread.
      const threadLag = pool ? Math.max(...pool.threads().map((t) => t.lagP99Ms ?? 0)) : undefined;
      const lag = {
        p50Ms: lagMs(50),
        p99Ms: threadLag ?? lagMs(99),
        maxMs: Math.max(0, eld.max / 1e6 - ELD_RESOLUTION_MS),
        ...(threadLag === undefined ? {} : { mainThreadP99Ms: lagMs(99) }),
      };
      const ticksNow = threadTicks();
      // Clock ticks are 1/100 s on Linux (USER_HZ).
      const threadCpu = [...ticksNow.entries()]
        .map(([tid, t]) => ({
          tid,
          name: t.name,
          lastCore: t.core,
          coreFraction: Math.round(((t.ticks - (ticksAtStart.get(tid)?.ticks ?? 0)) * 10 * 1000) / wallMs) / 1000,
        }))
        .filter((t) => t.coreFraction > 0.005)
        .sort((a, b) => b.coreFraction - a.coreFraction);
      const gcWindow = { ...gc };
      globalThis.gc?.();
      const mem = process.memoryUsage();
      send({
        type: 'measured',
        gc: gcWindow,
        calls: calls.size + threaded.size,
        threadCpu,
        ...(pool ? { mediaThreads: pool.threads().map((t) => ({ index: t.index, calls: t.calls })) } : {}),
        // SIP packet arrival (RTP callback) → its frame handed to the WhatsApp leg, every call, this window.
        holdMs: (() => {
          const h = holdNow();
          for (let i = 0; i < h.counts.length; i++) h.counts[i] = (h.counts[i] as number) - (window.hold[i] as number);
          const windowed = new DelayHistogram();
          for (let i = 0; i < h.counts.length; i++)
            for (let k = 0; k < (h.counts[i] as number); k++) windowed.record(i);
          return windowed.count
            ? { n: windowed.count, p50: windowed.percentile(0.5), p99: windowed.percentile(0.99) }
            : undefined;
        })(),
        loopStalls: loopStalls - window.loopStalls,
        loopStallMs: loopStallMs - window.loopStallMs,
        callsOnSrtpFastPath: [...calls.values()].filter((c) => c.leg.srtpFastPathProfile !== undefined).length,
        wallMs,
        // Without the injected busy blocks (--loop-stall): those are the stall, not the bridge's work.
        cpuCoreFraction: Math.max(0, (cpu.user + cpu.system) / 1000 - (loopStallMs - window.loopStallMs)) / wallMs,
        lag,
        rssMb: mem.rss / 2 ** 20,
        heapUsedMb: mem.heapUsed / 2 ** 20,
        externalMb: (mem.external + mem.arrayBuffers) / 2 ** 20,
        bridge: delta,
      });
      return;
    }
    case 'close-all': {
      const all = [...calls.values()];
      calls.clear();
      const media = [...threaded.values()];
      threaded.clear();
      void (async () => {
        await Promise.all(media.map((c) => c.close()));
        for (const c of all) {
          await c.bridge.close();
          await Promise.allSettled([c.leg.close(), c.rtp.close()]);
        }
        globalThis.gc?.();
        const mem = process.memoryUsage();
        send({ type: 'closed', rssMb: mem.rss / 2 ** 20, heapUsedMb: mem.heapUsed / 2 ** 20 });
      })();
      return;
    }
    case 'profile-start':
      void (async () => {
        profiler = new Session();
        profiler.connect();
        await profiler.post('Profiler.enable');
        await profiler.post('Profiler.setSamplingInterval', { interval: 200 });
        await profiler.post('Profiler.start');
        send({ type: 'profile-started' });
      })();
      return;
    case 'profile-stop':
      void (async () => {
        const res = (await profiler!.post('Profiler.stop')) as { profile: Parameters<typeof summarise>[0] };
        profiler!.disconnect();
        // BENCH_PROFILE_OUT=dir: also keep the raw profile (open it in Chrome DevTools).
        if (process.env.BENCH_PROFILE_OUT) {
          const { writeFileSync } = await import('node:fs');
          writeFileSync(
            `${process.env.BENCH_PROFILE_OUT}/bridge-${Date.now()}.cpuprofile`,
            JSON.stringify(res.profile),
          );
        }
        send({ type: 'profile', ...summarise(res.profile) });
      })();
      return;
    case 'exit':
      process.exit(0);
  }
});

// The orchestrator is gone (crash, Ctrl-C): do not outlive it.
process.on('disconnect', () => process.exit(0));

// Baseline footprint before any call.
globalThis.gc?.();
const mem = process.memoryUsage();
send({ type: 'ready', rssMb: mem.rss / 2 ** 20, heapUsedMb: mem.heapUsed / 2 ** 20 });
