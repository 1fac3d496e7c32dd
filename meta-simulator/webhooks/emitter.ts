/**
 * The Meta simulator's webhook sender: verification handshake, signed POSTs with Meta's
 * serialisation, 20 s timeout, retries with back-off, and injectable faults (duplicates,
 * delays, batching, reordering via hold/release, stale redelivery, tampered signatures).
 *
 * Behaviour follows `docs/meta-calling-api.md` §2.2–§2.5 and §7 item 2.
 *
 * @module
 */
import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import { envelope, metaJsonStringify, signBody, type WebhookChange } from './payloads.ts';

/** Machine-readable reason carried by {@link WebhookEmitterError}. */
export type WebhookEmitterErrorCode = 'NOT_VERIFIED' | 'CLOSED' | 'UNKNOWN_DELIVERY' | 'INVALID_ARGUMENT';

/** Raised for misuse of the emitter (never for a failed delivery — that is a {@link Delivery} outcome). */
export class WebhookEmitterError extends Error {
  /** Why the call was refused. */
  readonly code: WebhookEmitterErrorCode;

  /**
   * @param code - machine-readable reason
   * @param message - human-readable description
   * @param options - standard `ErrorOptions` (`cause`)
   */
  constructor(code: WebhookEmitterErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'WebhookEmitterError';
    this.code = code;
  }
}

/** Options of {@link WebhookEmitter}. */
export type WebhookEmitterOptions = {
  /** The bridge's callback URL. */
  url: string;
  /** App secret; key of `X-Hub-Signature-256`. */
  appSecret: string;
  /** Token sent as `hub.verify_token` in the handshake. */
  verifyToken: string;
  /** Per-request timeout; Meta gives up after about 20 s (§2.4). Default 20 000. */
  timeoutMs?: number;
  /**
   * Waits before each retry; attempts = 1 + length. Meta documents no calling retry policy
   * ("likely shorter" than messaging's, §2.4). Default `[1000, 2000, 4000, 8000]`.
   */
  retryDelaysMs?: number[];
  /** Receives one record per attempt. */
  logger?: Logger;
  /** Allow `send` without a prior successful {@link WebhookEmitter.verify}. */
  skipVerify?: boolean;
};

/** Ways to break the signature of a single send. */
export type TamperMode =
  /** No `X-Hub-Signature-256` header at all. */
  | 'unsigned'
  /** Header present but the HMAC is keyed with the wrong secret. */
  | 'bad-signature'
  /** Correct signature of the original body, but one bit of the sent body is flipped (JSON stays valid). */
  | 'flip-byte';

/** Options of {@link WebhookEmitter.send}. */
export type SendOptions = {
  /** `one-entry` (default): all changes in one `entry[].changes[]`; `per-change`: one entry each. */
  batch?: 'one-entry' | 'per-change';
  /** Extra identical copies POSTed concurrently with the original (Meta's duplicate causes, §2.4). */
  duplicates?: number;
  /** Wait this long before the first attempt. */
  delayMs?: number;
  /** Break the signature (see {@link TamperMode}). */
  tamper?: TamperMode;
};

/** One HTTP attempt of one copy of a delivery. */
export type DeliveryAttempt = {
  /** 0 for the original, 1..n for duplicates. */
  copy: number;
  /** 1-based attempt number within the copy. */
  attempt: number;
  /** Epoch ms when the request started. */
  startedAt: number;
  /** Time until the response headers arrived, or until the failure. */
  latencyMs: number;
  /** HTTP status, when a response arrived. */
  status?: number;
  /** `timeout`, `aborted`, or the network error, when no usable response arrived. */
  error?: string;
  /** The first 1 KiB of the response body. */
  responseBody?: string;
};

/** Final state of a delivery. */
export type DeliveryOutcome =
  /** Held by {@link WebhookEmitter.hold} or still in flight. */
  | 'pending'
  /** Every copy got a 200. */
  | 'delivered'
  /** At least one copy exhausted its retries. */
  | 'failed'
  /** {@link WebhookEmitter.close} stopped it. */
  | 'aborted';

