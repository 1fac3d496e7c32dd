/**
 * A call the worker places (we are the UAC, RFC 3261 §13.2): INVITE with SDP offer, serial
 * failover over the configured targets, digest retry, CANCEL, ACK for 2xx, BYE.
 */

import type { Logger } from 'pino';
import type { SipMessage, SipUri } from 'sip';
import sip from 'sip';
import { Emitter } from '../emitter.ts';
import { redactSdp, sessionVersion } from '../sdp/sdp.ts';
import type { SipStackContext } from './dialog.ts';
import { dialogRequestUri, requestFinal, SipDialog, sessionExpiresOf, signWithChallenge } from './dialog.ts';
import { intervalAfter422, intervalFromUacResponse } from './session-timer.ts';
import type {
  OutboundSipCall,
  PlaceCallOptions,
  SipCallEvent,
  SipDialogEvent,
  SipDialogState,
  SipTarget,
  SipTransport,
} from './sip-port.ts';
import {
  ALLOW,
  bodyOf,
  contactUri,
  copyNameAddr,
  escapeUser,
  extraHeaders,
  headerText,
  newCallId,
  newTag,
  quoteDisplayName,
  reasonPhrase,
  SUPPORTED,
  targetPort,
  toWire,
  transportOf,
} from './sip-wire.ts';
import {
  ALL_COOLING_DOWN,
  assertPlaceCallOptions,
  type FinalResponseInfo,
  type PlannedTarget,
  type RedirectContact,
  type TargetCooldowns,
  TargetPlan,
} from './target-plan.ts';

/** Default time a target may stay silent before failover. */
export const DEFAULT_FAILOVER_TIMEOUT_MS = 4000;

/** One INVITE transaction towards one target (re-created once for a digest retry). */
interface Attempt {
  readonly target: PlannedTarget;
  readonly uri: SipUri;
  readonly transport: SipTransport;
  invite: SipMessage;
  authTried: boolean;
  /** Any response seen (stops the silence timer). */
  responded: boolean;
  /** A provisional response seen: CANCEL is now allowed (RFC 3261 §9.1). */
  provisional: boolean;
  /** We no longer want this attempt: CANCEL on the first provisional, ACK+BYE any 2xx. */
  abandoned: boolean;
  cancel: Promise<void> | undefined;
  final: boolean;
  silenceTimer: NodeJS.Timeout | undefined;
  tryingEmitted: boolean;
  /** The Session-Expires the INVITE asks for (RFC 4028 §4); raised once by a 422. */
  sessionExpires: number;
  /** A 422 was answered with a larger interval already (RFC 4028 §7.4: once). */
  intervalRetried: boolean;
}

/**
 * Final responses after which the next target is tried (RFC 3261 §16.7 gives the model). 3xx is
 * {@link TargetPlan}'s business (redirects), which applies this rule to the rest.
 */
export function isFailoverStatus(status: number): boolean {
  return status === 408 || (status >= 500 && status < 600);
}

/** The Contacts and Retry-After of a final response, for {@link TargetPlan.failed}. */
function finalInfo(rs: SipMessage): FinalResponseInfo {
  const contacts: RedirectContact[] = [];
  const raw = rs.headers.contact;
  if (Array.isArray(raw))
    for (const c of raw) {
      const uri = typeof c.uri === 'string' ? c.uri : sip.stringifyUri(c.uri);
      contacts.push({ uri, q: c.params?.q ?? undefined });
    }
  const retryAfter = (rs.headers as Record<string, unknown>)['retry-after'];
  return { contacts, retryAfter: retryAfter === undefined ? undefined : String(retryAfter) };
}

/** The To URI for a Request-URI: same user/host/port, without URI parameters other than `user`. */
function toUriOf(uri: SipUri): string {
  const userParam = uri.params.user ? `;user=${uri.params.user}` : '';
  return `${uri.schema ?? 'sip'}:${uri.user ? `${uri.user}@` : ''}${uri.host}${uri.port ? `:${uri.port}` : ''}${userParam}`;
}

