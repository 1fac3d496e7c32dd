/**
 * A call the worker places (UAC) through drachtio-server: one `createUAC` per target in the order
 * {@link TargetPlan} gives (the same rule as the in-process adapter: failover on silence, 408 and
 * 5xx, 3xx Contacts followed, 503 Retry-After cooldowns; drachtio-srf's own `followRedirects`
 * stays off, it would follow the first Contact only and outside the failover list). drachtio-server owns the INVITE/CANCEL/ACK transactions, their
 * retransmissions and the digest retry (drachtio-srf's `auth` option); this class maps its
 * results onto {@link SipCallEvent}s and keeps the ring budget.
 *
 * Differences from the in-process adapter, by construction of drachtio: 100 Trying stays inside
 * drachtio-server, so no `trying` event is emitted and a target that only sends 100 counts as
 * silent for `failoverTimeoutMs`.
 */
import type Srf from 'drachtio-srf';
import type { Logger } from 'pino';
import { Emitter } from '../../emitter.ts';
import { redactSdp, sessionVersion } from '../../sdp/sdp.ts';
import { RemoteSdpTracker } from '../reinvite.ts';
import { intervalAfter422 } from '../session-timer.ts';
import type { OutboundSipCall, PlaceCallOptions, SipCallEvent, SipDialogEvent, SipDialogState } from '../sip-port.ts';
import { escapeUser, newCallId, reasonPhrase, SUPPORTED } from '../sip-wire.ts';
import {
  ALL_COOLING_DOWN,
  assertPlaceCallOptions,
  type FinalResponseInfo,
  type PlannedTarget,
  type RedirectContact,
  type TargetCooldowns,
  TargetPlan,
} from '../target-plan.ts';
import {
  attachDialog,
  cancelInvite,
  type DrachtioContext,
  destroyDialog,
  plainHeaders,
  quotedName,
} from './drachtio-dialog.ts';

/** drachtio-srf's SipError (status and reason of a final response). */
interface SrfSipError {
  readonly status?: number;
  readonly reason?: string;
  /** The final response itself. */
  readonly res?: Srf.SrfResponse;
}

/** The Contacts and Retry-After of a final response, for {@link TargetPlan.failed}. */
function finalInfo(res: Srf.SrfResponse | undefined): FinalResponseInfo {
  if (!res) return {};
  const contacts: RedirectContact[] = [];
  if (res.has('Contact')) {
    const parsed = res.getParsedHeader('Contact') as unknown as { uri?: string; params?: Record<string, string> }[];
    for (const c of Array.isArray(parsed) ? parsed : [])
      if (typeof c?.uri === 'string') contacts.push({ uri: c.uri, q: c.params?.q });
  }
  return { contacts, retryAfter: res.has('Retry-After') ? res.get('Retry-After') : undefined };
}

/** One INVITE towards one target. */
interface Attempt {
  readonly target: PlannedTarget;
  /** The INVITE as drachtio sent it (needed to CANCEL). */
  req: Srf.SrfRequest | undefined;
  responded: boolean;
  abandoned: boolean;
  silenceTimer: NodeJS.Timeout | undefined;
  /** The Session-Expires the INVITE asks for (RFC 4028 §4); raised once by a 422. */
  readonly sessionExpires: number;
  /** This INVITE is the retry after a 422 (RFC 4028 §7.4: once). */
  readonly intervalRetried: boolean;
}

/** {@link OutboundSipCall} on drachtio-srf. */
/** Why a TLS target fails on this adapter while SIP_TLS_VERIFY is on. */
export const TLS_UNVERIFIABLE =
  'TLS failed: drachtio-server cannot verify a TLS peer by name (no SNI, no server-name check); set SIP_TLS_VERIFY=false to send unverified';

/** `sips:` or `;transport=tls` (RFC 3261 §26.2, §19.1.1). */
export function isTlsTarget(uri: string): boolean {
  return /^sips:/i.test(uri) || /;transport=tls(?=[;?]|$)/i.test(uri.split('?')[0] ?? '');
}

