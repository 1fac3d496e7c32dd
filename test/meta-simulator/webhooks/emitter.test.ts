import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { WebhookEmitter, WebhookEmitterError, type WebhookEmitterOptions } from '#simulator/webhooks/emitter.ts';
import {
  callTerminate,
  newCallId,
  type SimBusiness,
  type SimUser,
  userCallConnect,
  type WebhookChange,
} from '#simulator/webhooks/payloads.ts';
import { type Receiver, type ReceiverOptions, signatureValid, startReceiver } from './receiver.ts';

const SECRET = 'app-secret-😀';
const TOKEN = 'verify-me';
const business: SimBusiness = {
  wabaId: '366634483210360',
  phoneNumberId: '436666719526789',
  displayPhoneNumber: '13175551399',
};
const user: SimUser = { waId: '16315553602', userId: 'US.13491208655302741918', name: 'Zoë 🎧' };
const SDP = 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function setup(
  receiverOpts: ReceiverOptions = {},
  emitterOpts: Partial<WebhookEmitterOptions> = {},
): Promise<{ rx: Receiver; emitter: WebhookEmitter }> {
  const rx = await startReceiver({ verifyToken: TOKEN, ...receiverOpts });
  cleanups.push(() => rx.close());
  const emitter = new WebhookEmitter({
    url: rx.url,
    appSecret: SECRET,
    verifyToken: TOKEN,
    retryDelaysMs: [50, 100],
    timeoutMs: 2_000,
    ...emitterOpts,
  });
  cleanups.push(() => emitter.close());
  return { rx, emitter };
}

function connectFor(callId: string): WebhookChange {
  return userCallConnect({ business, user, callId, sdp: SDP });
}
function terminateFor(callId: string): WebhookChange {
  return callTerminate({ business, user, callId, direction: 'USER_INITIATED', status: 'COMPLETED' });
}
function eventsOf(raw: Buffer): string[] {
  const body = JSON.parse(raw.toString('utf8')) as {
    entry: Array<{ changes: Array<{ value: { calls?: Array<{ event: string }> } }> }>;
  };
  return body.entry.flatMap((e) => e.changes.flatMap((c) => (c.value.calls ?? []).map((k) => k.event)));
}

describe('verification handshake (§2.2)', () => {
  it('sends hub.mode/challenge/verify_token and is ok only when the challenge is echoed', async () => {
    const { rx, emitter } = await setup();
    const result = await emitter.verify();
    expect(result.ok).toBe(true);
    expect(result.status).toBe(200);
    const q = new URL(rx.requests[0]!.url, 'http://x').searchParams;
    expect(q.get('hub.mode')).toBe('subscribe');
    expect(q.get('hub.verify_token')).toBe(TOKEN);
    expect(result.body).toBe(q.get('hub.challenge'));
    expect(emitter.isVerified).toBe(true);
  });

  it('a wrong token is not ok, and send() refuses with a named error until verified', async () => {
    const { emitter } = await setup({}, { verifyToken: 'wrong' });
    expect(await emitter.verify()).toMatchObject({ ok: false, status: 403 });
    const err = await emitter.send(connectFor(newCallId())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WebhookEmitterError);
    expect(err).toMatchObject({ name: 'WebhookEmitterError', code: 'NOT_VERIFIED' });
  });

  it('an unreachable endpoint gives ok:false status 0 instead of throwing', async () => {
    const { rx, emitter } = await setup();
    await rx.close();
    expect(await emitter.verify()).toEqual({ ok: false, status: 0, body: '' });
  });
});

describe('signed delivery (§2.3)', () => {
  it('the receiver verifies X-Hub-Signature-256 over the raw bytes; Meta-escaped non-ASCII and \\/', async () => {
    const { rx, emitter } = await setup();
    await emitter.verify();
    const delivery = await emitter.send(connectFor(newCallId()));
    expect(delivery.outcome).toBe('delivered');
    const [post] = rx.posts();
    expect(post!.headers['content-type']).toBe('application/json');
    expect(signatureValid(SECRET, post!.raw, post!.headers['x-hub-signature-256'])).toBe(true);
    const raw = post!.raw.toString('latin1');
    expect(raw).toContain('Zo\\u00eb \\ud83c\\udfa7');
    expect(raw).toContain('UDP\\/TLS\\/RTP\\/SAVPF');
    expect(raw).toBe(delivery.body);
    // A receiver that re-serialises the parsed body (the §2.3 pitfall) fails verification.
    const reserialised = Buffer.from(JSON.stringify(JSON.parse(raw)));
    expect(signatureValid(SECRET, reserialised, post!.headers['x-hub-signature-256'])).toBe(false);
  });

  it('batches several changes in one entry or one entry per change', async () => {
    const { rx, emitter } = await setup({}, { skipVerify: true });
    const id = newCallId();
    await emitter.send([connectFor(id), terminateFor(id)]);
    await emitter.send([connectFor(id), terminateFor(id)], { batch: 'per-change' });
    const [one, per] = rx.posts().map((p) => JSON.parse(p.raw.toString()) as { entry: Array<{ changes: unknown[] }> });
    expect(one!.entry.map((e) => e.changes.length)).toEqual([2]);
    expect(per!.entry.map((e) => e.changes.length)).toEqual([1, 1]);
    expect(eventsOf(rx.posts()[0]!.raw)).toEqual(['connect', 'terminate']);
  });
});

