/**
 * A call placed to the worker (UAS) through drachtio-server. drachtio-server sends 100 Trying,
 * answers CANCEL with 200 and the INVITE with 487, retransmits our 2xx until the ACK and keeps the
 * dialog; this class turns the INVITE into an {@link InboundSipCall} and its answers into
 * `res.send` / `createUAS`.
 */
import type Srf from 'drachtio-srf';
import type { Logger } from 'pino';
import { Emitter } from '../../emitter.ts';
import { redactSdp, sessionVersion } from '../../sdp/sdp.ts';
import { RemoteSdpTracker } from '../reinvite.ts';
import { armedFor } from '../session-timer.ts';
import type {
  InboundSipCall,
  InboundSipCallEvent,
  SipDialogState,
  SipParty,
  SipSource,
  SipTransport,
} from '../sip-port.ts';
import { SipError } from '../sip-port.ts';
import { ALLOW } from '../sip-wire.ts';
import {
  attachDialog,
  type DrachtioContext,
  destroyDialog,
  plainHeaders,
  sessionDecision,
  sessionHeaders,
} from './drachtio-dialog.ts';

/** Headers the SIP layer keeps (routing) or never exposes (credentials), as in the in-process adapter. */
const KEPT_HEADERS: ReadonlySet<string> = new Set([
  'via',
  'contact',
  'route',
  'record-route',
  'authorization',
  'proxy-authorization',
  'content-length',
]);

function unquote(s: string): string {
  const t = s.trim();
  return t.startsWith('"') && t.endsWith('"') && t.length >= 2 ? t.slice(1, -1).replace(/\\(.)/g, '$1') : t;
}

function decodeSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** A From/To header of a drachtio request as a {@link SipParty}. */
export function drachtioParty(ctx: DrachtioContext, req: Srf.SrfRequest, name: 'from' | 'to'): SipParty {
  const na = req.getParsedHeader(name) as { name?: string; uri?: string } | undefined;
  const uri = na?.uri ?? '';
  const parsed = uri ? (ctx.parseUri(uri) as { user?: string } | undefined) : undefined;
  const displayName = na?.name ? unquote(na.name) : '';
  return {
    uri,
    user: parsed?.user === undefined ? undefined : decodeSafe(parsed.user),
    displayName: displayName || undefined,
  };
}

/** {@link InboundSipCall} on drachtio-srf. */
export class DrachtioInboundCall implements InboundSipCall {
  readonly callId: string;
  readonly requestUri: string;
  readonly from: SipParty;
  readonly to: SipParty;
  readonly headers: Readonly<Record<string, string>>;
  readonly source: SipSource;
  readonly sdpOffer: string | undefined;
  readonly #ctx: DrachtioContext;
  readonly #logger: Logger;
  readonly #req: Srf.SrfRequest;
  readonly #res: Srf.SrfResponse;
  readonly #events: Emitter<InboundSipCallEvent>;
  readonly #ackTimeoutMs: number;
  readonly #onEnd: (c: DrachtioInboundCall) => void;
  readonly #remoteSdp = new RemoteSdpTracker();
  #state: SipDialogState = 'calling';
  #finalSent = false;
  #dialog: Srf.Dialog | undefined;
  #ackWait: Promise<boolean> | undefined;
  #hangUp: Promise<void> | undefined;
  #terminated = false;
  /** Stops the dialog's session-expiry watch. */
  #detach: { stop(): void } | undefined;

