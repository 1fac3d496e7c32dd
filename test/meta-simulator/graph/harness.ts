/**
 * Test harness for the simulator's Graph suites: a tiny webhook receiver standing in for the bridge (GET
 * handshake, constant-time signature check over the raw bytes), a Graph client, and a started simulator.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import { MetaSimulator, type MetaSimulatorOptions } from '#simulator/simulator.ts';
import type { SimBusiness } from '#simulator/webhooks/payloads.ts';

/** Parsed JSON response bodies; tests assert their shape structurally. */
// biome-ignore lint/suspicious/noExplicitAny: response bodies are arbitrary JSON checked by expect()
export type Json = any;

export const APP_SECRET = 'test-app-secret';
export const VERIFY_TOKEN = 'test-verify-token';
export const ACCESS_TOKEN = 'EAAG-test-token';

/** A UK business number: business-initiated calling is available (§4.4). */
export const UK_BUSINESS: SimBusiness = {
  wabaId: '366634483210360',
  phoneNumberId: '436666719526789',
  displayPhoneNumber: '447700900123',
};
/** A US business number: business-initiated calling is refused with 138013 (§4.4). */
export const US_BUSINESS: SimBusiness = {
  wabaId: '366634483210361',
  phoneNumberId: '436666719526790',
  displayPhoneNumber: '13175551399',
};

/** One webhook change as the receiver saw it. */
export interface SeenChange {
  field: string;
  value: Record<string, unknown>;
  /** `calls[0]` / `statuses[0]` / `messages[0]` for convenience. */
  item: Record<string, unknown>;
  kind: 'call' | 'status' | 'message' | 'other';
  signatureOk: boolean;
  receivedAt: number;
}

/** A running receiver. */
export interface WebhookReceiver {
  url: string;
  changes: SeenChange[];
  handshakes: number;
  waitFor(pred: (c: SeenChange) => boolean, timeoutMs?: number, label?: string): Promise<SeenChange>;
  close(): Promise<void>;
}

function sigOk(raw: Buffer, header: string | string[] | undefined): boolean {
  if (typeof header !== 'string' || !header.startsWith('sha256=')) return false;
  const expected = Buffer.from(createHmac('sha256', APP_SECRET).update(raw).digest('hex'));
  const got = Buffer.from(header.slice(7));
  return got.length === expected.length && timingSafeEqual(got, expected);
}

/** Start a receiver that answers the handshake and records every change of every POST. */
export async function startReceiver(): Promise<WebhookReceiver> {
  const changes: SeenChange[] = [];
  const waiters = new Set<() => void>();
  let handshakes = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method === 'GET') {
        if (
          url.searchParams.get('hub.verify_token') === VERIFY_TOKEN &&
          url.searchParams.get('hub.mode') === 'subscribe'
        ) {
          handshakes++;
          res.writeHead(200).end(url.searchParams.get('hub.challenge') ?? '');
        } else res.writeHead(403).end();
        return;
      }
      const raw = Buffer.concat(chunks);
      const ok = sigOk(raw, req.headers['x-hub-signature-256']);
      const body = JSON.parse(raw.toString('utf8')) as {
        entry: Array<{ changes: Array<{ field: string; value: Record<string, unknown> }> }>;
      };
      for (const e of body.entry) {
        for (const c of e.changes) {
          const v = c.value;
          const item = ((v.calls ?? v.statuses ?? v.messages) as Array<Record<string, unknown>> | undefined)?.[0] ?? {};
          const kind = v.calls
            ? 'call'
            : v.statuses && c.field === 'calls'
              ? 'status'
              : v.messages
                ? 'message'
                : 'other';
          changes.push({ field: c.field, value: v, item, kind, signatureOk: ok, receivedAt: Date.now() });
        }
      }
      res.writeHead(ok ? 200 : 401).end();
      for (const w of waiters) w();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhook`,
    changes,
    get handshakes() {
      return handshakes;
    },
    waitFor(pred, timeoutMs = 5000, label = 'webhook') {
      const hit = changes.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const h = changes.find(pred);
          if (h) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(h);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `timed out waiting for ${label}; saw ${JSON.stringify(changes.map((c) => `${c.kind}:${String(c.item.event ?? c.item.status ?? c.item.type)}`))}`,
            ),
          );
        }, timeoutMs);
        waiters.add(check);
      });
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Predicate: a `calls[]` event of a call. */
export const callEvent =
  (event: string, id?: string) =>
  (c: SeenChange): boolean =>
    c.kind === 'call' && c.item.event === event && (id === undefined || c.item.id === id);

/** Predicate: a BIC status of a call. */
export const callStatusIs =
  (status: string, id?: string) =>
  (c: SeenChange): boolean =>
    c.kind === 'status' && c.item.status === status && (id === undefined || c.item.id === id);

/** A started simulator + receiver. */
export interface Env {
  sim: MetaSimulator;
  rx: WebhookReceiver;
  /** Graph request; returns status and parsed JSON. */
  graph(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    opts?: { token?: string | null; raw?: string },
  ): Promise<{ status: number; body: Json }>;
  /** Control API request. */
  ctl(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: Json }>;
  close(): Promise<void>;
}

/** Start a simulator pointing at a fresh receiver. */
export async function startEnv(overrides: Partial<MetaSimulatorOptions> = {}): Promise<Env> {
  const rx = await startReceiver();
  const sim = await MetaSimulator.start({
    accessToken: ACCESS_TOKEN,
    appSecret: APP_SECRET,
    verifyToken: VERIFY_TOKEN,
    webhookUrl: rx.url,
    business: UK_BUSINESS,
    webhook: { retryDelaysMs: [50, 100] },
    ...overrides,
  });
  const request = async (url: string, method: string, body: unknown, headers: Record<string, string>, raw?: string) => {
    const res = await fetch(url, {
      method,
      headers: {
        ...headers,
        ...(body !== undefined || raw !== undefined ? { 'Content-Type': 'application/json' } : {}),
      },
      ...(raw !== undefined ? { body: raw } : body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  return {
    sim,
    rx,
    graph: (method, path, body, opts = {}) => {
      const token = opts.token === undefined ? ACCESS_TOKEN : opts.token;
      return request(
        `${sim.graphUrl}${path}`,
        method,
        body,
        token === null ? {} : { Authorization: `Bearer ${token}` },
        opts.raw,
      );
    },
    ctl: (method, path, body) => request(`${sim.baseUrl}/_sim${path}`, method, body, {}),
    close: async () => {
      await sim.stop();
      await rx.close();
    },
  };
}

/** The fbtrace_id is random; replace it so bodies can be compared exactly. */
export function stableError(body: Json): Json {
  expect(typeof body?.error?.fbtrace_id).toBe('string');
  return { ...body, error: { ...body.error, fbtrace_id: 'X' } };
}