describe('retries and timeouts (§2.4)', () => {
  it('retries with back-off until the receiver returns 200 (fails the first 2)', async () => {
    const { rx, emitter } = await setup({ onPost: (_r, n) => ({ status: n < 2 ? 500 : 200 }) }, { skipVerify: true });
    const delivery = await emitter.send(connectFor(newCallId()));
    expect(delivery.outcome).toBe('delivered');
    expect(delivery.attempts.map((a) => a.status)).toEqual([500, 500, 200]);
    const posts = rx.posts();
    expect(posts).toHaveLength(3);
    expect(posts[1]!.receivedAt - posts[0]!.receivedAt).toBeGreaterThanOrEqual(45);
    expect(posts[2]!.receivedAt - posts[1]!.receivedAt).toBeGreaterThanOrEqual(95);
    expect(new Set(posts.map((p) => p.raw.toString()))).toEqual(new Set([delivery.body]));
    expect(emitter.deliveries).toContain(delivery);
  });

  it('gives up after the last back-off and reports failure without throwing', async () => {
    const { rx, emitter } = await setup({ onPost: () => ({ status: 503 }) }, { skipVerify: true });
    const delivery = await emitter.send(connectFor(newCallId()));
    expect(delivery.outcome).toBe('failed');
    expect(delivery.attempts.map((a) => a.status)).toEqual([503, 503, 503]);
    expect(rx.posts()).toHaveLength(3);
    // A 2xx that is not 200 is still a failure for Meta.
    const { emitter: e2 } = await setup({ onPost: () => ({ status: 204 }) }, { skipVerify: true, retryDelaysMs: [] });
    expect((await e2.send(connectFor(newCallId()))).outcome).toBe('failed');
  });

  it('a receiver slower than timeoutMs gets the request again', async () => {
    const { rx, emitter } = await setup(
      { onPost: (_r, n) => ({ status: 200, delayMs: n === 0 ? 600 : 0 }) },
      { skipVerify: true, timeoutMs: 150 },
    );
    const delivery = await emitter.send(connectFor(newCallId()));
    expect(delivery.outcome).toBe('delivered');
    expect(delivery.attempts[0]).toMatchObject({ error: 'timeout' });
    expect(delivery.attempts[0]!.latencyMs).toBeGreaterThanOrEqual(140);
    expect(delivery.attempts[1]).toMatchObject({ status: 200 });
    // The receiver processed both: the timed-out request is a duplicate (§2.4).
    expect(rx.posts()).toHaveLength(2);
  });

  it('every attempt goes to the pino logger', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    });
    const logger = pino({ level: 'debug' }, sink);
    const { emitter } = await setup(
      { onPost: (_r, n) => ({ status: n === 0 ? 500 : 200 }) },
      { skipVerify: true, logger },
    );
    const delivery = await emitter.send(connectFor(newCallId()));
    const attempts = lines.filter((l) => l.delivery === delivery.id && typeof l.attempt === 'number');
    expect(attempts.map((l) => [l.attempt, l.status])).toEqual([
      [1, 500],
      [2, 200],
    ]);
    expect(lines.some((l) => l.msg === 'webhook delivery delivered')).toBe(true);
  });

  it('network errors are retried and logged', async () => {
    const { rx, emitter } = await setup({}, { skipVerify: true, retryDelaysMs: [10] });
    await rx.close();
    const delivery = await emitter.send(connectFor(newCallId()));
    expect(delivery.outcome).toBe('failed');
    expect(delivery.attempts).toHaveLength(2);
    for (const a of delivery.attempts) expect(a.error).toMatch(/ECONNREFUSED|fetch failed/);
  });

  it('close() stops pending retries', async () => {
    const { rx, emitter } = await setup(
      { onPost: () => ({ status: 500 }) },
      { skipVerify: true, retryDelaysMs: [300, 300] },
    );
    const pending = emitter.send(connectFor(newCallId()));
    await expect.poll(() => rx.posts().length).toBe(1);
    emitter.close();
    emitter.close(); // idempotent
    const delivery = await pending;
    expect(delivery.outcome).toBe('aborted');
    await new Promise((r) => setTimeout(r, 700));
    expect(rx.posts()).toHaveLength(1);
    await expect(emitter.send(connectFor(newCallId()))).rejects.toMatchObject({ code: 'CLOSED' });
  });
});

