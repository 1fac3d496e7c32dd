/**
 * The dialog layer shared by calls we place (UAC) and calls placed to us (UAS): in-dialog request
 * construction (RFC 3261 §12.2.1), handling of in-dialog requests (§12.2.2: BYE, re-INVITE hold
 * and resume, OPTIONS, unsupported methods), 2xx retransmission until ACK (§13.3.1.4) and digest
 * retries of our own in-dialog requests. Transactions and their timers stay in the `sip` package.
 */

import type { Logger } from 'pino';
import type { SipMessage, SipNameAddr, SipRemote, SipStack } from 'sip';
import digest from 'sip/digest.js';
import type { Clock } from '#core/clock.ts';
import { redactSdp } from '../sdp/sdp.ts';
import { INFO_ACCEPT, parseInfoDtmf } from './info-dtmf.ts';
import { RemoteSdpTracker, reinviteAnswer } from './reinvite.ts';
import {
  armedFor,
  decideAsUas,
  formatSessionExpires,
  intervalFromUacResponse,
  listsTimer,
  parseSessionExpires,
  SessionTimer,
} from './session-timer.ts';
import type { SipCredentials, SipDialogEvent, SipDialogState, SipTransport } from './sip-port.ts';
import {
  ALLOW,
  bodyOf,
  contactUri,
  copyNameAddr,
  headerText,
  KNOWN_METHODS,
  responseTo,
  SUPPORTED,
  T2_MS,
  toWire,
  uriText,
} from './sip-wire.ts';

/** What the stack adapter provides to every call. */
export interface SipStackContext {
  readonly stack: SipStack;
  readonly userAgent: string;
  readonly fromDomain: string;
  /** Host the package treats as itself (publicAddress ?? address): it cannot send requests there. */
  readonly localHost: string;
  /** The port this stack listens on for `transport` (a target on our host at another port is not us). */
  ownPort(transport: SipTransport): number;
  /** Bound on how long `hangUp()` and friends wait for a response (the transaction itself runs on). */
  readonly requestTimeoutMs: number;
  /** How long a 2xx we sent waits for its ACK (64·T1 in RFC 3261 §13.3.1.4). */
  readonly ackTimeoutMs: number;
  /** First 2xx retransmission interval, doubling up to T2 (RFC 3261 §13.3.1.4; T1 of §17.1.1.1). */
  readonly t1Ms: number;
  readonly transports: ReadonlySet<SipTransport>;
  /** The session timers' clock (RFC 4028). */
  readonly clock: Clock;
  /** The Session-Expires our INVITEs ask for (RFC 4028 §4). */
  readonly sessionExpiresS: number;
  /** Our Min-SE: a smaller Session-Expires gets 422 (RFC 4028 §5). */
  readonly minSessionExpiresS: number;
  /** Our Contact URI for requests and responses on `transport`. */
  contactFor(transport: SipTransport): string;
  registerDialog(callId: string, localTag: string, dialog: SipDialog): void;
  unregisterDialog(callId: string, localTag: string): void;
  /** Answer a request statelessly through its server transaction. */
  respond(rq: SipMessage, status: number, reason: string, extra?: ResponseExtra): void;
  /** Run a promise in the background, logging failures; `close()` waits for it. */
  background(p: Promise<unknown>, what: string, logger: Logger): void;
}

/** Extra parts of a response. */
export interface ResponseExtra {
  /** To tag to add when the request had none (dialog-creating responses must keep one tag). */
  readonly toTag?: string;
  readonly headers?: Record<string, unknown>;
  readonly content?: string;
}

/**
 * Request-URI for an in-dialog request: the remote target (RFC 3261 §12.2.1.1). When there is no
 * route set, the dialog runs over TCP/TLS and the target has no `transport` parameter, RFC 3263
 * would pick UDP; we add the dialog's transport so ACK/BYE follow the connection-oriented path the
 * far end is known to listen on (many PBXs put a bare Contact in their 2xx).
 */
