/**
 * A call placed to the worker (we are the UAS, RFC 3261 §13.3): provisional and final responses
 * with a stable To tag, Record-Route echoed (§12.1.1 — Meta's ACK never arrives otherwise), 2xx
 * retransmitted until ACK, CANCEL → 487, BYE only after the ACK (§15).
 */

import type { Logger } from 'pino';
import type { SipMessage, SipRemote } from 'sip';
import { Emitter } from '../emitter.ts';
import { redactSdp, sessionVersion } from '../sdp/sdp.ts';
import type { SipStackContext } from './dialog.ts';
import { SipDialog, saysTimer, sessionExpiresOf } from './dialog.ts';
import { decideAsUas, formatSessionExpires } from './session-timer.ts';
import type {
  InboundSipCall,
  InboundSipCallEvent,
  SipDialogEvent,
  SipDialogState,
  SipParty,
  SipSource,
  SipTransport,
} from './sip-port.ts';
import { SipError } from './sip-port.ts';
import {
  ALLOW,
  bodyOf,
  contactUri,
  copyNameAddr,
  extraHeaders,
  fromWire,
  headerText,
  newTag,
  partyOf,
  responseTo,
  SUPPORTED,
  toWire,
  uriText,
} from './sip-wire.ts';

/** Headers whose values never leave the SIP layer (credentials). */
const HIDDEN_HEADERS: ReadonlySet<string> = new Set(['authorization', 'proxy-authorization']);

/** Text of every header of `rq`, credentials removed. */
function headerMap(rq: SipMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(rq.headers)) {
    if (HIDDEN_HEADERS.has(name) || value === undefined) continue;
    if (typeof value === 'string') out[name] = fromWire(value);
    else if (typeof value === 'number') out[name] = String(value);
    else if (name === 'from' || name === 'to') out[name] = uriText((value as { uri: string }).uri);
    else if (name === 'cseq') out[name] = `${(value as { seq: number }).seq} ${(value as { method: string }).method}`;
  }
  return out;
}

/** Implementation of {@link InboundSipCall}. */
export class InboundCall extends SipDialog implements InboundSipCall {
  readonly #events: Emitter<InboundSipCallEvent>;
  readonly #invite: SipMessage;
  readonly requestUri: string;
  readonly from: SipParty;
  readonly to: SipParty;
  readonly headers: Readonly<Record<string, string>>;
  readonly source: SipSource;
  readonly sdpOffer: string | undefined;
  #finalSent = false;
  #acked = false;
  #ackWait: Promise<boolean> | undefined;
  #terminated = false;
  #hangUp: Promise<void> | undefined;
  readonly #onEnd: (call: InboundCall) => void;

  constructor(
    ctx: SipStackContext,
    logger: Logger,
    rq: SipMessage,
    remote: SipRemote,
    onEnd: (call: InboundCall) => void,
  ) {
    const callId = rq.headers['call-id'] ?? '';
    const localTag = newTag();
    const to = rq.headers.to ?? { uri: '', params: {} };
    const transport = remote.protocol.toLowerCase() as SipTransport;
    const log = logger.child({ sipCallId: callId, direction: 'inbound' });
    super(
      ctx,
      log,
      callId,
      localTag,
      { ...copyNameAddr(to), params: { ...to.params, tag: localTag } },
      transport,
      1 + Math.floor(Math.random() * 10000),
    );
    this.#events = new Emitter(log);
    this.#invite = rq;
    this.#onEnd = onEnd;
    this.requestUri = uriText(rq.uri);
    this.from = partyOf(rq.headers.from);
    this.to = partyOf(rq.headers.to);
    this.headers = headerMap(rq);
    this.source = { address: remote.address, port: remote.port, transport };
    this.sdpOffer = bodyOf(rq);
    this.remoteTag = rq.headers.from?.params.tag ?? undefined;
    this.remoteParty = rq.headers.from ? copyNameAddr(rq.headers.from) : undefined;
    this.remoteTarget = contactUri(rq);
    this.routeSet = SipDialog.routeSetOf(rq, false);
    this.remoteCSeq = rq.headers.cseq?.seq;
    this.setInitialRemoteSdp(this.sdpOffer);
    ctx.registerDialog(callId, localTag, this);
    log.info(
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
    return this.dialogState;
  }

  on(listener: (event: InboundSipCallEvent) => void): () => void {
    return this.#events.on(listener);
  }

  protected emitDialogEvent(e: SipDialogEvent): void {
    this.#events.emit(e);
  }

  /** A response to the INVITE: our To tag; Contact and Record-Route on dialog-creating ones. */
  #respondInvite(status: number, reason: string, headers: Record<string, unknown> = {}, content?: string): SipMessage {
    const rq = this.#invite;
    const dialogCreating = status > 100 && status < 300;
    return responseTo(rq, status, reason, {
      toTag: this.localTag,
      headers: {
        ...(dialogCreating
          ? {
              'record-route': rq.headers['record-route'],
              contact: [{ uri: this.ctx.contactFor(this.transport), params: {} }],
              allow: ALLOW,
            }
          : {}),
        server: this.ctx.userAgent,
        ...headers,
      },
      ...(content === undefined ? {} : { content: toWire(content) }),
    });
  }

