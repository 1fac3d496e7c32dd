/**
 * Entry of a media thread: hosts the {@link CallMedia} of the calls pinned to this thread, keyed
 * by the main thread's key, runs requests and ordered commands on them, pushes their events, and
 * reports this thread's event-loop delay every `lagIntervalMs`. See protocol.ts for the messages.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import pino from 'pino';
import { CallMedia } from '../calls/call-media.ts';
import type { FromThread, MediaRequestOp, MediaThreadData, ThreadInspection, ToThread } from './protocol.ts';
import { LAG_RESOLUTION_MS, lagMs, toWire } from './protocol.ts';

interface Hosted {
  readonly media: CallMedia;
  stopAudio?: () => void;
  stopState?: () => void;
}

const data = workerData as MediaThreadData;
const port = parentPort;
if (!port) throw new Error('thread-main.ts runs only as a media thread (node:worker_threads)');
const log = pino({ level: data.logLevel, base: { service: 'media-worker', mediaThread: data.index } });
const calls = new Map<number, Hosted>();
const post = (message: FromThread) => port.postMessage(message);

port.on('message', (message: ToThread) => {
  switch (message.t) {
    case 'open':
      try {
        calls.set(message.key, {
          media: new CallMedia({ media: data.media }, log.child(message.bindings), message.callId),
        });
      } catch (error) {
        post({ t: 'failure', key: message.key, error: toWire(error) });
      }
      return;
    case 'request':
      request(message.key, message.op, message.arg).then(
        (value) => post({ t: 'reply', id: message.id, value }),
        (error: unknown) => post({ t: 'reply', id: message.id, error: toWire(error) }),
      );
      return;
    case 'command':
      try {
        command(message);
      } catch (error) {
        post({ t: 'failure', key: message.key, error: toWire(error) });
      }
      return;
    case 'inspect': {
      const inspection: ThreadInspection = {
        index: data.index,
        calls: calls.size,
        udpSockets: process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap').length,
      };
      post({ t: 'reply', id: message.id, value: inspection });
      return;
    }
  }
});

function hosted(key: number): Hosted {
  const h = calls.get(key);
  if (!h) throw new Error(`media thread ${data.index} holds no media for call key ${key}`);
  return h;
}

async function request(key: number, op: MediaRequestOp, arg?: string): Promise<unknown> {
  if (op === 'close') {
    const h = calls.get(key);
    if (!h) return undefined;
    h.stopAudio?.();
    h.stopState?.();
    await h.media.close();
    calls.delete(key);
    return undefined;
  }
  const { media } = hosted(key);
  switch (op) {
    case 'answer':
      return media.leg.answer(arg ?? '');
    case 'createOffer':
      return media.leg.createOffer();
    case 'applyAnswer':
      return media.leg.applyAnswer(arg ?? '');
    case 'openSip':
      return media.openSip();
    case 'stats':
      return media.stats();
  }
}

function command(message: ToThread & { t: 'command' }): void {
  const h = hosted(message.key);
  const { media } = h;
  switch (message.op) {
    case 'withholdMedia':
      media.leg.withholdMedia();
      return;
    case 'releaseMedia':
      media.leg.releaseMedia();
      return;
    case 'startSilence':
      media.leg.startSilence();
      return;
    case 'hold':
      media.hold();
      return;
    case 'resume':
      media.resume();
      return;
    case 'start':
      media.start(message.sip, message.callId);
      return;
    case 'updateSip':
      media.updateSip(message.sip);
      return;
    case 'sendDtmfToWhatsApp':
      media.sendDtmfToWhatsApp(message.digit, message.durationMs);
      return;
    case 'watchState':
      h.stopState ??= media.leg.onConnectionStateChange((state) => post({ t: 'state', key: message.key, state }));
      return;
    case 'watchAudio':
      h.stopAudio?.();
      h.stopAudio = media.leg.onAudio(() => {
        h.stopAudio?.();
        h.stopAudio = undefined;
        post({ t: 'audio', key: message.key });
      });
      return;
    case 'unwatchAudio':
      h.stopAudio?.();
      h.stopAudio = undefined;
      return;
  }
}

// The event-loop delay of this thread: what a call pinned here waits behind (GC, DTLS, other calls).
// The histogram records each sampling timer's interval, so the lag is a value less the resolution.
const delay = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
delay.enable();
setInterval(() => {
  post({
    t: 'lag',
    p99Ms: lagMs(delay.percentile(99)),
    maxMs: lagMs(delay.max),
    meanMs: lagMs(delay.mean),
  });
  delay.reset();
}, data.lagIntervalMs).unref();

post({ t: 'ready' });