export function dialogRequestUri(target: string, routeSet: readonly SipNameAddr[], transport: SipTransport): string {
  if (routeSet.length > 0 || transport === 'udp' || /;transport=/i.test(target) || target.startsWith('sips:'))
    return target;
  const q = target.indexOf('?');
  return q < 0 ? `${target};transport=${transport}` : `${target.slice(0, q)};transport=${transport}${target.slice(q)}`;
}

/**
 * Send a non-INVITE request and resolve with its final response, or `undefined` when nothing
 * final arrives within `timeoutMs`. Provisional responses are skipped.
 */
export function requestFinal(stack: SipStack, rq: SipMessage, timeoutMs: number): Promise<SipMessage | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), timeoutMs);
    stack.send(rq, (rs) => {
      if ((rs.status ?? 0) >= 200) {
        clearTimeout(timer);
        resolve(rs);
      }
    });
  });
}

/**
 * Answer a 401/407 challenge in `rs` by signing `rq` (RFC 2617 / RFC 3261 §22.2). Only MD5 and
 * MD5-sess are supported by the package's digest module; a challenge offering only other
 * algorithms (RFC 7616 SHA-256) yields `false`.
 */
export function signWithChallenge(rq: SipMessage, rs: SipMessage, creds: SipCredentials): boolean {
  const challenges = (rs.status === 407 ? rs.headers['proxy-authenticate'] : rs.headers['www-authenticate']) ?? [];
  const usable = challenges.find((c) => {
    if (c.scheme?.toLowerCase() !== 'digest') return false;
    const alg = c.algorithm?.replace(/"/g, '').toLowerCase();
    return alg === undefined || alg === 'md5' || alg === 'md5-sess';
  });
  if (!usable || usable.nonce === undefined) return false;
  const realm = (usable.realm ?? '').replace(/^"|"$/g, '');
  try {
    digest.signRequest(null, rq, rs, { user: creds.username, password: creds.password, realm });
    return true;
  } catch {
    return false;
  }
}

/** The Session-Expires of a message (RFC 4028 §4; `x` is its compact form). */
export function sessionExpiresOf(m: SipMessage): ReturnType<typeof parseSessionExpires> {
  return parseSessionExpires(headerText(m, 'session-expires') ?? headerText(m, 'x'));
}

/** True when a request says its sender supports session timers (Supported or Require lists `timer`). */
export function saysTimer(m: SipMessage): boolean {
  return listsTimer(headerText(m, 'supported')) || listsTimer(headerText(m, 'require'));
}

/** The Reason of a BYE that ends an expired session (RFC 3326; RFC 4028 §10). */
export const SESSION_EXPIRED_REASON = 'SIP;cause=408;text="Session timer expired"';

/** Retransmits a 2xx over UDP (T1 doubling to T2) until its ACK arrives or `ackTimeoutMs` passes. */
class TwoXxRetransmitter {
  #timer: NodeJS.Timeout | undefined;
  #deadline: NodeJS.Timeout | undefined;
  #done = false;
  readonly acked: Promise<boolean>;
  #resolve!: (acked: boolean) => void;

  constructor(stack: SipStack, rs: SipMessage, reliable: boolean, ackTimeoutMs: number, t1Ms: number) {
    this.acked = new Promise((r) => {
      this.#resolve = r;
    });
    stack.send(rs);
    if (!reliable) {
      const resend = (interval: number): void => {
        this.#timer = setTimeout(() => {
          stack.send(rs);
          resend(Math.min(interval * 2, T2_MS));
        }, interval);
      };
      resend(t1Ms);
    }
    this.#deadline = setTimeout(() => this.#finish(false), ackTimeoutMs);
  }

  ack(): void {
    this.#finish(true);
  }

  cancel(): void {
    this.#finish(false);
  }

  #finish(acked: boolean): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#deadline);
    this.#resolve(acked);
  }
}