/** The log record of one `send` (or `redeliver`), all copies and attempts included. */
export type Delivery = {
  /** `dlv-<n>`, unique per emitter. */
  id: string;
  /** The changes as given to `send`. */
  changes: WebhookChange[];
  /** The exact bytes POSTed (tampered, if `tamper: 'flip-byte'`). */
  body: string;
  /** The bytes the signature was computed over (differs from `body` only for `flip-byte`). */
  signedBody: string;
  /** The `X-Hub-Signature-256` header sent, absent for `tamper: 'unsigned'`. */
  signature?: string;
  /** Tamper mode used, if any. */
  tamper?: TamperMode;
  /** Number of POSTed copies (1 + duplicates). */
  copies: number;
  /** For a stale redelivery, the id of the delivery whose body was resent. */
  redeliveryOf?: string;
  /** Every attempt of every copy, in start order. */
  attempts: DeliveryAttempt[];
  outcome: DeliveryOutcome;
  /** Epoch ms of creation. */
  createdAt: number;
  /** Epoch ms when the outcome became final. */
  finishedAt?: number;
};

/** Handle returned by {@link WebhookEmitter.hold}. */
export type HoldHandle = {
  /**
   * Stops holding and sends the held deliveries one after another in the order they were
   * held. Resolves with their final records. Idempotent (a second call resolves `[]`).
   */
  release(): Promise<Delivery[]>;
};

type Hold = {
  match: (change: WebhookChange) => boolean;
  queue: Array<{ delivery: Delivery; opts: SendOptions; settle: (d: Delivery) => void }>;
  released: boolean;
};

const DEFAULT_RETRY_DELAYS_MS = [1000, 2000, 4000, 8000];
const RESPONSE_BODY_LIMIT = 1024;

/** Resolves after `ms`, or early (with `false`) if `signal` aborts. Never rejects. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause as { code?: unknown; message?: unknown } | undefined;
    if (cause && typeof cause.code === 'string') return `${err.message}: ${cause.code}`;
    if (cause && typeof cause.message === 'string') return `${err.message}: ${cause.message}`;
    return err.message;
  }
  return String(err);
}

/**
 * Flips one bit of the body while keeping it valid JSON: toggles the case of the first letter
 * of `"whatsapp_business_account"`. Falls back to the last ASCII letter.
 */
function flipOneBit(body: string): string {
  const marker = '"object":"';
  let at = body.indexOf(marker);
  at = at >= 0 ? at + marker.length : body.search(/[a-z](?=[^a-z]*$)/i);
  if (at < 0) return `${body} `;
  const flipped = String.fromCharCode(body.charCodeAt(at) ^ 0x20);
  return body.slice(0, at) + flipped + body.slice(at + 1);
}

/**
 * Sends signed webhooks to one callback URL the way Meta does, with fault injection.
 *
 * Typical use: `await emitter.verify()` once, then `await emitter.send(change)`. Every send
 * is recorded in {@link WebhookEmitter.deliveries}.
 */
export class WebhookEmitter {
  private readonly url: string;
  private readonly appSecret: string;
  private readonly verifyToken: string;
  private readonly timeoutMs: number;
  private readonly retryDelaysMs: readonly number[];
  private readonly logger: Logger | undefined;
  private readonly closer = new AbortController();
  private readonly log: Delivery[] = [];
  private readonly holds: Hold[] = [];
  private verified: boolean;
  private counter = 0;

  /** @param opts - see {@link WebhookEmitterOptions} */
  constructor(opts: WebhookEmitterOptions) {
    this.url = opts.url;
    this.appSecret = opts.appSecret;
    this.verifyToken = opts.verifyToken;
    this.timeoutMs = opts.timeoutMs ?? 20_000;
    this.retryDelaysMs = [...(opts.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS)];
    this.logger = opts.logger;
    this.verified = opts.skipVerify === true;
  }

  /** Every delivery so far, oldest first (live records: pending ones update in place). */
  get deliveries(): readonly Delivery[] {
    return this.log;
  }

  /** Whether a handshake succeeded (or `skipVerify` was set). */
  get isVerified(): boolean {
    return this.verified;
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.closer.signal.aborted;
  }

  /**
   * The GET verification handshake (meta-calling-api.md §2.2):
   * `?hub.mode=subscribe&hub.challenge=<random>&hub.verify_token=<token>`. Succeeds only on
   * HTTP 200 whose body is exactly the challenge. Network errors and timeouts give
   * `{ ok: false, status: 0 }`; this never rejects except after {@link close}.
   */
  async verify(): Promise<{ ok: boolean; status: number; body: string }> {
    this.assertOpen();
    const challenge = String(randomInt(100_000_000, 2_147_483_647));
    const url = new URL(this.url);
    url.searchParams.set('hub.mode', 'subscribe');
    url.searchParams.set('hub.challenge', challenge);
    url.searchParams.set('hub.verify_token', this.verifyToken);
    const signal = AbortSignal.any([AbortSignal.timeout(this.timeoutMs), this.closer.signal]);
    let result: { ok: boolean; status: number; body: string };
    try {
      const res = await fetch(url, { method: 'GET', signal, redirect: 'manual', headers: this.baseHeaders() });
      const body = await res.text();
      result = { ok: res.status === 200 && body === challenge, status: res.status, body };
    } catch (err) {
      this.logger?.warn({ err: describeError(err) }, 'webhook verify failed');
      result = { ok: false, status: 0, body: '' };
    }
    if (result.ok) this.verified = true;
    this.logger?.info({ ok: result.ok, status: result.status }, 'webhook verify');
    return result;
  }

