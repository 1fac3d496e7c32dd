/**
 * A tiny real HTTP webhook receiver on 127.0.0.1 for the emitter tests: records every
 * request's raw bytes and lets each test script the responses (status, body, delay).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request as the receiver saw it. */
export type Received = {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** The untouched body bytes. */
  raw: Buffer;
  receivedAt: number;
};

/** What to answer to the n-th POST (0-based). */
export type Reply = { status: number; body?: string; delayMs?: number };

/** Options of {@link startReceiver}. */
export type ReceiverOptions = {
  verifyToken?: string;
  /** Answer for the n-th POST; default 200 "ok". */
  onPost?: (req: Received, n: number) => Reply;
};

/** A running receiver. */
export type Receiver = {
  url: string;
  requests: Received[];
  /** POSTs only. */
  posts(): Received[];
  close(): Promise<void>;
};

/** Starts a receiver that handles Meta's GET handshake and records POSTs. */
export async function startReceiver(opts: ReceiverOptions = {}): Promise<Receiver> {
  const requests: Received[] = [];
  let postCount = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: Received = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        raw: Buffer.concat(chunks),
        receivedAt: Date.now(),
      };
      requests.push(rec);
      if (rec.method === 'GET') {
        const q = new URL(rec.url, 'http://x').searchParams;
        if (q.get('hub.mode') === 'subscribe' && q.get('hub.verify_token') === opts.verifyToken) {
          res.writeHead(200, { 'Content-Type': 'text/plain' }).end(q.get('hub.challenge') ?? '');
        } else {
          res.writeHead(403).end('forbidden');
        }
        return;
      }
      const reply = opts.onPost?.(rec, postCount++) ?? { status: 200 };
      const answer = (): void => {
        if (!res.destroyed) res.writeHead(reply.status).end(reply.body ?? 'ok');
      };
      if (reply.delayMs) setTimeout(answer, reply.delayMs);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhook`,
    requests,
    posts: () => requests.filter((r) => r.method === 'POST'),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** What a correct bridge does: HMAC over the raw bytes, constant-time compare (§2.3). */
export function signatureValid(appSecret: string, raw: Buffer, header: string | string[] | undefined): boolean {
  if (typeof header !== 'string' || !header.startsWith('sha256=')) return false;
  const expected = Buffer.from(createHmac('sha256', appSecret).update(raw).digest('hex'), 'utf8');
  const got = Buffer.from(header.slice('sha256='.length), 'utf8');
  return got.length === expected.length && timingSafeEqual(got, expected);
}
