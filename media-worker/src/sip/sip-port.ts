/**
 * The SIP signalling port of the media worker: the only SIP surface the worker's call logic
 * sees. It speaks in RFC 3261 roles — the worker is the UAC of calls it places to the business's
 * PBX and the UAS of calls the PBX places to it — and hides transactions, retransmissions,
 * digest authentication and dialog bookkeeping. The default adapter is `sip-adapter.ts`; no type
 * of the underlying `sip` package leaks through this file.
 */

/** A SIP transport as it appears in a URI's `transport` parameter. */
export type SipTransport = 'udp' | 'tcp' | 'tls';

/** Dialog state of a call leg (RFC 3261 §12): before any provisional, early, confirmed, over. */
export type SipDialogState = 'calling' | 'early' | 'confirmed' | 'terminated';

/** Digest credentials (RFC 2617 / RFC 3261 §22) for one target. Never logged. */
export interface SipCredentials {
  readonly username: string;
  readonly password: string;
}

/** One place to send the INVITE to. */
export interface SipTarget {
  /** Request-URI, e.g. `sip:agent@127.0.0.2:5080;transport=tcp`. Must carry an IP or a resolvable host. */
  readonly uri: string;
  /** Answer a 401/407 challenge once with these credentials. */
  readonly auth?: SipCredentials;
}

/** What {@link SipPort.placeCall} needs. */
export interface PlaceCallOptions {
  /**
   * Ordered failover list. The next target is tried when the current one gives no response at
   * all within `failoverTimeoutMs`, answers 408 or any 5xx (RFC 3261 §16.7 style serial forking),
   * or cannot be reached. A 300/301/302 puts its Contacts (highest q first) before the remaining
   * targets (RFC 3261 §8.1.3.4; 5 redirects per call at most, no URI tried twice; 305/380 are not
   * followed and move on); a 503 with `Retry-After` keeps its target from every call of this port
   * for that long, and a call whose every target cools down fails 503 at once. See `target-plan.ts`.
   */
  readonly targets: readonly SipTarget[];
  /** The caller's identity, put in the From header (`"displayName" <sip:user@fromDomain>`). */
  readonly from: { readonly user: string; readonly displayName?: string };
  /** Extra headers such as `X-WA-Call-Id`. Names must be tokens; CR/LF and controls in values are replaced. */
  readonly headers?: Readonly<Record<string, string>>;
  /** SDP offer sent in the INVITE (RFC 3264). */
  readonly sdpOffer: string;
  /** Total ring budget across all targets; when it runs out the call is CANCELled and fails with 408. */
  readonly answerTimeoutMs: number;
  /** How long a target may stay silent (not even 100 Trying) before the next one is tried. @default 4000 */
  readonly failoverTimeoutMs?: number;
  /** Aborting is the same as {@link OutboundSipCall.hangUp}. */
  readonly signal?: AbortSignal;
}

/** Mid-dialog events shared by outbound and inbound calls. */
export type SipDialogEvent =
  /** BYE from the far end; we have answered it 200. `reason` is its Reason header, if any (RFC 3326). */
  | { readonly type: 'remote-hangup'; readonly reason?: string }
  /**
   * re-INVITE putting us on hold (a=sendonly / a=inactive / c=0.0.0.0, RFC 3264 §8.4). We have
   * answered 200 with our SDP, direction mirrored. `sdp` is the far end's new offer.
   */
  | { readonly type: 'hold'; readonly sdp: string }
  /** re-INVITE taking us off hold; answered like `hold`. */
  | { readonly type: 'resume'; readonly sdp: string }
  /** re-INVITE that changed the far end's SDP without changing hold state (new port, codec…). */
  | { readonly type: 'media-update'; readonly sdp: string }
  /**
   * A DTMF digit the far end sent in an INFO (`application/dtmf-relay` or `application/dtmf`); we
   * have answered 200. Digits sent as RFC 4733 events travel in the media, not here.
   */
  | { readonly type: 'dtmf'; readonly digit: string; readonly durationMs: number }
  /**
   * The session timer ran out (RFC 4028 §10): the far end was to refresh and did not, or our
   * refresh got 408/481 or no answer. We have sent BYE; the call is over.
   */
  | { readonly type: 'session-expired'; readonly reason: string };