export class DrachtioOutboundCall implements OutboundSipCall {
  readonly #ctx: DrachtioContext;
  readonly #logger: Logger;
  readonly #opts: PlaceCallOptions;
  readonly #events: Emitter<SipCallEvent>;
  readonly #headers: Record<string, string>;
  readonly #from: string;
  readonly #onEnd: (call: DrachtioOutboundCall) => void;
  readonly #remoteSdp = new RemoteSdpTracker();
  readonly #callId: string;
  readonly #plan: TargetPlan;
  #state: SipDialogState = 'calling';
  #attempt: Attempt | undefined;
  #dialog: Srf.Dialog | undefined;
  #answeredTarget: string | undefined;
  #ringTimer: NodeJS.Timeout | undefined;
  #finished = false;
  #earlySdp: string | undefined;
  #hangUp: Promise<void> | undefined;
  #endHeaders: Record<string, string> = {};
  /** Stops the dialog's session-expiry watch. */
  #detach: { stop(): void } | undefined;
  readonly #onAbort = (): void => {
    this.#ctx.background(this.hangUp(), 'hang-up on abort', this.#logger);
  };

  /** Validates options synchronously (`TypeError` on misuse) and sends the INVITE on the next tick. */
  constructor(
    ctx: DrachtioContext,
    logger: Logger,
    opts: PlaceCallOptions,
    onEnd: (c: DrachtioOutboundCall) => void,
    cooldowns: TargetCooldowns,
  ) {
    const isValid = (uri: string): boolean => /^sips?:[^\s@]*@?[^\s]+$/.test(uri) && !!ctx.parseUri(uri);
    assertPlaceCallOptions(opts, isValid);
    this.#plan = new TargetPlan(opts.targets, cooldowns, { isValid });
    this.#headers = plainHeaders(opts.headers);
    this.#ctx = ctx;
    this.#opts = opts;
    this.#onEnd = onEnd;
    const name = opts.from.displayName ? `${quotedName(opts.from.displayName)} ` : '';
    this.#from = `${name}<sip:${escapeUser(opts.from.user)}@${ctx.fromDomain}>`;
    // Our own Call-ID (drachtio-server keeps a Call-ID the app gives), one for all targets as in-process.
    this.#callId = newCallId();
    this.#logger = logger.child({ sipCallId: this.#callId, direction: 'outbound' });
    this.#events = new Emitter(this.#logger);
    queueMicrotask(() => this.#start());
  }

  get callId(): string {
    return this.#callId;
  }

  get state(): SipDialogState {
    return this.#state;
  }

  get answeredTarget(): string | undefined {
    return this.#answeredTarget;
  }

  on(listener: (event: SipCallEvent) => void): () => void {
    return this.#events.on(listener);
  }

  hangUp(headers?: Readonly<Record<string, string>>): Promise<void> {
    this.#hangUp ??= this.#doHangUp(headers);
    return this.#hangUp;
  }

  async #doHangUp(headers: Readonly<Record<string, string>> | undefined): Promise<void> {
    if (this.#state === 'terminated') return;
    this.#endHeaders = plainHeaders(headers);
    if (this.#state === 'confirmed' && this.#dialog) {
      this.#logger.info('hanging up (BYE)');
      const dialog = this.#dialog;
      this.#terminate('local hang-up');
      await this.#ctx.bounded(destroyDialog(dialog, this.#endHeaders), 'BYE', this.#logger);
      return;
    }
    this.#logger.info({ state: this.#state }, 'hanging up (CANCEL)');
    const att = this.#attempt;
    this.#finish({
      type: 'failed',
      status: 487,
      reason: 'Request Terminated (cancelled by caller)',
      ...(att ? { target: att.target.uri } : {}),
    });
    if (att) this.#abandon(att);
  }

  #start(): void {
    if (this.#finished) return;
    if (this.#opts.signal?.aborted) {
      this.#finish({ type: 'failed', status: 487, reason: 'Request Terminated (aborted before start)' });
      return;
    }
    this.#opts.signal?.addEventListener('abort', this.#onAbort, { once: true });
    const first = this.#plan.next();
    if (!first) {
      // RFC 3261 §21.5.4: every target asked us to wait (503 Retry-After); send nothing.
      this.#logger.info({ targets: this.#opts.targets.length }, 'every target is cooling down');
      this.#finish({ type: 'failed', ...ALL_COOLING_DOWN });
      return;
    }
    this.#ringTimer = setTimeout(() => this.#onRingTimeout(), this.#opts.answerTimeoutMs);
    this.#tryTarget(first);
  }

  /**
   * One INVITE to `target`. `retryAfter422` is the interval of the one retry a 422 allows (RFC 4028
   * §7.4): the same planned target again, not a failover step.
   */
  #tryTarget(target: PlannedTarget, retryAfter422?: number): void {
    const att: Attempt = {
      target,
      req: undefined,
      responded: false,
      abandoned: false,
      silenceTimer: undefined,
      sessionExpires: retryAfter422 ?? this.#ctx.sessionExpiresS,
      intervalRetried: retryAfter422 !== undefined,
    };
    this.#attempt = att;
    this.#state = 'calling';
    this.#earlySdp = undefined;
    if (this.#ctx.tlsVerify && isTlsTarget(target.uri)) {
      // Fail closed: drachtio-server 0.9.4 (sofia-sip) sends no SNI and cannot check the PBX's
      // certificate against its name (RFC 5922 §7.2), so a TLS target is never reached unverified.
      this.#logger.warn({ target: target.uri }, 'TLS target refused: drachtio-server cannot verify it by name');
      this.#onAttemptFailed(att, 503, TLS_UNVERIFIABLE);
      return;
    }
    att.silenceTimer = setTimeout(() => this.#onSilence(att), this.#opts.failoverTimeoutMs ?? 4000);
    this.#logger.info(
      {
        target: target.uri,
        ...(target.redirectedFrom ? { redirectedFrom: target.redirectedFrom } : {}),
        sdp: redactSdp(this.#opts.sdpOffer),
      },
      'sending INVITE',
    );
    // The callback form, so the dialog's listeners are on in the tick drachtio reports the 2xx.
    this.#ctx.srf.createUAC(
      target.uri,
      {
        localSdp: this.#opts.sdpOffer,
        headers: {
          From: this.#from,
          'User-Agent': this.#ctx.userAgent,
          'Content-Type': 'application/sdp',
          'Call-ID': this.#callId,
          // RFC 4028 §7.1: we do session timers; drachtio-server runs them once the 2xx names an interval.
          Supported: SUPPORTED,
          'Session-Expires': String(att.sessionExpires),
          ...(att.intervalRetried ? { 'Min-SE': String(att.sessionExpires) } : {}),
          ...this.#headers,
        },
        ...(target.auth ? { auth: { username: target.auth.username, password: target.auth.password } } : {}),
      },
      {
        cbRequest: (err: unknown, req?: Srf.SrfRequest) => {
          if (err || !req) return;
          att.req = req;
          // Given up before the INVITE left (hang-up, silence): cancel it now.
          if (att.abandoned) this.#cancel(att);
        },
        cbProvisional: (res: Srf.SrfResponse) => this.#onProvisional(att, res),
      },
      (err: unknown, dialog: Srf.Dialog) => {
        if (err || !dialog) this.#onFailure(att, err);
        else this.#onAnswered(att, dialog);
      },
    );
  }

  #onProvisional(att: Attempt, res: Srf.SrfResponse): void {
    if (att.abandoned || att !== this.#attempt || this.#finished) return;
    att.responded = true;
    clearTimeout(att.silenceTimer);
    this.#state = 'early';
    const sdp = res.body ? res.body : undefined;
    if (sdp) this.#earlySdp = sdp;
    const status = res.status === 183 || sdp !== undefined ? 183 : 180;
    this.#logger.info({ status: res.status, earlyMedia: sdp !== undefined }, 'ringing');
    this.#events.emit(sdp === undefined ? { type: 'ringing', status } : { type: 'ringing', status, sdp });
  }

  #onAnswered(att: Attempt, dialog: Srf.Dialog): void {
    if (att.abandoned || att !== this.#attempt || this.#finished) {
      // A 2xx racing our CANCEL or timeout: drachtio has ACKed it; end it with BYE (RFC 3261 §15).
      this.#logger.info('unwanted 2xx (race): BYE');
      this.#ctx.background(
        this.#ctx.bounded(destroyDialog(dialog), 'BYE of unwanted 2xx', this.#logger),
        'BYE',
        this.#logger,
      );
      return;
    }
    clearTimeout(att.silenceTimer);
    clearTimeout(this.#ringTimer);
    const sdp = dialog.remote.sdp || this.#earlySdp;
    this.#dialog = dialog;
    this.#state = 'confirmed';
    if (!sdp) {
      this.#logger.warn('2xx without SDP answer; ending call');
      this.#finish({ type: 'failed', status: 488, reason: 'No SDP answer in 2xx', target: att.target.uri });
      this.#ctx.background(this.#ctx.bounded(destroyDialog(dialog), 'BYE', this.#logger), 'BYE', this.#logger);
      return;
    }
    this.#answeredTarget = att.target.uri;
    this.#remoteSdp.start(sdp);
    this.#detach = attachDialog(this.#ctx, dialog, {
      logger: this.#logger,
      localSdp: this.#opts.sdpOffer,
      localVersion: sessionVersion(this.#opts.sdpOffer),
      remoteSdp: this.#remoteSdp,
      emit: (e: SipDialogEvent) => this.#events.emit(e),
      onRemoteBye: () => this.#terminate('remote BYE'),
    });
    this.#logger.info({ target: att.target.uri, sdp: redactSdp(sdp) }, 'answered');
    this.#events.emit({ type: 'answered', sdp, target: att.target.uri });
  }

  #onFailure(att: Attempt, err: unknown): void {
    clearTimeout(att.silenceTimer);
    if (att.abandoned || att !== this.#attempt || this.#finished) return;
    const e = err as SrfSipError;
    const status = typeof e?.status === 'number' ? e.status : 503;
    if (status === 422 && !att.intervalRetried) {
      // RFC 4028 §7.4: retry once with the UAS's Min-SE as both Session-Expires and Min-SE.
      const minSe = e.res?.has('Min-SE') ? e.res.get('Min-SE') : undefined;
      const seconds = intervalAfter422(minSe, att.sessionExpires);
      if (seconds !== undefined) {
        this.#logger.info({ sessionExpires: seconds }, '422 Session Interval Too Small: retrying with its Min-SE');
        this.#tryTarget(att.target, seconds);
        return;
      }
    }
    const reason =
      e?.reason || (err instanceof Error && typeof e?.status !== 'number' ? err.message : reasonPhrase(status));
    this.#onAttemptFailed(att, status, reason, finalInfo(e?.res));
  }

  #cancel(att: Attempt): void {
    const req = att.req;
    if (!req) return;
    try {
      cancelInvite(req, this.#endHeaders);
    } catch (err) {
      this.#logger.debug({ err }, 'CANCEL not sent (transaction already over)');
    }
  }

  #abandon(att: Attempt): void {
    clearTimeout(att.silenceTimer);
    if (att.abandoned) return;
    att.abandoned = true;
    this.#cancel(att);
  }

  #onSilence(att: Attempt): void {
    if (att.responded || att.abandoned || this.#finished) return;
    this.#logger.warn({ target: att.target.uri }, 'no response from target');
    this.#abandon(att);
    this.#onAttemptFailed(att, 408, 'No response from target');
  }

  #onRingTimeout(): void {
    if (this.#finished || this.#state === 'confirmed') return;
    const att = this.#attempt;
    this.#logger.info({ answerTimeoutMs: this.#opts.answerTimeoutMs }, 'ring timeout; cancelling');
    this.#finish({
      type: 'failed',
      status: 408,
      reason: 'Request Timeout (no answer)',
      ...(att ? { target: att.target.uri } : {}),
    });
    if (att) this.#abandon(att);
  }

  #onAttemptFailed(att: Attempt, status: number, reason: string, info: FinalResponseInfo = {}): void {
    if (this.#finished) return;
    const next = this.#plan.failed(att.target, status, info) ? this.#plan.next() : undefined;
    if (next) {
      this.#logger.info({ target: att.target.uri, status, reason, next: next.uri }, 'target failed; trying next');
      this.#tryTarget(next);
      return;
    }
    this.#logger.info({ target: att.target.uri, status, reason }, 'call failed');
    this.#finish({ type: 'failed', status, reason, target: att.target.uri });
  }

  #finish(event: Extract<SipCallEvent, { type: 'failed' }>): void {
    if (this.#finished) return;
    this.#events.emit(event);
    this.#terminate(event.reason);
  }

  #terminate(why: string): void {
    if (this.#state === 'terminated' && this.#finished) return;
    this.#finished = true;
    this.#state = 'terminated';
    this.#detach?.stop();
    clearTimeout(this.#ringTimer);
    if (this.#attempt) clearTimeout(this.#attempt.silenceTimer);
    this.#opts.signal?.removeEventListener('abort', this.#onAbort);
    this.#logger.debug({ why }, 'call terminated');
    this.#onEnd(this);
  }
}
