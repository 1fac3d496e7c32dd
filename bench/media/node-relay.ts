/**
 * The thinnest Node.js RTP relay, as a second anchor beside rtpengine (`--anchor node-relay`): what
 * any Node process pays per packet just to receive and send it, with none of the bridge's work
 * (no SRTP, no ICE/DTLS, no parsing, no pacing, no statistics). It speaks enough of rtpengine's ng
 * protocol (ping, offer, answer, delete; passthrough only) for the bench to drive it exactly as it
 * drives rtpengine: per call one socket facing each side, every datagram forwarded as it arrives
 * with one unconnected `send` and no callback (the cheapest form the bridge could also use).
 *
 * Run by bench/lib/rtpengine.ts (`Rtpengine.startNodeRelay`); never part of the product.
 * Usage: node --import tsx bench/media/node-relay.ts <ngPort> <portMin> <portMax>
 */
import { createSocket, type Socket } from 'node:dgram';
import { type Bencode, bdecode, bencode } from '../lib/ng-client.ts';

const [ngPort, portMin, portMax] = process.argv.slice(2).map(Number) as [number, number, number];
let nextPort = portMin;

interface Leg {
  socket: Socket;
  port: number;
  /** Where this leg's peer listens (from its SDP). */
  to?: { address: string; port: number };
}
interface Call {
  wa: Leg;
  pbx: Leg;
}
const calls = new Map<string, Call>();

async function openLeg(): Promise<Leg> {
  for (;;) {
    const port = nextPort;
    nextPort = nextPort + 2 > portMax ? portMin : nextPort + 2;
    const socket = createSocket('udp4');
    const ok = await new Promise<boolean>((resolve) => {
      socket.once('error', () => resolve(false));
      socket.bind(port, '127.0.0.1', () => resolve(true));
    });
    if (ok) return { socket, port };
    socket.close();
  }
}

/** The audio address of an SDP: c= and the first m=audio port. */
function sdpTarget(sdp: string): { address: string; port: number } {
  const address = /^c=IN IP4 (\S+)/m.exec(sdp)?.[1] ?? '127.0.0.1';
  const port = Number(/^m=audio (\d+)/m.exec(sdp)?.[1]);
  return { address, port };
}

/** The same SDP with our leg's address and port instead of the peer's. */
function rewrite(sdp: string, port: number): string {
  return sdp
    .replace(/^c=IN IP4 \S+/gm, 'c=IN IP4 127.0.0.1')
    .replace(/^m=audio \d+/m, `m=audio ${port}`)
    .replace(/^a=rtcp:.*\r?\n/gm, '');
}

function forward(from: Leg, to: Leg): void {
  from.socket.on('message', (msg) => {
    const t = to.to;
    if (t) to.socket.send(msg, t.port, t.address);
  });
}

async function handle(cmd: Record<string, Bencode | undefined>): Promise<Record<string, Bencode>> {
  const callId = String(cmd['call-id'] ?? '');
  switch (String(cmd.command)) {
    case 'ping':
      return { result: 'pong' };
    case 'offer': {
      if (cmd.codec !== undefined) return { result: 'error', 'error-reason': 'node-relay: passthrough only' };
      const call: Call = { wa: await openLeg(), pbx: await openLeg() };
      call.wa.to = sdpTarget(String(cmd.sdp));
      forward(call.wa, call.pbx);
      forward(call.pbx, call.wa);
      calls.set(callId, call);
      return { result: 'ok', sdp: rewrite(String(cmd.sdp), call.pbx.port) };
    }
    case 'answer': {
      const call = calls.get(callId);
      if (!call) return { result: 'error', 'error-reason': 'unknown call' };
      call.pbx.to = sdpTarget(String(cmd.sdp));
      return { result: 'ok', sdp: rewrite(String(cmd.sdp), call.wa.port) };
    }
    case 'delete': {
      const call = calls.get(callId);
      calls.delete(callId);
      call?.wa.socket.close();
      call?.pbx.socket.close();
      return { result: 'ok' };
    }
    default:
      return { result: 'error', 'error-reason': `unsupported command ${String(cmd.command)}` };
  }
}

const ng = createSocket('udp4');
ng.on('message', (msg, rinfo) => {
  const sp = msg.indexOf(0x20);
  if (sp < 0) return;
  const cookie = msg.subarray(0, sp);
  handle(bdecode(msg.subarray(sp + 1)) as Record<string, Bencode | undefined>).then(
    (reply) => ng.send(Buffer.concat([cookie, Buffer.from(' '), bencode(reply)]), rinfo.port, rinfo.address),
    (err: unknown) =>
      ng.send(
        Buffer.concat([cookie, Buffer.from(' '), bencode({ result: 'error', 'error-reason': String(err) })]),
        rinfo.port,
        rinfo.address,
      ),
  );
});
ng.bind(ngPort, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