/** Events of a call we place. */
export type SipCallEvent =
  /** The current target answered 100 Trying. */
  | { readonly type: 'trying'; readonly target: string }
  /** 18x. 183 (or any 18x carrying SDP) means early media; `sdp` is the early answer. */
  | { readonly type: 'ringing'; readonly status: 180 | 183; readonly sdp?: string }
  /** 2xx received and ACKed. `sdp` is the SDP answer. */
  | { readonly type: 'answered'; readonly sdp: string; readonly target: string }
  /**
   * The call ended before being answered: a 3xx–6xx final response from the last target tried,
   * 408 when the ring budget ran out or nobody responded, 487 when we cancelled it.
   */
  | { readonly type: 'failed'; readonly status: number; readonly reason: string; readonly target?: string }
  | SipDialogEvent;

/** A call placed by the worker (we are the UAC). */
export interface OutboundSipCall {
  /** The Call-ID header of the INVITE. */
  readonly callId: string;
  readonly state: SipDialogState;
  /** URI of the target that answered, once answered. */
  readonly answeredTarget: string | undefined;
  /** Subscribe; returns an unsubscribe function. Listener errors are logged, never thrown back. */
  on(listener: (event: SipCallEvent) => void): () => void;
  /**
   * End the call: CANCEL while calling/early (sent once a provisional has arrived, RFC 3261 §9.1),
   * BYE when confirmed. `headers` go on the CANCEL or BYE (e.g. `Reason`, RFC 3326: why the call
   * ended). Idempotent (the first call's headers count); resolves when the far end responded or the
   * request timed out.
   */
  hangUp(headers?: Readonly<Record<string, string>>): Promise<void>;
}

/** Where an inbound request came from. */
export interface SipSource {
  readonly address: string;
  readonly port: number;
  readonly transport: SipTransport;
}

/** A name-addr from a From/To header. */
export interface SipParty {
  readonly uri: string;
  readonly user: string | undefined;
  readonly displayName: string | undefined;
}

/** Events of a call placed to us. */
export type InboundSipCallEvent =
  /**
   * CANCEL arrived before we sent a final response; we have answered 200 and 487. `reason` is its
   * Reason header, if any (RFC 3326).
   */
  | { readonly type: 'cancelled'; readonly reason?: string }
  /** We answered 200 but no ACK came within 64·T1 (RFC 3261 §13.3.1.4); we have sent BYE. */
  | { readonly type: 'failed'; readonly status: 408; readonly reason: string }
  | SipDialogEvent;

/** An INVITE received by the worker (we are the UAS). */
export interface InboundSipCall {
  readonly callId: string;
  readonly state: SipDialogState;
  /** Request-URI of the INVITE. */
  readonly requestUri: string;
  readonly from: SipParty;
  readonly to: SipParty;
  /**
   * Headers of the INVITE by lower-case name, as text: generic headers (X-…, User-Agent, Reason…),
   * From/To (URI), CSeq, Max-Forwards. Via, Contact, Route and Record-Route are kept by the SIP
   * layer; Authorization and Proxy-Authorization are never exposed.
   */
  readonly headers: Readonly<Record<string, string>>;
  readonly source: SipSource;
  /** SDP offer of the INVITE, if it had one. */
  readonly sdpOffer: string | undefined;
  /** Send 180 Ringing, or 183 Session Progress when `sdp` (early media) is given. */
  ringing(sdp?: string): void;
  /** Send 200 OK with `sdp`; resolves when the ACK arrives, rejects with {@link SipError} 408 if it never does. */
  answer(sdp: string): Promise<void>;
  /** Send a final 3xx–6xx response, e.g. `reject(403, 'Forbidden', { Reason: 'Q.850;cause=21' })`. */
  reject(status: number, reason?: string, headers?: Readonly<Record<string, string>>): void;
  /**
   * BYE when confirmed (after ACK, RFC 3261 §15), 480 when not yet answered; `headers` (e.g.
   * `Reason`, RFC 3326) go on the BYE or the 480. Idempotent.
   */
  hangUp(headers?: Readonly<Record<string, string>>): Promise<void>;
  on(listener: (event: InboundSipCallEvent) => void): () => void;
}