/** Dialog state and behaviour common to both call directions. */
export abstract class SipDialog {
  protected readonly ctx: SipStackContext;
  protected readonly logger: Logger;
  readonly callId: string;
  protected readonly localTag: string;
  protected remoteTag: string | undefined;
  /** Our name-addr with our tag (From of our in-dialog requests). */
  protected localParty: SipNameAddr;
  /** The far end's name-addr with its tag (To of our in-dialog requests). */
  protected remoteParty: SipNameAddr | undefined;
  /** Remote target: the far end's Contact (§12.1), refreshed by re-INVITE. */
  protected remoteTarget: string | undefined;
  protected routeSet: SipNameAddr[] = [];
  protected localCSeq: number;
  protected remoteCSeq: number | undefined;
  protected transport: SipTransport;
  protected credentials: SipCredentials | undefined;
  /** The SDP we offered or answered; re-INVITE answers are this with a mirrored direction. */
  protected localSdp: string | undefined;
  protected localSdpVersion = 0;
  /** The SDP we last sent in this dialog (a re-INVITE or UPDATE answer), which a refresh repeats as is. */
  #lastSentSdp: string | undefined;
  readonly #remoteSdp = new RemoteSdpTracker();
  /** 2xx responses we sent, waiting for ACK, by CSeq number. */
  readonly #awaitingAck = new Map<number, { rt: TwoXxRetransmitter; offerless: boolean }>();
  protected dialogState: SipDialogState = 'calling';
  /** RFC 4028 session timer of the dialog, armed once confirmed when one was negotiated. */
  protected readonly sessionTimer: SessionTimer;
  /** The far end listed UPDATE in its Allow: refreshes go by UPDATE, else by re-INVITE (RFC 4028 §7.4). */
  protected peerAllowsUpdate = false;