describe('injected faults (§2.4, §7 item 2)', () => {
  it('duplicates arrive N+1 times concurrently with identical bytes and signature', async () => {
    // Each copy is answered 1 s after it arrives: sent in series, the second copy could not arrive
    // before the first answer, so all three arriving within that second proves they were concurrent.
    const { rx, emitter } = await setup({ onPost: () => ({ status: 200, delayMs: 1000 }) }, { skipVerify: true });
    const delivery = await emitter.send(connectFor(newCallId()), { duplicates: 2 });
    const posts = rx.posts();
    expect(posts).toHaveLength(3);
    expect(Math.max(...posts.map((p) => p.receivedAt)) - Math.min(...posts.map((p) => p.receivedAt))).toBeLessThan(
      1000,
    );
    expect(new Set(posts.map((p) => p.raw.toString('latin1'))).size).toBe(1);
    expect(new Set(posts.map((p) => p.headers['x-hub-signature-256'])).size).toBe(1);
    expect(delivery).toMatchObject({ copies: 3, outcome: 'delivered' });
    expect(delivery.attempts.map((a) => a.copy).sort()).toEqual([0, 1, 2]);
  });

  it('hold/release makes terminate arrive before connect', async () => {
    const { rx, emitter } = await setup({}, { skipVerify: true });
    const id = newCallId();
    const held = emitter.hold((c) => (c.value.calls as Array<{ event: string }> | undefined)?.[0]?.event === 'connect');
    const connectSent = emitter.send(connectFor(id));
    const terminate = await emitter.send(terminateFor(id));
    expect(terminate.outcome).toBe('delivered');
    expect(rx.posts().map((p) => eventsOf(p.raw))).toEqual([['terminate']]);
    const released = await held.release();
    expect(released).toHaveLength(1);
    const connect = await connectSent;
    expect(released[0]).toBe(connect);
    expect(connect.outcome).toBe('delivered');
    expect(rx.posts().map((p) => eventsOf(p.raw))).toEqual([['terminate'], ['connect']]);
    // The hold is gone: later connects go straight through.
    await emitter.send(connectFor(newCallId()));
    expect(rx.posts()).toHaveLength(3);
    expect(await held.release()).toEqual([]);
  });

  it('close() settles held sends as aborted without sending them', async () => {
    const { rx, emitter } = await setup({}, { skipVerify: true });
    emitter.hold(() => true);
    const pending = emitter.send(connectFor(newCallId()));
    emitter.close();
    expect((await pending).outcome).toBe('aborted');
    expect(rx.posts()).toHaveLength(0);
  });

  it('redeliver sends a stale copy of an earlier body after newer events', async () => {
    const { rx, emitter } = await setup({}, { skipVerify: true });
    const id = newCallId();
    const connect = await emitter.send(connectFor(id));
    await emitter.send(terminateFor(id));
    const stale = await emitter.redeliver(connect.id);
    expect(stale).toMatchObject({ redeliveryOf: connect.id, outcome: 'delivered', body: connect.body });
    const posts = rx.posts();
    expect(posts.map((p) => eventsOf(p.raw))).toEqual([['connect'], ['terminate'], ['connect']]);
    expect(posts[2]!.raw.equals(posts[0]!.raw)).toBe(true);
    expect(posts[2]!.headers['x-hub-signature-256']).toBe(posts[0]!.headers['x-hub-signature-256']);
    await expect(emitter.redeliver('dlv-999')).rejects.toMatchObject({
      name: 'WebhookEmitterError',
      code: 'UNKNOWN_DELIVERY',
    });
  });

  it('delayMs holds the first attempt back', async () => {
    const { rx, emitter } = await setup({}, { skipVerify: true });
    const started = Date.now();
    await emitter.send(connectFor(newCallId()), { delayMs: 200 });
    expect(rx.posts()[0]!.receivedAt - started).toBeGreaterThanOrEqual(195);
  });

  it('every tamper mode yields a body whose signature does not verify', async () => {
    const { rx, emitter } = await setup({}, { skipVerify: true, retryDelaysMs: [] });
    for (const tamper of ['unsigned', 'bad-signature', 'flip-byte'] as const) {
      const d = await emitter.send(connectFor(newCallId()), { tamper });
      expect(d.tamper).toBe(tamper);
    }
    const [unsigned, bad, flipped] = rx.posts();
    expect(unsigned!.headers).not.toHaveProperty('x-hub-signature-256');
    expect(signatureValid(SECRET, unsigned!.raw, unsigned!.headers['x-hub-signature-256'])).toBe(false);
    expect(bad!.headers['x-hub-signature-256']).toMatch(/^sha256=[0-9a-f]{64}$/);
    expect(signatureValid(SECRET, bad!.raw, bad!.headers['x-hub-signature-256'])).toBe(false);
    expect(signatureValid(SECRET, flipped!.raw, flipped!.headers['x-hub-signature-256'])).toBe(false);
    // flip-byte changes exactly one byte and keeps the JSON parseable.
    const d = emitter.deliveries[2]!;
    const diff = [...d.body].filter((ch, i) => ch !== d.signedBody[i]).length;
    expect(diff).toBe(1);
    expect(() => JSON.parse(flipped!.raw.toString())).not.toThrow();
    expect(signatureValid(SECRET, Buffer.from(d.signedBody), flipped!.headers['x-hub-signature-256'])).toBe(true);
  });
});