  /** 100 Trying right away (RFC 3261 §17.2.1: the INVITE server transaction must not stay silent). */
  trying(): void {
    this.ctx.stack.send(this.#respondInvite(100, 'Trying'));
  }

  ringing(sdp?: string): void {
    if (this.#finalSent) {
      this.logger.warn('ringing() after final response ignored');
      return;
    }
    this.dialogState = 'early';
    const rs =
      sdp === undefined
        ? this.#respondInvite(180, 'Ringing')
        : this.#respondInvite(183, 'Session Progress', { 'content-type': 'application/sdp' }, sdp);
    if (sdp !== undefined) {
      this.localSdp = sdp;
      this.localSdpVersion = sessionVersion(sdp);
    }
    this.ctx.stack.send(rs);
  }

  answer(sdp: string): Promise<void> {
    if (this.#finalSent)
      return Promise.reject(new SipError(481, 'final response already sent', { callId: this.callId }));
    this.#finalSent = true;
    this.localSdp = sdp;
    this.localSdpVersion = sessionVersion(sdp);
    this.dialogState = 'confirmed';
    // RFC 4028 §9: the session interval the INVITE asked for (the adapter has refused one too small).
    const session = decideAsUas(
      { sessionExpires: sessionExpiresOf(this.#invite), uacSupportsTimer: saysTimer(this.#invite) },
      this.ctx.minSessionExpiresS,
    );
    const sessionHeaders: Record<string, string> =
      session.kind === 'timer'
        ? {
            'session-expires': formatSessionExpires(session.interval),
            ...(session.requireTimer ? { require: 'timer' } : {}),
          }
        : {};
    this.peerAllowsUpdate = /\bUPDATE\b/i.test(headerText(this.#invite, 'allow') ?? '');
    this.logger.info({ sdp: redactSdp(sdp), sessionExpires: sessionHeaders['session-expires'] }, 'answering 200');
    const rs = this.#respondInvite(
      200,
      'OK',
      { 'content-type': 'application/sdp', supported: SUPPORTED, ...sessionHeaders },
      sdp,
    );
    this.#ackWait = this.send2xx(this.#invite, rs, false);
    return this.#ackWait.then(async (acked) => {
      if (acked) {
        this.#acked = true;
        if (session.kind === 'timer' && !this.#terminated) this.armSessionTimer(session.interval, 'uas');
        return;
      }
      if (this.#terminated) throw new SipError(487, 'call ended before ACK', { callId: this.callId });
      // RFC 3261 §13.3.1.4: 64·T1 without ACK → BYE.
      this.logger.warn('no ACK for 200; ending call with BYE');
      this.#events.emit({ type: 'failed', status: 408, reason: 'No ACK for 2xx' });
      this.terminate('no ACK');
      await this.sendBye();
      throw new SipError(408, 'no ACK for 2xx', { callId: this.callId });
    });
  }

  reject(status: number, reason?: string, headers?: Readonly<Record<string, string>>): void {
    if (!Number.isInteger(status) || status < 300 || status > 699)
      throw new TypeError(`reject status must be 300-699, got ${status}`);
    if (this.#finalSent) {
      this.logger.warn({ status }, 'reject() after final response ignored');
      return;
    }
    this.#finalSent = true;
    this.logger.info({ status, reason }, 'rejecting INVITE');
    this.ctx.stack.send(this.#respondInvite(status, reason ?? 'Rejected', extraHeaders(headers)));
    this.terminate(`rejected ${status}`);
  }

  /** CANCEL matched to this INVITE (RFC 3261 §9.2): 200 to the CANCEL, 487 to the INVITE. */
  onCancel(cancel: SipMessage): void {
    this.ctx.respond(cancel, 200, 'OK', { toTag: this.localTag });
    if (this.#finalSent) return;
    this.#finalSent = true;
    this.logger.info('INVITE cancelled by caller');
    this.ctx.stack.send(this.#respondInvite(487, 'Request Terminated'));
    const reason = headerText(cancel, 'reason');
    this.#events.emit(reason === undefined ? { type: 'cancelled' } : { type: 'cancelled', reason });
    this.terminate('cancelled');
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
    // RFC 3261 §15: the callee must not send BYE before the ACK (or the 2xx timing out).
    if (!this.#acked && this.#ackWait) {
      const acked = await this.#ackWait;
      if (!acked || this.#terminated) return;
    }
    this.logger.info('hanging up (BYE)');
    this.terminate('local hang-up');
    await this.sendBye(extraHeaders(headers));
  }

  /** Handler failure: answer 500 if nothing final went out yet. */
  failInternally(err: unknown): void {
    this.logger.error({ err }, 'inbound INVITE handler failed');
    if (!this.#finalSent) this.reject(500, 'Server Internal Error');
  }

  protected terminate(why: string): void {
    if (this.#terminated) return;
    this.#terminated = true;
    this.dialogState = 'terminated';
    this.stopRetransmissions();
    this.ctx.unregisterDialog(this.callId, this.localTag);
    this.logger.debug({ why }, 'call terminated');
    this.#onEnd(this);
  }
}
