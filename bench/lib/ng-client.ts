/**
 * A minimal client of rtpengine's ng control protocol (bench only).
 *
 * Hand-written on purpose: the npm package `rtpengine-client` (the well-kept client) is not a
 * dependency of this project, and the bench needs only a sliver of the protocol — bencode
 * (dictionaries, lists, byte strings, integers) and the ng framing `<cookie> <bencoded dict>`
 * over UDP, each request answered by a datagram that starts with the same cookie. Commands used:
 * `ping`, `offer`, `answer`, `delete` (https://rtpengine.readthedocs.io/en/latest/ng_control_protocol.html).
 * Nothing here is imported by the product or by `npm test`.
 */
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';

/** A bencode value as the ng protocol uses it. */
export type Bencode = string | number | Buffer | Bencode[] | { [key: string]: Bencode | undefined };

/** Bencodes a value; dictionary keys are sorted as the format requires, undefined values skipped. */
export function bencode(v: Bencode): Buffer {
  if (typeof v === 'number') return Buffer.from(`i${Math.trunc(v)}e`);
  if (typeof v === 'string' || Buffer.isBuffer(v)) {
    const b = Buffer.isBuffer(v) ? v : Buffer.from(v, 'utf8');
    return Buffer.concat([Buffer.from(`${b.length}:`), b]);
  }
  if (Array.isArray(v)) return Buffer.concat([Buffer.from('l'), ...v.map(bencode), Buffer.from('e')]);
  const parts: Buffer[] = [Buffer.from('d')];
  for (const k of Object.keys(v).sort()) {
    const x = v[k];
    if (x === undefined) continue;
    parts.push(bencode(k), bencode(x));
  }
  parts.push(Buffer.from('e'));
  return Buffer.concat(parts);
}

/** Decodes one bencoded value (byte strings come back as UTF-8 strings). */
export function bdecode(buf: Buffer): Bencode {
  let i = 0;
  const value = (): Bencode => {
    const c = buf[i];
    if (c === 0x69) {
      // i<int>e
      const end = buf.indexOf(0x65, i);
      const n = Number(buf.toString('ascii', i + 1, end));
      i = end + 1;
      return n;
    }
    if (c === 0x6c) {
      i++;
      const out: Bencode[] = [];
      while (buf[i] !== 0x65) out.push(value());
      i++;
      return out;
    }
    if (c === 0x64) {
      i++;
      const out: Record<string, Bencode> = {};
      while (buf[i] !== 0x65) {
        const k = value() as string;
        out[k] = value();
      }
      i++;
      return out;
    }
    const colon = buf.indexOf(0x3a, i);
    if (colon < 0) throw new Error(`bencode: bad input at byte ${i}`);
    const len = Number(buf.toString('ascii', i, colon));
    const s = buf.toString('utf8', colon + 1, colon + 1 + len);
    i = colon + 1 + len;
    return s;
  };
  return value();
}

/** An ng reply: `result` is `ok`, `pong`, `error` (with `error-reason`) or `load limit`. */
export type NgReply = Record<string, Bencode> & { result: string; sdp?: string; 'error-reason'?: string };

/** Error of an ng command: the command, the call id and rtpengine's `error-reason`. */
export class NgError extends Error {
  constructor(
    readonly command: string,
    readonly callId: string | undefined,
    reason: string,
  ) {
    super(`rtpengine ng ${command}${callId ? ` (call ${callId})` : ''}: ${reason}`);
    this.name = 'NgError';
  }
}

/** A UDP ng client bound to one rtpengine (`host:port`). */
export class NgClient {
  private readonly socket: Socket;
  private readonly pending = new Map<string, (reply: NgReply) => void>();

  private constructor(
    socket: Socket,
    private readonly host: string,
    private readonly port: number,
  ) {
    this.socket = socket;
    socket.on('message', (msg) => {
      const sp = msg.indexOf(0x20);
      if (sp < 0) return;
      const cookie = msg.toString('ascii', 0, sp);
      const w = this.pending.get(cookie);
      if (!w) return;
      this.pending.delete(cookie);
      w(bdecode(msg.subarray(sp + 1)) as NgReply);
    });
  }

  /** Opens a client socket on loopback for rtpengine's ng port. */
  static async open(port: number, host = '127.0.0.1'): Promise<NgClient> {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    return new NgClient(s, host, port);
  }

  /** Sends one command; rejects on timeout or an `error` result. */
  command(dict: Record<string, Bencode | undefined>, timeoutMs = 5000): Promise<NgReply> {
    const cookie = randomBytes(6).toString('hex');
    const callId = typeof dict['call-id'] === 'string' ? (dict['call-id'] as string) : undefined;
    const cmd = String(dict.command);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(cookie);
        reject(new NgError(cmd, callId, `no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(cookie, (reply) => {
        clearTimeout(t);
        if (reply.result === 'error' || reply.result === 'load limit')
          reject(new NgError(cmd, callId, String(reply['error-reason'] ?? reply.result)));
        else resolve(reply);
      });
      this.socket.send(Buffer.concat([Buffer.from(`${cookie} `), bencode(dict)]), this.port, this.host);
    });
  }

  /** `ping` → `pong`. */
  ping(timeoutMs = 1000): Promise<NgReply> {
    return this.command({ command: 'ping' }, timeoutMs);
  }

  /** `offer`: the caller's SDP in, the SDP to hand to the callee out. */
  offer(params: Record<string, Bencode | undefined>): Promise<NgReply> {
    return this.command({ ...params, command: 'offer' });
  }

  /** `answer`: the callee's SDP in, the SDP to hand to the caller out. */
  answer(params: Record<string, Bencode | undefined>): Promise<NgReply> {
    return this.command({ ...params, command: 'answer' });
  }

  /** `delete`: ends the call (both legs). */
  delete(params: Record<string, Bencode | undefined>): Promise<NgReply> {
    return this.command({ ...params, command: 'delete' });
  }

  /** Closes the socket; pending commands time out. */
  close(): void {
    this.socket.close();
  }
}