/** Handler for new INVITEs. It must call `ringing`/`answer`/`reject` (possibly later). */
export type InboundInviteHandler = (call: InboundSipCall) => void | Promise<void>;

/** The SIP signalling port. */
export interface SipPort {
  /** Place a call (UAC). Returns at once; the INVITE goes out on the next tick, so subscribe synchronously. */
  placeCall(options: PlaceCallOptions): OutboundSipCall;
  /** Accept INVITEs (UAS). Without a handler INVITEs are answered 480. OPTIONS is always answered 200. */
  onInvite(handler: InboundInviteHandler): void;
  /** Contact URI of this stack (without transport parameter), e.g. `sip:wa-sip-bridge@127.0.0.1:5060`. */
  readonly localContact: string;
  /**
   * Send one out-of-dialog OPTIONS to `uri` (RFC 3261 §11: no authentication, Max-Forwards 70)
   * and resolve with its final response: any final response — 200, but also 404, 405, 403 or a
   * digest challenge — means the far end is reachable. Rejects with {@link SipProbeError} when no
   * final response comes within `timeoutMs` or the request cannot be sent.
   */
  probe(uri: string, timeoutMs: number): Promise<SipProbeResult>;
  /** Calls not yet terminated. */
  readonly activeCalls: number;
  /** Hang up every call (bounded wait), then close sockets. Idempotent. */
  close(): Promise<void>;
}

/** What {@link SipPort.probe} found: the far end's final response and how long it took. */
export interface SipProbeResult {
  readonly status: number;
  readonly reason: string;
  /** From sending the OPTIONS to its final response, on the port's clock. */
  readonly rttMs: number;
}

/** A probe got no answer: `timeout` (nothing in time) or `transport` (could not send, or no route). */
export class SipProbeError extends Error {
  override readonly name = 'SipProbeError';
  readonly kind: 'timeout' | 'transport';
  /** The probed URI. */
  readonly target: string;

  constructor(kind: 'timeout' | 'transport', target: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
    this.target = target;
  }
}

/** A SIP-level failure: a final response, a timeout (408) or a cancellation (487). */
export class SipError extends Error {
  override readonly name = 'SipError';
  /** SIP status code (3xx–6xx). */
  readonly status: number;
  /** Call-ID of the call concerned. */
  readonly callId: string | undefined;
  /** Target URI concerned, if any. */
  readonly target: string | undefined;

  constructor(
    status: number,
    message: string,
    context: { callId?: string; target?: string } = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.status = status;
    this.callId = context.callId;
    this.target = context.target;
  }
}

/**
 * Wait for a placed call to be answered. Resolves with the SDP answer; rejects with
 * {@link SipError} when the call fails or the far end hangs up first.
 */
export function waitForAnswer(call: OutboundSipCall): Promise<string> {
  return new Promise((resolve, reject) => {
    const off = call.on((e) => {
      if (e.type === 'answered') {
        off();
        resolve(e.sdp);
      } else if (e.type === 'failed') {
        off();
        reject(
          new SipError(e.status, e.reason, {
            callId: call.callId,
            ...(e.target === undefined ? {} : { target: e.target }),
          }),
        );
      } else if (e.type === 'remote-hangup') {
        off();
        reject(new SipError(487, 'far end hung up before answer', { callId: call.callId }));
      }
    });
  });
}
