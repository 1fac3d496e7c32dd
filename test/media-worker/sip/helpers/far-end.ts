/**
 * A scripted far end for SIP tests: an independent instance of the raw `sip` package (not our
 * dialog layer) bound on another loopback address, recording every request it receives and
 * answering as each test scripts it. Real UDP/TCP sockets, no mocks.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import type { SipMessage, SipRemote, SipStack } from 'sip';
import sip from 'sip';

/** A request the far end received, with where it came from. */
export interface Received {
  readonly rq: SipMessage;
  readonly remote: SipRemote;
}

/** Per-request script; return `true` when handled, otherwise the default behaviour applies. */
export type FarEndHandler = (rq: SipMessage, remote: SipRemote, fe: FarEnd) => boolean | undefined;

async function canBind(address: string, port: number): Promise<boolean> {
  const udp = await new Promise<boolean>((resolve) => {
    const s = createSocket('udp4');
    s.once('error', () => resolve(false));
    s.bind(port, address, () => s.close(() => resolve(true)));
  });
  if (!udp) return false;
  return new Promise<boolean>((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, address, () => srv.close(() => resolve(true)));
  });
}

/** A port free for UDP and TCP on every given address. */
export async function freePort(
  addresses: readonly string[] = ['127.0.0.1', '127.0.0.2', '127.0.0.3'],
): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20_000 + Math.floor(Math.random() * 30_000);
    let ok = true;
    for (const a of addresses) ok = ok && (await canBind(a, port));
    if (ok) return port;
  }
  throw new Error('no free port found');
}

/** A scripted SIP peer. */
export class FarEnd {
  readonly address: string;
  readonly port: number;
  readonly received: Received[] = [];
  handler: FarEndHandler | undefined;
  readonly #stack: SipStack;
  readonly #waiters: { pred: (r: Received) => boolean; resolve: (r: Received) => void }[] = [];
  readonly #consumed = new Set<Received>();
  /** To tag the far end uses per Call-ID. */
  readonly #tags = new Map<string, string>();

  private constructor(address: string, port: number) {
    this.address = address;
    this.port = port;
    this.#stack = sip.create({ address, port, udp: true, tcp: true }, (rq, remote) => this.#onRequest(rq, remote));
  }

  /** Start a far end on `address` (default 127.0.0.2) and a free port. */
  static async start(address = '127.0.0.2', port?: number): Promise<FarEnd> {
    const p = port ?? (await freePort([address]));
    const fe = new FarEnd(address, p);
    await new Promise((r) => setImmediate(r));
    return fe;
  }

  /** A URI pointing at this far end. */
  uri(user = 'agent', transport?: 'tcp' | 'udp'): string {
    return `sip:${user}@${this.address}:${this.port}${transport ? `;transport=${transport}` : ''}`;
  }

  /** The far end's To tag for `callId`. */
  tagFor(callId: string): string {
    let t = this.#tags.get(callId);
    if (!t) {
      t = `fe${Math.random().toString(16).slice(2, 10)}`;
      this.#tags.set(callId, t);
    }
    return t;
  }

  #onRequest(rq: SipMessage, remote: SipRemote): void {
    const r: Received = { rq, remote };
    this.received.push(r);
    const handled = this.handler?.(rq, remote, this);
    if (!handled) {
      if (rq.method === 'BYE' || rq.method === 'OPTIONS' || rq.method === 'CANCEL') this.reply(rq, 200, 'OK');
      else if (rq.method !== 'ACK' && rq.method !== 'INVITE') this.reply(rq, 405, 'Method Not Allowed');
    }
    for (const w of [...this.#waiters]) {
      if (!this.#consumed.has(r) && w.pred(r)) {
        this.#consumed.add(r);
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.resolve(r);
      }
    }
  }

