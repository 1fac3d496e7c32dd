/**
 * The dialog layer shared by calls we place (UAC) and calls placed to us (UAS): in-dialog request
 * construction (RFC 3261 §12.2.1), handling of in-dialog requests (§12.2.2: BYE, re-INVITE hold
 * and resume, OPTIONS, unsupported methods), 2xx retransmission until ACK (§13.3.1.4) and digest
 * retries of our own in-dialog requests. Transactions and their timers stay in the `sip` package.
 */

import type { Logger } from 'pino';
import type { SipMessage, SipNameAddr, SipRemote, SipStack } from 'sip';
import digest from 'sip/digest.js';
import { redactSdp } from '../sdp/sdp.ts';
import { RemoteSdpTracker, reinviteAnswer } from './reinvite.ts';
import type { SipCredentials, SipDialogEvent, SipDialogState, SipTransport } from './sip-port.ts';
import {
  ALLOW,
  bodyOf,
  contactUri,
  copyNameAddr,
  headerText,
  KNOWN_METHODS,
  responseTo,
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
  readonly #remoteSdp = new RemoteSdpTracker();
  /** 2xx responses we sent, waiting for ACK, by CSeq number. */
  readonly #awaitingAck = new Map<number, { rt: TwoXxRetransmitter; offerless: boolean }>();
  protected dialogState: SipDialogState = 'calling';

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
  }

  /** Mid-dialog events go to the subclass's listeners. */
  protected abstract emitDialogEvent(e: SipDialogEvent): void;

  /** The dialog is over (BYE either way, ACK timeout): release everything. */
  protected abstract terminate(why: string): void;

  /** The remote SDP the dialog started with (the answer, or the offer for a UAS). */
  protected setInitialRemoteSdp(sdp: string | undefined): void {
    this.#remoteSdp.start(sdp);
  }

  /** Stop any pending 2xx retransmission (on termination). */
  protected stopRetransmissions(): void {
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

  #onReinvite(rq: SipMessage, remote: SipRemote): void {
    if (this.dialogState !== 'confirmed' || this.#awaitingAck.size > 0) {
      // RFC 3261 §14.2: an INVITE while a previous one is still in progress → 500 with Retry-After.
      this.ctx.respond(rq, 500, 'Server Internal Error', {
        headers: { 'retry-after': String(1 + Math.floor(Math.random() * 10)) },
      });
      return;
    }
    const type = headerText(rq, 'content-type');
    const offer = bodyOf(rq);
    if (offer !== undefined && type !== undefined && !/^application\/sdp\b/i.test(type)) {
      this.ctx.respond(rq, 415, 'Unsupported Media Type', { headers: { accept: 'application/sdp' } });
      return;
    }
    // Target refresh (RFC 3261 §12.2.2).
    const contact = contactUri(rq);
    if (contact) this.remoteTarget = contact;
    if (!this.localSdp) {
      this.ctx.respond(rq, 488, 'Not Acceptable Here');
      return;
    }
    this.localSdpVersion += 1;
    const { sdp: answer, direction } = reinviteAnswer(this.localSdp, offer, this.localSdpVersion);
    const rs = this.#response(rq, 200, 'OK', {
      contact: [{ uri: this.ctx.contactFor(this.transport), params: {} }],
      allow: ALLOW,
      'content-type': 'application/sdp',
    });
    rs.content = toWire(answer);
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