  /**
   * Serialises the changes into one WABA envelope with {@link metaJsonStringify}, signs the exact
   * bytes, and POSTs them (plus `duplicates` concurrent copies), retrying each copy on non-200,
   * timeout or network error with the configured back-off.
   *
   * Resolves with the final {@link Delivery} once every copy is delivered or out of retries —
   * a failed delivery is an outcome, not an exception. A send caught by {@link hold} resolves
   * only after the hold is released, so do not await it before calling `release()`.
   *
   * @throws {WebhookEmitterError} `NOT_VERIFIED` before a successful handshake, `CLOSED` after
   * {@link close}, `INVALID_ARGUMENT` for an empty change list or bad options.
   */
  async send(changes: WebhookChange | WebhookChange[], opts: SendOptions = {}): Promise<Delivery> {
    this.assertOpen();
    if (!this.verified) {
      throw new WebhookEmitterError('NOT_VERIFIED', 'send() before a successful verify() handshake (§2.2)');
    }
    const list = Array.isArray(changes) ? changes : [changes];
    if (list.length === 0) throw new WebhookEmitterError('INVALID_ARGUMENT', 'send() needs at least one change');
    const duplicates = opts.duplicates ?? 0;
    if (!Number.isInteger(duplicates) || duplicates < 0) {
      throw new WebhookEmitterError('INVALID_ARGUMENT', `duplicates must be a non-negative integer, got ${duplicates}`);
    }
    let signedBody: string;
    try {
      signedBody = metaJsonStringify(envelope(list, { entries: opts.batch === 'per-change' ? 'per-change' : 'one' }));
    } catch (err) {
      throw new WebhookEmitterError('INVALID_ARGUMENT', 'cannot build the webhook envelope', { cause: err });
    }
    const delivery = this.newDelivery(list, signedBody, opts.tamper, 1 + duplicates);
    const hold = this.holds.find((h) => !h.released && list.some((c) => h.match(c)));
    if (hold) {
      this.logger?.debug({ delivery: delivery.id }, 'webhook held');
      return new Promise<Delivery>((settle) => {
        hold.queue.push({ delivery, opts, settle });
      });
    }
    return this.dispatch(delivery, opts);
  }

  /**
   * Starts holding every future send that contains a change matching `match` (the first
   * active hold that matches wins). Held sends are not POSTed until `release()`; this is how
   * tests make a `terminate` arrive before its `connect` (meta-calling-api.md §2.4).
   */
  hold(match: (change: WebhookChange) => boolean): HoldHandle {
    this.assertOpen();
    const hold: Hold = { match, queue: [], released: false };
    this.holds.push(hold);
    return {
      release: async (): Promise<Delivery[]> => {
        if (hold.released) return [];
        hold.released = true;
        this.holds.splice(this.holds.indexOf(hold), 1);
        const done: Delivery[] = [];
        for (const item of hold.queue.splice(0)) {
          const result = await this.dispatch(item.delivery, item.opts);
          item.settle(result);
          done.push(result);
        }
        return done;
      },
    };
  }

  /**
   * Stale redelivery: POSTs the exact bytes and signature of an earlier delivery again, as a
   * new delivery with `redeliveryOf` set (Meta retries after a timed-out request the receiver
   * did process; §2.4). Tamper mode carries over; duplicates and delay do not.
   *
   * @throws {WebhookEmitterError} `UNKNOWN_DELIVERY` for an unknown id, `CLOSED` after close.
   */
  async redeliver(deliveryId: string): Promise<Delivery> {
    this.assertOpen();
    const original = this.log.find((d) => d.id === deliveryId);
    if (!original) throw new WebhookEmitterError('UNKNOWN_DELIVERY', `no delivery with id ${deliveryId}`);
    const copy = this.newDelivery(original.changes, original.signedBody, original.tamper, 1);
    copy.redeliveryOf = original.id;
    return this.dispatch(copy, {});
  }