  protected constructor(
    ctx: SipStackContext,
    logger: Logger,
    callId: string,
    localTag: string,
    localParty: SipNameAddr,
    transport: SipTransport,
    localCSeq: number,
  ) {
    this.ctx = ctx;
    this.logger = logger;
    this.callId = callId;
    this.localTag = localTag;
    this.localParty = localParty;
    this.transport = transport;
    this.localCSeq = localCSeq;
    this.sessionTimer = new SessionTimer(ctx.clock, {
      refresh: () => this.ctx.background(this.#refreshSession(), 'session refresh', this.logger),
      expire: () => this.#endExpiredSession('no session refresh from the far end in time'),
    });
  }

  /** Mid-dialog events go to the subclass's listeners. */
  protected abstract emitDialogEvent(e: SipDialogEvent): void;

  /** The dialog is over (BYE either way, ACK timeout): release everything. */
  protected abstract terminate(why: string): void;

  /** The remote SDP the dialog started with (the answer, or the offer for a UAS). */
  protected setInitialRemoteSdp(sdp: string | undefined): void {
    this.#remoteSdp.start(sdp);
  }

  /** Stop any pending 2xx retransmission and the session timer (on termination). */
  protected stopRetransmissions(): void {
    this.sessionTimer.stop();
    for (const { rt } of this.#awaitingAck.values()) rt.cancel();
    this.#awaitingAck.clear();
  }

  /** Build an in-dialog request (RFC 3261 §12.2.1.1) with a fresh CSeq. */
  protected buildInDialogRequest(
    method: string,
    extraHeaders: Record<string, unknown> = {},
    content?: string,
  ): SipMessage {
    this.localCSeq += 1;
    return {
      method,
      uri: dialogRequestUri(this.remoteTarget ?? '', this.routeSet, this.transport),
      headers: {
        via: [],
        to: copyNameAddr(this.remoteParty ?? { uri: this.remoteTarget ?? '', params: {} }),
        from: copyNameAddr(this.localParty),
        'call-id': this.callId,
        cseq: { seq: this.localCSeq, method },
        route: this.routeSet.map(copyNameAddr),
        'max-forwards': 70,
        'user-agent': this.ctx.userAgent,
        ...extraHeaders,
      },
      ...(content === undefined ? {} : { content }),
    };
  }

  /**
   * Send an in-dialog request and resolve with its final response (`undefined` on timeout). A
   * 401/407 is answered once with our credentials and a new CSeq (RFC 3261 §22.2).
   */
  protected async sendInDialog(
    method: string,
    extraHeaders: Record<string, unknown> = {},
  ): Promise<SipMessage | undefined> {
    const rq = this.buildInDialogRequest(method, extraHeaders);
    let rs = await requestFinal(this.ctx.stack, rq, this.ctx.requestTimeoutMs);
    if (rs && (rs.status === 401 || rs.status === 407) && this.credentials) {
      const retry = this.buildInDialogRequest(method, extraHeaders);
      if (signWithChallenge(retry, rs, this.credentials))
        rs = await requestFinal(this.ctx.stack, retry, this.ctx.requestTimeoutMs);
    }
    this.logger.debug({ method, status: rs?.status ?? 'timeout' }, 'in-dialog request done');
    return rs;
  }

  /**
   * Send BYE (RFC 3261 §15.1.1), with `headers` (wire form, e.g. a Reason, RFC 3326). Never rejects:
   * a lost BYE still ends the call locally.
   */
  protected async sendBye(headers: Record<string, string> = {}): Promise<void> {
    const rs = await this.sendInDialog('BYE', headers);
    if (!rs || (rs.status ?? 0) >= 300)
      this.logger.warn({ status: rs?.status ?? 'timeout' }, 'BYE not confirmed by far end');
  }

  /**
   * Send a 2xx to an INVITE and keep retransmitting it until the ACK arrives. Resolves `true` on
   * ACK, `false` when it never came.
   */
  protected send2xx(rq: SipMessage, rs: SipMessage, offerless: boolean): Promise<boolean> {
    const seq = rq.headers.cseq?.seq ?? 0;
    const rt = new TwoXxRetransmitter(
      this.ctx.stack,
      rs,
      this.transport !== 'udp',
      this.ctx.ackTimeoutMs,
      this.ctx.t1Ms,
    );
    this.#awaitingAck.set(seq, { rt, offerless });
    return rt.acked.then((acked) => {
      this.#awaitingAck.delete(seq);
      return acked;
    });
  }

  /** A 2xx-ACK routed to this dialog by Call-ID and To tag. */
  onAck(ack: SipMessage): void {
    const seq = ack.headers.cseq?.seq ?? -1;
    const pending = this.#awaitingAck.get(seq);
    if (!pending) return;
    pending.rt.ack();
    // Offer in our 2xx, answer in the ACK (RFC 3264 §4 with an offerless re-INVITE).
    const sdp = bodyOf(ack);
    if (pending.offerless && sdp) this.#applyRemoteSdp(sdp);
  }

  /** A request whose Call-ID and To tag name this dialog (RFC 3261 §12.2.2). */
  handleRequest(rq: SipMessage, remote: SipRemote): void {
    const method = rq.method ?? '';
    const seq = rq.headers.cseq?.seq ?? 0;
    if (this.remoteCSeq !== undefined && seq < this.remoteCSeq) {
      this.ctx.respond(rq, 500, 'CSeq Out Of Order');
      return;
    }
    this.remoteCSeq = seq;
    switch (method) {
      case 'BYE':
        this.ctx.respond(rq, 200, 'OK');
        this.logger.info({ reason: headerText(rq, 'reason') }, 'far end hung up');
        this.onRemoteBye(headerText(rq, 'reason'));
        return;
      case 'INVITE':
        this.#onReinvite(rq, remote);
        return;
      case 'OPTIONS':
        this.ctx.respond(rq, 200, 'OK', { headers: { allow: ALLOW, accept: 'application/sdp' } });
        return;
      case 'UPDATE':
        this.#onUpdate(rq);
        return;
      case 'INFO':
        this.#onInfo(rq);
        return;
      default:
        if (KNOWN_METHODS.has(method)) this.ctx.respond(rq, 405, 'Method Not Allowed', { headers: { allow: ALLOW } });
        else this.ctx.respond(rq, 501, 'Not Implemented', { headers: { allow: ALLOW } });
    }
  }

  /** BYE from the far end has been answered; subclasses emit and terminate. */
  protected onRemoteBye(reason: string | undefined): void {
    this.emitDialogEvent(reason === undefined ? { type: 'remote-hangup' } : { type: 'remote-hangup', reason });
    this.terminate('remote BYE');
  }

  /** The request's SDP offer (undefined: no body); false when the body is not SDP and 415 was sent. */
  #sdpBody(rq: SipMessage): string | undefined | false {
    const type = headerText(rq, 'content-type');
    const offer = bodyOf(rq);
    if (offer !== undefined && type !== undefined && !/^application\/sdp\b/i.test(type)) {
      this.ctx.respond(rq, 415, 'Unsupported Media Type', { headers: { accept: 'application/sdp' } });
      return false;
    }
    return offer;
  }

  #onReinvite(rq: SipMessage, remote: SipRemote): void {
    if (this.dialogState !== 'confirmed' || this.#awaitingAck.size > 0) {
      // RFC 3261 §14.2: an INVITE while a previous one is still in progress → 500 with Retry-After.
      this.ctx.respond(rq, 500, 'Server Internal Error', {
        headers: { 'retry-after': String(1 + Math.floor(Math.random() * 10)) },
      });
      return;
    }
    const offer = this.#sdpBody(rq);
    if (offer === false) return;
    if (!this.localSdp) {
      this.ctx.respond(rq, 488, 'Not Acceptable Here');
      return;
    }
    const session = this.#answerSessionRefresh(rq);
    if (session === undefined) return;
    // Target refresh (RFC 3261 §12.2.2).
    const contact = contactUri(rq);
    if (contact) this.remoteTarget = contact;
    this.localSdpVersion += 1;
    const { sdp: answer, direction } = reinviteAnswer(this.localSdp, offer, this.localSdpVersion);
    const rs = this.#response(rq, 200, 'OK', {
      contact: [{ uri: this.ctx.contactFor(this.transport), params: {} }],
      allow: ALLOW,
      supported: SUPPORTED,
      'content-type': 'application/sdp',
      ...session,
    });
    rs.content = toWire(answer);
    this.#lastSentSdp = answer;
    this.logger.debug(
      {
        source: `${remote.address}:${remote.port}`,
        offer: offer === undefined ? undefined : redactSdp(offer),
        direction,
      },
      're-INVITE answered',
    );
    this.ctx.background(
      this.send2xx(rq, rs, offer === undefined).then((acked) => {
        if (!acked && this.dialogState === 'confirmed') {
          // RFC 3261 §13.3.1.4: no ACK for our 2xx → end the dialog with BYE.
          this.logger.warn('no ACK for re-INVITE 2xx; ending dialog');
          this.terminate('no ACK for re-INVITE 2xx');
          return this.sendBye();
        }
        return undefined;
      }),
      're-INVITE 2xx',
      this.logger,
    );
    if (offer !== undefined) this.#applyRemoteSdp(offer);
  }

  /**
   * UPDATE (RFC 3311): a session refresh (RFC 4028) or target refresh without SDP is answered 200;
   * an SDP offer in it goes through the same offer/answer as a re-INVITE ({@link reinviteAnswer}),
   * its answer in the 200 (§5.2: no ACK).
   */
  #onUpdate(rq: SipMessage): void {
    if (this.dialogState !== 'confirmed') {
      // An early-dialog UPDATE needs PRACK-reliable offers (§5.1), which we do not do.
      this.ctx.respond(rq, 500, 'Server Internal Error', { headers: { 'retry-after': '1' } });
      return;
    }
    const offer = this.#sdpBody(rq);
    if (offer === false) return;
    if (offer !== undefined && (!this.localSdp || this.#awaitingAck.size > 0)) {
      // RFC 3311 §5.2: an offer while one of ours is unanswered (a re-INVITE 2xx awaiting its ACK) → 500.
      this.ctx.respond(rq, 500, 'Server Internal Error', { headers: { 'retry-after': '1' } });
      return;
    }
    const session = this.#answerSessionRefresh(rq);
    if (session === undefined) return;
    const contact = contactUri(rq);
    if (contact) this.remoteTarget = contact;
    const headers: Record<string, unknown> = {
      contact: [{ uri: this.ctx.contactFor(this.transport), params: {} }],
      allow: ALLOW,
      supported: SUPPORTED,
      ...session,
    };
    if (offer === undefined || !this.localSdp) {
      this.ctx.stack.send(this.#response(rq, 200, 'OK', headers));
      this.logger.debug({ sessionExpires: session['session-expires'] }, 'UPDATE answered');
      return;
    }
    this.localSdpVersion += 1;
    const { sdp: answer, direction } = reinviteAnswer(this.localSdp, offer, this.localSdpVersion);
    const rs = this.#response(rq, 200, 'OK', { ...headers, 'content-type': 'application/sdp' });
    rs.content = toWire(answer);
    this.#lastSentSdp = answer;
    this.ctx.stack.send(rs);
    this.logger.debug({ offer: redactSdp(offer), direction }, 'UPDATE offer answered');
    this.#applyRemoteSdp(offer);
  }

  /** INFO (RFC 6086 legacy use): a DTMF body becomes a `dtmf` event; other bodies get 415 with Accept. */
  #onInfo(rq: SipMessage): void {
    const verdict = parseInfoDtmf(headerText(rq, 'content-type'), bodyOf(rq));
    switch (verdict.kind) {
      case 'unsupported':
        this.ctx.respond(rq, 415, 'Unsupported Media Type', { headers: { accept: INFO_ACCEPT } });
        return;
      case 'malformed':
        this.ctx.respond(rq, 400, `Bad Request (${verdict.why})`);
        return;
      case 'empty':
        this.ctx.respond(rq, 200, 'OK');
        return;
      case 'digit':
        this.ctx.respond(rq, 200, 'OK');
        this.logger.info({ digit: verdict.digit.digit, durationMs: verdict.digit.durationMs }, 'DTMF by INFO');
        this.emitDialogEvent({ type: 'dtmf', ...verdict.digit });
    }
  }

  /**
   * Session timer of a re-INVITE or UPDATE we received (RFC 4028 §9, we are its UAS): the headers
   * of our 2xx, with the timer re-armed; or `undefined` when it was answered 422. Without
   * Session-Expires the refresh switches session timers off.
   */
  #answerSessionRefresh(rq: SipMessage): Record<string, string> | undefined {
    const decision = decideAsUas(
      { sessionExpires: sessionExpiresOf(rq), uacSupportsTimer: saysTimer(rq) },
      this.ctx.minSessionExpiresS,
    );
    if (decision.kind === 'too-small') {
      this.ctx.respond(rq, 422, 'Session Interval Too Small', { headers: { 'min-se': String(decision.minSe) } });
      return undefined;
    }
    if (decision.kind === 'none') {
      this.sessionTimer.stop();
      return {};
    }
    this.sessionTimer.start(armedFor(decision.interval, 'uas'));
    return {
      'session-expires': formatSessionExpires(decision.interval),
      ...(decision.requireTimer ? { require: 'timer' } : {}),
    };
  }

  /**
   * Our session refresh (RFC 4028 §7.4, §10): an UPDATE without SDP when the far end allows UPDATE,
   * else a re-INVITE with our current SDP (version unchanged: nothing changed). Its 2xx re-arms
   * the timer; 408, 481 or no answer end the session (§10).
   */
  async #refreshSession(): Promise<void> {
    const armed = this.sessionTimer.armed;
    if (!armed || this.dialogState !== 'confirmed') return;
    const headers = {
      supported: SUPPORTED,
      'session-expires': formatSessionExpires({ seconds: armed.seconds, refresher: 'uac' }),
      'min-se': String(this.ctx.minSessionExpiresS),
    };
    const method = this.peerAllowsUpdate || !this.localSdp ? 'UPDATE' : 'INVITE';
    this.logger.debug({ method, sessionExpires: armed.seconds }, 'refreshing the session');
    const rs = method === 'UPDATE' ? await this.sendInDialog('UPDATE', headers) : await this.#reinviteRefresh(headers);
    if (this.dialogState !== 'confirmed') return;
    const status = rs?.status ?? 408;
    if (status >= 200 && status < 300) {
      const interval = intervalFromUacResponse(sessionExpiresOf(rs as SipMessage));
      if (interval) this.sessionTimer.start(armedFor(interval, 'uac'));
      else this.sessionTimer.stop();
      return;
    }
    this.#endExpiredSession(`session refresh ${method} got ${rs ? status : 'no answer'}`);
  }

  /** A re-INVITE with our SDP as a session refresh, ACKed on its 2xx (RFC 3261 §13.2.2.4). */
  async #reinviteRefresh(headers: Record<string, string>): Promise<SipMessage | undefined> {
    const rq = this.buildInDialogRequest(
      'INVITE',
      {
        ...headers,
        contact: [{ uri: this.ctx.contactFor(this.transport), params: {} }],
        allow: ALLOW,
        'content-type': 'application/sdp',
      },
      // RFC 3264 §8: an unchanged session repeats the last SDP sent, o= version included.
      toWire(this.#lastSentSdp ?? this.localSdp ?? ''),
    );
    const rs = await requestFinal(this.ctx.stack, rq, this.ctx.requestTimeoutMs);
    if (rs && (rs.status ?? 0) >= 200 && (rs.status ?? 0) < 300) {
      this.ctx.stack.send({
        method: 'ACK',
        uri: rq.uri,
        headers: {
          via: [],
          to: rs.headers.to ? copyNameAddr(rs.headers.to) : rq.headers.to,
          from: rq.headers.from,
          'call-id': this.callId,
          cseq: { seq: rq.headers.cseq?.seq ?? 0, method: 'ACK' },
          route: this.routeSet.map(copyNameAddr),
          'max-forwards': 70,
          'user-agent': this.ctx.userAgent,
        },
      });
      const sdp = bodyOf(rs);
      if (sdp) this.#applyRemoteSdp(sdp);
    }
    return rs;
  }

  /** RFC 4028 §10: the session expired (or its refresh failed): BYE, `session-expired`, over. */
  #endExpiredSession(why: string): void {
    if (this.dialogState !== 'confirmed') return;
    this.logger.warn({ why }, 'session timer expired; ending the call');
    this.sessionTimer.stop();
    this.emitDialogEvent({ type: 'session-expired', reason: `Session timer expired (${why})` });
    this.terminate('session expired');
    this.ctx.background(this.sendBye({ reason: SESSION_EXPIRED_REASON }), 'BYE of an expired session', this.logger);
  }

  /**
   * Arm the session timer from the dialog-creating transaction: `interval` as negotiated there,
   * where we were `role` (RFC 4028 §7.2 for a UAC, §9 for a UAS).
   */
  protected armSessionTimer(
    interval: { seconds: number; refresher: 'uac' | 'uas' } | undefined,
    role: 'uac' | 'uas',
  ): void {
    if (interval) this.sessionTimer.start(armedFor(interval, role));
  }

  #response(rq: SipMessage, status: number, reason: string, headers: Record<string, unknown>): SipMessage {
    return responseTo(rq, status, reason, {
      headers: { 'record-route': rq.headers['record-route'], server: this.ctx.userAgent, ...headers },
    });
  }

  #applyRemoteSdp(sdp: string): void {
    const event = this.#remoteSdp.apply(sdp);
    if (event?.type === 'hold' || event?.type === 'resume')
      this.logger.info(
        { held: event.type === 'hold' },
        event.type === 'hold' ? 'far end put the call on hold' : 'far end resumed the call',
      );
    if (event) this.emitDialogEvent(event);
  }

  /** Route set from Record-Route: reversed for a UAC (§12.1.2), as received for a UAS (§12.1.1). */
  protected static routeSetOf(m: SipMessage, reverse: boolean): SipNameAddr[] {
    const rr = (m.headers['record-route'] ?? []).filter((r) => uriText(r.uri) !== '').map(copyNameAddr);
    return reverse ? rr.reverse() : rr;
  }
}