/** Implementation of {@link OutboundSipCall} on the `sip` package. */
export class OutboundCall extends SipDialog implements OutboundSipCall {
  readonly #events: Emitter<SipCallEvent>;
  readonly #opts: PlaceCallOptions;
  readonly #plan: TargetPlan;
  readonly #extra: Record<string, string>;
  #attempt: Attempt | undefined;
  #ringTimer: NodeJS.Timeout | undefined;
  #finished = false;
  #earlySdp: string | undefined;
  #ack: SipMessage | undefined;
  #answeredTarget: string | undefined;
  #hangUp: Promise<void> | undefined;
  /** Headers of the caller's hang-up (a Reason), for the CANCEL it may send later (RFC 3326). */
  #endHeaders: Record<string, string> = {};
  /** To tags of stray 2xx we already ACKed and BYEd (forks, CANCEL races). */
  readonly #strayTags = new Set<string>();
  readonly #onAbort = (): void => {
    this.ctx.background(this.hangUp(), 'hang-up on abort', this.logger);
  };
  readonly #onEnd: (call: OutboundCall) => void;

  /** Validates options synchronously (`TypeError` on misuse) and sends the INVITE on the next tick. */
  constructor(
    ctx: SipStackContext,
    logger: Logger,
    opts: PlaceCallOptions,
    onEnd: (call: OutboundCall) => void,
    cooldowns: TargetCooldowns,
  ) {
    const isValid = (uri: string): boolean => sip.parseUri(uri) !== undefined;
    assertPlaceCallOptions(opts, isValid);
    const extra = extraHeaders(opts.headers);
    const callId = newCallId();
    const localTag = newTag();
    const from = {
      ...(opts.from.displayName ? { name: quoteDisplayName(opts.from.displayName) } : {}),
      uri: `sip:${escapeUser(opts.from.user)}@${ctx.fromDomain}`,
      params: { tag: localTag },
    };
    const log = logger.child({ sipCallId: callId, direction: 'outbound' });
    super(ctx, log, callId, localTag, from, 'udp', 1 + Math.floor(Math.random() * 10000));
    this.#events = new Emitter(log);
    this.#opts = opts;
    this.#plan = new TargetPlan(opts.targets, cooldowns, { isValid });
    this.#extra = extra;
    this.#onEnd = onEnd;
    this.localSdp = opts.sdpOffer;
    this.localSdpVersion = sessionVersion(opts.sdpOffer);
    queueMicrotask(() => this.#start());
  }

  get state(): SipDialogState {
    return this.dialogState;
  }

  get answeredTarget(): string | undefined {
    return this.#answeredTarget;
  }

  on(listener: (event: SipCallEvent) => void): () => void {
    return this.#events.on(listener);
  }

  protected emitDialogEvent(e: SipDialogEvent): void {
    this.#events.emit(e);
  }

  hangUp(headers?: Readonly<Record<string, string>>): Promise<void> {
    this.#hangUp ??= this.#doHangUp(headers);
    return this.#hangUp;
  }

  async #doHangUp(headers: Readonly<Record<string, string>> | undefined): Promise<void> {
    if (this.dialogState === 'terminated') return;
    this.#endHeaders = extraHeaders(headers);
    if (this.dialogState === 'confirmed') {
      this.logger.info('hanging up (BYE)');
      this.terminate('local hang-up');
      await this.sendBye(this.#endHeaders);
      return;
    }
    this.logger.info({ state: this.dialogState }, 'hanging up (CANCEL)');
    const att = this.#attempt;
    this.#finish({
      type: 'failed',
      status: 487,
      reason: 'Request Terminated (cancelled by caller)',
      ...(att ? { target: att.target.uri } : {}),
    });
    if (att) await this.#abandon(att);
  }

  #start(): void {
    if (this.#finished) return; // hung up before the first tick
    if (this.#opts.signal?.aborted) {
      this.#finish({ type: 'failed', status: 487, reason: 'Request Terminated (aborted before start)' });
      return;
    }
    this.#opts.signal?.addEventListener('abort', this.#onAbort, { once: true });
    const first = this.#plan.next();
    if (!first) {
      // RFC 3261 §21.5.4: every target asked us to wait (503 Retry-After); send nothing.
      this.logger.info({ targets: this.#opts.targets.length }, 'every target is cooling down');
      this.#finish({ type: 'failed', ...ALL_COOLING_DOWN });
      return;
    }
    this.#ringTimer = setTimeout(() => this.#onRingTimeout(), this.#opts.answerTimeoutMs);
    this.#tryTarget(first);
  }

  #tryTarget(target: PlannedTarget): void {
    const uri = sip.parseUri(target.uri);
    if (!uri) return; // validated by the constructor and the plan
    const transport = transportOf(uri);
    const att: Attempt = {
      target,
      uri,
      transport,
      invite: this.#buildInvite(target, uri, transport, this.ctx.sessionExpiresS),
      authTried: false,
      responded: false,
      provisional: false,
      abandoned: false,
      cancel: undefined,
      final: false,
      silenceTimer: undefined,
      tryingEmitted: false,
      sessionExpires: this.ctx.sessionExpiresS,
      intervalRetried: false,
    };
    this.#attempt = att;
    this.dialogState = 'calling';
    this.#earlySdp = undefined;
    this.transport = transport;
    this.credentials = target.auth;
    const ownHost = uri.host === this.ctx.localHost || uri.host === this.ctx.stack.hostname();
    if (ownHost && targetPort(uri, transport) === this.ctx.ownPort(transport)) {
      // Our own address and port: the INVITE would come back to us. (Our host at another port is a
      // PBX beside the worker; the adapter routes to it, see `routeToOwnHost` in sip-adapter.ts.)
      this.logger.warn({ target: target.uri }, 'target is this SIP stack’s own address');
      this.#onAttemptFailed(att, 482, 'Loop Detected (target is this SIP stack)');
      return;
    }
    if (!this.ctx.transports.has(transport)) {
      this.logger.warn({ target: target.uri, transport }, 'target transport not enabled on this stack');
      this.#onAttemptFailed(att, 503, `transport ${transport} not enabled`);
      return;
    }
    this.logger.info(
      {
        target: target.uri,
        ...(target.redirectedFrom ? { redirectedFrom: target.redirectedFrom } : {}),
        sdp: redactSdp(this.#opts.sdpOffer),
      },
      'sending INVITE',
    );
    this.#send(att);
  }

  /**
   * An INVITE to `target` with a new CSeq, asking for session timers (RFC 4028 §7.1: Supported:
   * timer and a Session-Expires without refresher, so the UAS may choose); `minSe` after a 422.
   */
  #buildInvite(
    target: SipTarget,
    uri: SipUri,
    transport: SipTransport,
    sessionExpires: number,
    minSe?: number,
  ): SipMessage {
    this.localCSeq += 1;
    return {
      method: 'INVITE',
      uri: target.uri,
      headers: {
        via: [],
        to: { uri: toUriOf(uri), params: {} },
        from: copyNameAddr(this.localParty),
        'call-id': this.callId,
        cseq: { seq: this.localCSeq, method: 'INVITE' },
        contact: [{ uri: this.ctx.contactFor(transport), params: {} }],
        'max-forwards': 70,
        'user-agent': this.ctx.userAgent,
        allow: ALLOW,
        supported: SUPPORTED,
        'session-expires': String(sessionExpires),
        ...(minSe === undefined ? {} : { 'min-se': String(minSe) }),
        'content-type': 'application/sdp',
        ...this.#extra,
      },
      content: toWire(this.#opts.sdpOffer),
    };
  }

  #send(att: Attempt): void {
    clearTimeout(att.silenceTimer);
    att.silenceTimer = setTimeout(() => this.#onSilence(att), this.#opts.failoverTimeoutMs ?? 4000);
    const invite = att.invite;
    this.ctx.stack.send(invite, (rs) => {
      try {
        this.#onResponse(att, invite, rs);
      } catch (err) {
        this.logger.error({ err, status: rs.status }, 'failed to handle INVITE response');
      }
    });
  }

  #onResponse(att: Attempt, invite: SipMessage, rs: SipMessage): void {
    if (invite !== att.invite) return; // response to the INVITE replaced by a digest retry
    const status = rs.status ?? 0;
    if (status >= 200 && status < 300) {
      this.#onSuccess(att, rs);
      return;
    }
    if (att.abandoned) {
      if (status < 200 && !att.cancel) att.cancel = this.#sendCancel(att);
      return;
    }
    att.responded = true;
    clearTimeout(att.silenceTimer);
    if (status < 200) {
      att.provisional = true;
      this.#onProvisional(att, rs, status);
      return;
    }
    att.final = true;
    if ((status === 401 || status === 407) && att.target.auth && !att.authTried) {
      att.authTried = true;
      // RFC 3261 §22.2: same Call-ID, From tag; new CSeq and branch; credentials added.
      const retry = this.#buildInvite(
        att.target,
        att.uri,
        att.transport,
        att.sessionExpires,
        att.intervalRetried ? att.sessionExpires : undefined,
      );
      if (signWithChallenge(retry, rs, att.target.auth)) {
        this.logger.info({ status }, 'answering digest challenge');
        att.invite = retry;
        att.responded = false;
        att.provisional = false;
        att.final = false;
        this.#send(att);
        return;
      }
      this.logger.warn({ status }, 'digest challenge not answerable (unsupported algorithm or no nonce)');
    }
    if (status === 422 && !att.intervalRetried) {
      // RFC 4028 §7.4: retry once with the UAS's Min-SE as both Session-Expires and Min-SE. The
      // same planned target again (a new INVITE in this attempt), not a failover step.
      const seconds = intervalAfter422(headerText(rs, 'min-se'), att.sessionExpires);
      if (seconds !== undefined) {
        this.logger.info({ sessionExpires: seconds }, '422 Session Interval Too Small: retrying with its Min-SE');
        att.intervalRetried = true;
        att.sessionExpires = seconds;
        att.invite = this.#buildInvite(att.target, att.uri, att.transport, seconds, seconds);
        att.responded = false;
        att.provisional = false;
        att.final = false;
        this.#send(att);
        return;
      }
    }
    this.#onAttemptFailed(att, status, rs.reason || reasonPhrase(status), finalInfo(rs));
  }

  #onProvisional(att: Attempt, rs: SipMessage, status: number): void {
    if (status === 100) {
      if (!att.tryingEmitted) {
        att.tryingEmitted = true;
        this.#events.emit({ type: 'trying', target: att.target.uri });
      }
      return;
    }
    this.dialogState = 'early';
    const sdp = bodyOf(rs);
    if (sdp) this.#earlySdp = sdp;
    const reported = status === 183 || sdp !== undefined ? 183 : 180;
    this.logger.info({ status, earlyMedia: sdp !== undefined }, 'ringing');
    this.#events.emit(
      sdp === undefined ? { type: 'ringing', status: reported } : { type: 'ringing', status: reported, sdp },
    );
  }

  #onSuccess(att: Attempt, rs: SipMessage): void {
    const toTag = rs.headers.to?.params.tag ?? '';
    if (this.#ack) {
      if (toTag === this.remoteTag) {
        // Retransmitted 2xx: our ACK was lost (RFC 3261 §13.2.2.4) → send the same ACK again.
        this.ctx.stack.send(this.#ack);
        return;
      }
    }
    if (this.#ack || att.abandoned || this.#finished || att !== this.#attempt) {
      // A second dialog (forking) or a 2xx racing our CANCEL/timeout: ACK it, then BYE it.
      this.#ackAndBye(att, rs, toTag);
      return;
    }
    clearTimeout(att.silenceTimer);
    att.final = true;
    const sdp = bodyOf(rs) ?? this.#earlySdp;
    this.remoteTag = toTag;
    this.remoteParty = rs.headers.to ? copyNameAddr(rs.headers.to) : undefined;
    this.remoteTarget = contactUri(rs) ?? att.target.uri;
    this.routeSet = SipDialog.routeSetOf(rs, true);
    this.#ack = this.#buildAck(att, rs, this.remoteTarget, this.routeSet);
    this.ctx.stack.send(this.#ack);
    if (sdp === undefined) {
      this.logger.warn('2xx without SDP answer; ending call');
      this.dialogState = 'confirmed';
      this.#finish({ type: 'failed', status: 488, reason: 'No SDP answer in 2xx', target: att.target.uri });
      this.ctx.background(this.sendBye(), 'BYE after 2xx without SDP', this.logger);
      return;
    }
    this.dialogState = 'confirmed';
    this.#answeredTarget = att.target.uri;
    clearTimeout(this.#ringTimer);
    this.ctx.registerDialog(this.callId, this.localTag, this);
    this.setInitialRemoteSdp(sdp);
    this.peerAllowsUpdate = /\bUPDATE\b/i.test(headerText(rs, 'allow') ?? '');
    this.armSessionTimer(intervalFromUacResponse(sessionExpiresOf(rs)), 'uac');
    this.logger.info({ target: att.target.uri, sdp: redactSdp(sdp) }, 'answered');
    this.#events.emit({ type: 'answered', sdp, target: att.target.uri });
  }

  /**
   * ACK for a 2xx (RFC 3261 §13.2.2.4): its own transaction, sent to the remote target through the
   * route set, with the INVITE's CSeq number and credentials.
   */
  #buildAck(
    att: Attempt,
    rs: SipMessage,
    remoteTarget: string,
    routeSet: ReturnType<typeof SipDialog.routeSetOf>,
  ): SipMessage {
    const inv = att.invite;
    const headers: SipMessage['headers'] = {
      via: [],
      to: rs.headers.to ? copyNameAddr(rs.headers.to) : undefined,
      from: inv.headers.from,
      'call-id': this.callId,
      cseq: { seq: inv.headers.cseq?.seq ?? 0, method: 'ACK' },
      route: routeSet.map(copyNameAddr),
      'max-forwards': 70,
      'user-agent': this.ctx.userAgent,
    };
    if (inv.headers.authorization) headers.authorization = inv.headers.authorization;
    if (inv.headers['proxy-authorization']) headers['proxy-authorization'] = inv.headers['proxy-authorization'];
    return { method: 'ACK', uri: dialogRequestUri(remoteTarget, routeSet, att.transport), headers };
  }

  #ackAndBye(att: Attempt, rs: SipMessage, toTag: string): void {
    if (this.#strayTags.has(toTag)) {
      return;
    }
    this.#strayTags.add(toTag);
    const target = contactUri(rs) ?? att.target.uri;
    const routeSet = SipDialog.routeSetOf(rs, true);
    this.ctx.stack.send(this.#buildAck(att, rs, target, routeSet));
    this.logger.info({ toTag }, 'unwanted 2xx (race or fork): ACK then BYE');
    this.localCSeq += 1;
    const bye: SipMessage = {
      method: 'BYE',
      uri: dialogRequestUri(target, routeSet, att.transport),
      headers: {
        via: [],
        to: rs.headers.to ? copyNameAddr(rs.headers.to) : undefined,
        from: att.invite.headers.from,
        'call-id': this.callId,
        cseq: { seq: this.localCSeq, method: 'BYE' },
        route: routeSet.map(copyNameAddr),
        'max-forwards': 70,
        'user-agent': this.ctx.userAgent,
      },
    };
    this.ctx.background(
      requestFinal(this.ctx.stack, bye, this.ctx.requestTimeoutMs),
      'BYE of unwanted 2xx',
      this.logger,
    );
  }

  /** CANCEL (RFC 3261 §9.1): same Request-URI, Call-ID, From, To, CSeq number and top Via as the INVITE. */
  async #sendCancel(att: Attempt): Promise<void> {
    const inv = att.invite;
    const via0 = inv.headers.via?.[0];
    const cancel: SipMessage = {
      method: 'CANCEL',
      uri: inv.uri,
      headers: {
        via: via0 ? [{ ...via0, params: { ...via0.params } }] : [],
        to: inv.headers.to,
        from: inv.headers.from,
        'call-id': this.callId,
        cseq: { seq: inv.headers.cseq?.seq ?? 0, method: 'CANCEL' },
        route: inv.headers.route,
        'max-forwards': 70,
        'user-agent': this.ctx.userAgent,
        ...this.#endHeaders,
      },
    };
    this.logger.info({ target: att.target.uri }, 'sending CANCEL');
    const rs = await requestFinal(this.ctx.stack, cancel, this.ctx.requestTimeoutMs);
    this.logger.debug({ status: rs?.status ?? 'timeout' }, 'CANCEL done');
  }

  /** Give up on an attempt: CANCEL now if a provisional came, else when one comes (RFC 3261 §9.1). */
  #abandon(att: Attempt): Promise<void> {
    clearTimeout(att.silenceTimer);
    if (att.abandoned || att.final) return att.cancel ?? Promise.resolve();
    att.abandoned = true;
    if (att.provisional) att.cancel = this.#sendCancel(att);
    return att.cancel ?? Promise.resolve();
  }

  #onSilence(att: Attempt): void {
    if (att.responded || att.abandoned || this.#finished) return;
    this.logger.warn({ target: att.target.uri }, 'no response from target');
    this.ctx.background(this.#abandon(att), 'abandon silent target', this.logger);
    this.#onAttemptFailed(att, 408, 'No response from target');
  }

  #onRingTimeout(): void {
    if (this.#finished || this.dialogState === 'confirmed') return;
    const att = this.#attempt;
    this.logger.info({ answerTimeoutMs: this.#opts.answerTimeoutMs }, 'ring timeout; cancelling');
    this.#finish({
      type: 'failed',
      status: 408,
      reason: 'Request Timeout (no answer)',
      ...(att ? { target: att.target.uri } : {}),
    });
    if (att) this.ctx.background(this.#abandon(att), 'cancel on ring timeout', this.logger);
  }

  #onAttemptFailed(att: Attempt, status: number, reason: string, info: FinalResponseInfo = {}): void {
    if (this.#finished) return;
    const next = this.#plan.failed(att.target, status, info) ? this.#plan.next() : undefined;
    if (next) {
      this.logger.info({ target: att.target.uri, status, reason, next: next.uri }, 'target failed; trying next');
      this.#tryTarget(next);
      return;
    }
    this.logger.info({ target: att.target.uri, status, reason }, 'call failed');
    this.#finish({ type: 'failed', status, reason, target: att.target.uri });
  }

  /** Emit the terminal `failed` event once and release timers/listeners. */
  #finish(event: Extract<SipCallEvent, { type: 'failed' }>): void {
    if (this.#finished) return;
    this.#events.emit(event);
    this.terminate(event.reason);
  }

  protected terminate(why: string): void {
    if (this.#finished && this.dialogState === 'terminated') return;
    this.#finished = true;
    this.dialogState = 'terminated';
    clearTimeout(this.#ringTimer);
    if (this.#attempt) clearTimeout(this.#attempt.silenceTimer);
    this.stopRetransmissions();
    this.#opts.signal?.removeEventListener('abort', this.#onAbort);
    this.ctx.unregisterDialog(this.callId, this.localTag);
    this.logger.debug({ why }, 'call terminated');
    this.#onEnd(this);
  }
}