  /**
   * Aborts in-flight requests, pending retries and delays, and settles held sends as
   * `aborted`. Later calls of `send`/`verify`/`hold`/`redeliver` throw `CLOSED`. Idempotent.
   */
  close(): void {
    if (this.closer.signal.aborted) return;
    this.closer.abort(new WebhookEmitterError('CLOSED', 'webhook emitter closed'));
    for (const hold of this.holds.splice(0)) {
      hold.released = true;
      for (const item of hold.queue.splice(0)) {
        this.finish(item.delivery, 'aborted');
        item.settle(item.delivery);
      }
    }
  }

  // -------------------------------------------------------------------------

  private assertOpen(): void {
    if (this.closer.signal.aborted) throw new WebhookEmitterError('CLOSED', 'webhook emitter is closed');
  }

  private baseHeaders(): Record<string, string> {
    // Meta's webhook requests identify as the Facebook crawler UA.
    return { 'User-Agent': 'facebookexternalua', Accept: '*/*' };
  }

  private newDelivery(
    changes: WebhookChange[],
    signedBody: string,
    tamper: TamperMode | undefined,
    copies: number,
  ): Delivery {
    let body = signedBody;
    let signature: string | undefined = signBody(this.appSecret, signedBody);
    if (tamper === 'unsigned') signature = undefined;
    else if (tamper === 'bad-signature') signature = signBody(`${this.appSecret}-wrong`, signedBody);
    else if (tamper === 'flip-byte') body = flipOneBit(signedBody);
    const delivery: Delivery = {
      id: `dlv-${++this.counter}`,
      changes,
      body,
      signedBody,
      copies,
      attempts: [],
      outcome: 'pending',
      createdAt: Date.now(),
    };
    if (signature !== undefined) delivery.signature = signature;
    if (tamper !== undefined) delivery.tamper = tamper;
    this.log.push(delivery);
    return delivery;
  }

  private finish(delivery: Delivery, outcome: DeliveryOutcome): void {
    delivery.outcome = outcome;
    delivery.finishedAt = Date.now();
  }

  private async dispatch(delivery: Delivery, opts: SendOptions): Promise<Delivery> {
    const signal = this.closer.signal;
    if (opts.delayMs && opts.delayMs > 0 && !(await sleep(opts.delayMs, signal))) {
      this.finish(delivery, 'aborted');
      return delivery;
    }
    const copies = Array.from({ length: delivery.copies }, (_, copy) => this.deliverCopy(delivery, copy));
    const outcomes = await Promise.all(copies);
    const outcome: DeliveryOutcome = outcomes.includes('aborted')
      ? 'aborted'
      : outcomes.every((o) => o === 'delivered')
        ? 'delivered'
        : 'failed';
    this.finish(delivery, outcome);
    this.logger?.info(
      { delivery: delivery.id, outcome, attempts: delivery.attempts.length },
      `webhook delivery ${outcome}`,
    );
    return delivery;
  }

  private async deliverCopy(delivery: Delivery, copy: number): Promise<DeliveryOutcome> {
    const closed = this.closer.signal;
    const headers: Record<string, string> = { ...this.baseHeaders(), 'Content-Type': 'application/json' };
    if (delivery.signature !== undefined) headers['X-Hub-Signature-256'] = delivery.signature;
    const bytes = Buffer.from(delivery.body, 'utf8');
    const maxAttempts = 1 + this.retryDelaysMs.length;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (attempt > 1 && !(await sleep(this.retryDelaysMs[attempt - 2] ?? 0, closed))) return 'aborted';
      if (closed.aborted) return 'aborted';
      const record: DeliveryAttempt = { copy, attempt, startedAt: Date.now(), latencyMs: 0 };
      delivery.attempts.push(record);
      const timeout = AbortSignal.timeout(this.timeoutMs);
      const signal = AbortSignal.any([timeout, closed]);
      try {
        const res = await fetch(this.url, { method: 'POST', headers, body: bytes, signal, redirect: 'manual' });
        record.latencyMs = Date.now() - record.startedAt;
        record.status = res.status;
        record.responseBody = (await res.text()).slice(0, RESPONSE_BODY_LIMIT);
      } catch (err) {
        record.latencyMs = Date.now() - record.startedAt;
        if (closed.aborted) record.error = 'aborted';
        else if (timeout.aborted) record.error = 'timeout';
        else record.error = describeError(err);
      }
      // Only a 200 counts as delivered; anything else triggers a retry (§2.3).
      const ok = record.status === 200;
      this.logger?.[ok ? 'debug' : 'warn'](
        { delivery: delivery.id, ...record, responseBody: undefined },
        ok ? 'webhook attempt delivered' : 'webhook attempt failed',
      );
      if (ok) return 'delivered';
      if (closed.aborted) return 'aborted';
    }
    return 'failed';
  }
}