  /** Respond to `rq`; dialog-creating responses carry this far end's tag and Contact. */
  reply(
    rq: SipMessage,
    status: number,
    reason: string,
    extra: { content?: string; headers?: Record<string, unknown> } = {},
  ): void {
    const rs = sip.makeResponse(rq, status, reason);
    const to = rq.headers.to;
    if (to && status > 100 && !to.params.tag)
      rs.headers.to = { ...to, params: { ...to.params, tag: this.tagFor(rq.headers['call-id'] ?? '') } };
    if (rq.method === 'INVITE' && status > 100 && status < 300)
      rs.headers.contact = [{ uri: `sip:agent@${this.address}:${this.port}`, params: {} }];
    if (extra.content !== undefined) {
      rs.content = extra.content;
      rs.headers['content-type'] = 'application/sdp';
    }
    Object.assign(rs.headers, extra.headers ?? {});
    this.#stack.send(rs);
  }

  /** The next not-yet-consumed request matching `pred` (already received or future). */
  next(pred: (r: Received) => boolean, timeoutMs = 5000): Promise<Received> {
    const have = this.received.find((r) => !this.#consumed.has(r) && pred(r));
    if (have) {
      this.#consumed.add(have);
      return Promise.resolve(have);
    }
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (r: Received) => {
          clearTimeout(timer);
          resolve(r);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        reject(new Error(`far end ${this.address}:${this.port}: no matching request within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.push(w);
    });
  }

  /** The next request with `method`. */
  nextMethod(method: string, timeoutMs = 5000): Promise<Received> {
    return this.next((r) => r.rq.method === method, timeoutMs);
  }

  /** Send a request; resolve with its final response. */
  request(rq: SipMessage): Promise<SipMessage> {
    return new Promise((resolve) => {
      this.#stack.send(rq, (rs) => {
        if ((rs.status ?? 0) >= 200) resolve(rs);
      });
    });
  }

  /** Send a request and collect every response (for INVITEs). */
  send(rq: SipMessage, onResponse: (rs: SipMessage) => void): void {
    this.#stack.send(rq, onResponse);
  }

  /** Send a stateless message (ACK). */
  sendAck(ack: SipMessage): void {
    this.#stack.send(ack);
  }

  /**
   * An in-dialog request from the far end for the dialog created by `invite` (which we sent and
   * the far end answered): To/From swapped, Request-URI = our Contact.
   */
  inDialog(
    invite: SipMessage,
    method: string,
    seq: number,
    extra: { content?: string; headers?: Record<string, unknown> } = {},
  ): SipMessage {
    const contact = invite.headers.contact;
    const target = Array.isArray(contact) ? String(contact[0]?.uri) : String(invite.uri);
    const callId = invite.headers['call-id'] ?? '';
    const to = invite.headers.to;
    return {
      method,
      uri: target,
      headers: {
        via: [],
        to: invite.headers.from,
        from: { ...(to ?? { uri: '' }), params: { ...(to?.params ?? {}), tag: this.tagFor(callId) } },
        'call-id': callId,
        cseq: { seq, method },
        contact: [{ uri: `sip:agent@${this.address}:${this.port}`, params: {} }],
        'max-forwards': 70,
        ...(extra.content === undefined ? {} : { 'content-type': 'application/sdp' }),
        ...extra.headers,
      },
      ...(extra.content === undefined ? {} : { content: extra.content }),
    };
  }

  close(): void {
    this.#stack.destroy();
  }
}

/** A minimal audio SDP from `address:port` with `direction`. */
export function sdp(address: string, port: number, direction = 'sendrecv', version = 1): string {
  return [
    'v=0',
    `o=- 4242 ${version} IN IP4 ${address}`,
    's=-',
    `c=IN IP4 ${address}`,
    't=0 0',
    `m=audio ${port} RTP/AVP 0 101`,
    'a=rtpmap:0 PCMU/8000',
    'a=rtpmap:101 telephone-event/8000',
    `a=${direction}`,
    '',
  ].join('\r\n');
}