  constructor(
    ctx: DrachtioContext,
    logger: Logger,
    req: Srf.SrfRequest,
    res: Srf.SrfResponse,
    options: { ackTimeoutMs: number },
    onEnd: (c: DrachtioInboundCall) => void,
  ) {
    this.#ctx = ctx;
    this.#req = req;
    this.#res = res;
    this.#ackTimeoutMs = options.ackTimeoutMs;
    this.#onEnd = onEnd;
    this.callId = req.get('Call-ID');
    this.#logger = logger.child({ sipCallId: this.callId, direction: 'inbound' });
    this.#events = new Emitter(this.#logger);
    this.requestUri = req.uri;
    this.from = drachtioParty(ctx, req, 'from');
    this.to = drachtioParty(ctx, req, 'to');
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers ?? {})) {
      const lower = name.toLowerCase();
      if (KEPT_HEADERS.has(lower) || value === undefined) continue;
      headers[lower] =
        lower === 'from' || lower === 'to' ? (lower === 'from' ? this.from.uri : this.to.uri) : String(value);
    }
    this.headers = headers;
    this.source = {
      address: req.source_address,
      port: Number(req.source_port),
      transport: String(req.protocol).toLowerCase() as SipTransport,
    };
    this.sdpOffer = req.body ? req.body : undefined;
    this.#remoteSdp.start(this.sdpOffer);
    req.on('cancel', (cancel: Srf.SipMessage) => this.#onCancel(cancel));
    this.#logger.info(
      {
        from: this.from.uri,
        requestUri: this.requestUri,
        source: this.source,
        sdp: this.sdpOffer === undefined ? undefined : redactSdp(this.sdpOffer),
      },
      'INVITE received',
    );
  }

  get state(): SipDialogState {
    return this.#state;
  }

  on(listener: (event: InboundSipCallEvent) => void): () => void {
    return this.#events.on(listener);
  }

  ringing(sdp?: string): void {
    if (this.#finalSent) {
      this.#logger.warn('ringing() after final response ignored');
      return;
    }
    this.#state = 'early';
    if (sdp === undefined) this.#res.send(180, { headers: { Allow: ALLOW } });
    else this.#res.send(183, { body: sdp, headers: { 'Content-Type': 'application/sdp', Allow: ALLOW } });
  }

  answer(sdp: string): Promise<void> {
    if (this.#finalSent)
      return Promise.reject(new SipError(481, 'final response already sent', { callId: this.callId }));
    this.#finalSent = true;
    this.#state = 'confirmed';
    this.#logger.info({ sdp: redactSdp(sdp) }, 'answering 200');
    const session = sessionDecision(this.#req, this.#ctx.minSessionExpiresS);
    this.#ackWait = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), this.#ackTimeoutMs);
      const onDialog = (dialog: Srf.Dialog): void => {
        this.#dialog = dialog;
        dialog.once('ack', () => {
          clearTimeout(timer);
          resolve(true);
        });
        this.#detach = attachDialog(this.#ctx, dialog, {
          logger: this.#logger,
          localSdp: sdp,
          localVersion: sessionVersion(sdp),
          remoteSdp: this.#remoteSdp,
          ...(session.kind === 'timer' ? { session: armedFor(session.interval, 'uas') } : {}),
          emit: (e) => this.#events.emit(e),
          onRemoteBye: (_reason, fromServer) => {
            clearTimeout(timer);
            // drachtio-server gave up waiting for the ACK and sent BYE itself: treat as no ACK.
            resolve(!fromServer);
            if (!fromServer) this.#terminate('remote BYE');
          },
        });
      };
      // The callback form on purpose: it runs in the same tick as drachtio's confirmation of our
      // 200, so the dialog's listeners are on before a quick ACK/BYE in the same read is handled
      // (a promise continuation would run after it).
      this.#ctx.srf.createUAS(
        this.#req,
        this.#res,
        {
          localSdp: sdp,
          headers: {
            'Content-Type': 'application/sdp',
            Allow: ALLOW,
            Server: this.#ctx.userAgent,
            // RFC 4028 §9 (the adapter refused an interval too small); drachtio-server runs the timer.
            ...sessionHeaders(session),
          },
        },
        (err: unknown, dialog: Srf.Dialog) => {
          if (err || !dialog) {
            clearTimeout(timer);
            this.#logger.warn({ err }, '200 not sent');
            resolve(false);
            return;
          }
          onDialog(dialog);
        },
      );
    });
    return this.#ackWait.then(async (acked) => {
      if (acked) return;
      if (this.#terminated) throw new SipError(487, 'call ended before ACK', { callId: this.callId });
      this.#logger.warn('no ACK for 200; ending call with BYE');
      this.#events.emit({ type: 'failed', status: 408, reason: 'No ACK for 2xx' });
      const dialog = this.#dialog;
      this.#terminate('no ACK');
      if (dialog) await this.#ctx.bounded(destroyDialog(dialog), 'BYE after missing ACK', this.#logger);
      throw new SipError(408, 'no ACK for 2xx', { callId: this.callId });
    });
  }

  reject(status: number, reason?: string, headers?: Readonly<Record<string, string>>): void {
    if (!Number.isInteger(status) || status < 300 || status > 699)
      throw new TypeError(`reject status must be 300-699, got ${status}`);
    if (this.#finalSent) {
      this.#logger.warn({ status }, 'reject() after final response ignored');
      return;
    }
    this.#finalSent = true;
    this.#logger.info({ status, reason }, 'rejecting INVITE');
    const extra = { headers: { Server: this.#ctx.userAgent, ...plainHeaders(headers) } };
    if (reason === undefined) this.#res.send(status, extra);
    else this.#res.send(status, reason, extra);
    this.#terminate(`rejected ${status}`);
  }

  hangUp(headers?: Readonly<Record<string, string>>): Promise<void> {
    this.#hangUp ??= this.#doHangUp(headers);
    return this.#hangUp;
  }

  async #doHangUp(headers: Readonly<Record<string, string>> | undefined): Promise<void> {
    if (this.#terminated) return;
    if (!this.#finalSent) {
      this.reject(480, 'Temporarily Unavailable', headers);
      return;
    }
    if (this.#ackWait) {
      const acked = await this.#ackWait;
      if (!acked || this.#terminated) return;
    }
    this.#logger.info('hanging up (BYE)');
    const dialog = this.#dialog;
    this.#terminate('local hang-up');
    if (dialog) await this.#ctx.bounded(destroyDialog(dialog, plainHeaders(headers)), 'BYE', this.#logger);
  }

  /** Handler failure: answer 500 if nothing final went out yet. */
  failInternally(err: unknown): void {
    this.#logger.error({ err }, 'inbound INVITE handler failed');
    if (!this.#finalSent) this.reject(500, 'Server Internal Error');
  }

  /** CANCEL before our final response (RFC 3261 §9.2): drachtio-server has answered 200 and 487. */
  #onCancel(cancel: Srf.SipMessage): void {
    if (this.#finalSent) return;
    this.#finalSent = true;
    const reason = cancel?.has?.('Reason') ? cancel.get('Reason') : undefined;
    this.#logger.info({ reason }, 'INVITE cancelled by caller');
    this.#events.emit(reason === undefined ? { type: 'cancelled' } : { type: 'cancelled', reason });
    this.#terminate('cancelled');
  }

  #terminate(why: string): void {
    if (this.#terminated) return;
    this.#terminated = true;
    this.#detach?.stop();
    this.#state = 'terminated';
    this.#logger.debug({ why }, 'call terminated');
    this.#onEnd(this);
  }
}
