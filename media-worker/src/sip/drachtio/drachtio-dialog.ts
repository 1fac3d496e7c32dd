/**
 * What both call directions share on drachtio-srf: the adapter context, header helpers and the
 * in-dialog behaviour of a confirmed call (BYE from the far end, re-INVITE hold/resume/media
 * update answered with our mirrored SDP, OPTIONS, methods we do not support). drachtio-server
 * keeps the dialog state (tags, CSeq, route set, remote target); this file only decides answers.
 */
import type Srf from 'drachtio-srf';
import type { Logger } from 'pino';
import type { Clock } from '#core/clock.ts';
import { redactSdp } from '../../sdp/sdp.ts';
import { INFO_ACCEPT, parseInfoDtmf } from '../info-dtmf.ts';
import { type RemoteSdpTracker, reinviteAnswer } from '../reinvite.ts';
import {
  type ArmedInterval,
  armedFor,
  decideAsUas,
  formatSessionExpires,
  listsTimer,
  parseSessionExpires,
  SessionTimer,
  type UasSessionDecision,
} from '../session-timer.ts';
import type { SipDialogEvent } from '../sip-port.ts';
import { ALLOW, extraHeaders, fromWire, SUPPORTED, sanitizeHeaderValue } from '../sip-wire.ts';

/** What the drachtio adapter gives every call. */
export interface DrachtioContext {
  readonly srf: Srf;
  readonly userAgent: string;
  readonly fromDomain: string;
  /** Bound on waiting for BYE/CANCEL outcomes. */
  readonly requestTimeoutMs: number;
  /** SIP_TLS_VERIFY: TLS targets must be verified by name, which drachtio-server 0.9.4 cannot do. */
  readonly tlsVerify: boolean;
  /** The Session-Expires our INVITEs ask for (RFC 4028 §4). */
  readonly sessionExpiresS: number;
  /** Our Min-SE: a smaller Session-Expires gets 422 (RFC 4028 §5). */
  readonly minSessionExpiresS: number;
  /** Clock of the expiry watch of calls placed to us (drachtio-server refreshes; see {@link attachDialog}). */
  readonly clock: Clock;
  parseUri(uri: string): unknown;
  /** Run a promise in the background, logging failures; `close()` waits for it. */
  background(p: Promise<unknown>, what: string, logger: Logger): void;
  /** `p`, but settled after at most `requestTimeoutMs` and never rejecting (failures are logged). */
  bounded(p: Promise<unknown>, what: string, logger: Logger): Promise<void>;
}

/**
 * Caller-given headers checked like the in-process adapter does (token names, no header the SIP
 * layer owns, CR/LF and controls replaced), as plain UTF-8 text: drachtio's wire protocol counts
 * UTF-8 bytes itself, so the `sip` package's latin1 convention does not apply.
 */
export function plainHeaders(headers: Readonly<Record<string, string>> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(extraHeaders(headers)).map(([k, v]) => [k, fromWire(v)]));
}

/** A display name as an RFC 3261 §25.1 quoted-string (UTF-8). */
export function quotedName(name: string): string {
  return `"${sanitizeHeaderValue(name).replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** A header of a drachtio request or response, if present. */
function headerOf(m: { has(name: string): boolean; get(name: string): string }, name: string): string | undefined {
  return m.has(name) ? m.get(name) : undefined;
}

/**
 * RFC 4028 §9 for a request we are the UAS of (an INVITE, re-INVITE or UPDATE), shared with the
 * in-process adapter ({@link decideAsUas}). drachtio-server runs the timer itself once our 2xx
 * carries Session-Expires: it re-INVITEs when we refresh and sends BYE on expiry.
 */
export function sessionDecision(
  req: { has(name: string): boolean; get(name: string): string },
  minSe: number,
): UasSessionDecision {
  const se = parseSessionExpires(headerOf(req, 'Session-Expires'));
  const timer = listsTimer(headerOf(req, 'Supported')) || listsTimer(headerOf(req, 'Require'));
  return decideAsUas({ sessionExpires: se, uacSupportsTimer: timer }, minSe);
}

/** The session-timer headers of our 2xx for `decision` (none when no timer). */
export function sessionHeaders(decision: UasSessionDecision): Record<string, string> {
  if (decision.kind !== 'timer') return { Supported: SUPPORTED };
  return {
    Supported: SUPPORTED,
    'Session-Expires': formatSessionExpires(decision.interval),
    ...(decision.requireTimer ? { Require: 'timer' } : {}),
  };
}

/** The Reason of our BYE ending an expired session (RFC 3326; RFC 4028 §10). */
const SESSION_EXPIRED_REASON = 'SIP;cause=408;text="Session timer expired"';

/** drachtio-server's BYE on session expiry carries `Reason: SIP ;cause=200 ;text="Session timer expired"`. */
const SESSION_EXPIRED = /session timer expired/i;

/** How a confirmed dialog reports to its call. */
export interface DialogHooks {
  readonly logger: Logger;
  /** The SDP we offered or answered; re-INVITE answers are built from it. */
  readonly localSdp: string;
  /** Its o= session version; each re-INVITE answer bumps it (RFC 3264 §8). */
  readonly localVersion: number;
  readonly remoteSdp: RemoteSdpTracker;
  /**
   * The session interval the dialog starts with, when we negotiated it as UAS. drachtio-server
   * sends our refreshes and ends an expired session it placed, but does not end one placed to us
   * whose caller stopped refreshing; that watch runs here (RFC 4028 §10).
   */
  readonly session?: ArmedInterval;
  emit(e: SipDialogEvent): void;
  /** BYE from the far end (drachtio has answered 200); the call ends. */
  onRemoteBye(reason: string | undefined, fromServer: boolean): void;
}

/** Handle in-dialog requests of a confirmed drachtio dialog the way `dialog.ts` does for the `sip` package. */
export function attachDialog(ctx: DrachtioContext, dialog: Srf.Dialog, hooks: DialogHooks): { stop(): void } {
  let version = hooks.localVersion;
  let over = false;
  const timer = new SessionTimer(ctx.clock, {
    refresh: () => undefined, // drachtio-server re-INVITEs when we are the refresher
    expire: () => {
      if (over) return;
      over = true;
      hooks.logger.warn('session timer expired; ending the call');
      hooks.emit({
        type: 'session-expired',
        reason: 'Session timer expired (no session refresh from the far end in time)',
      });
      hooks.onRemoteBye(undefined, false);
      ctx.background(
        ctx.bounded(
          destroyDialog(dialog, { Reason: SESSION_EXPIRED_REASON }),
          'BYE of an expired session',
          hooks.logger,
        ),
        'BYE',
        hooks.logger,
      );
    },
  });
  /** Watch the far end's refreshes only: our own are drachtio-server's. */
  const watch = (armed: ArmedInterval | undefined): void => {
    if (armed && !armed.weRefresh) timer.start(armed);
    else timer.stop();
  };
  watch(hooks.session);
  dialog.on('destroy', (req: Srf.SrfRequest) => {
    timer.stop();
    if (over) return;
    over = true;
    const reason = req?.has?.('Reason') ? req.get('Reason') : undefined;
    // drachtio-server itself sends BYE when our 2xx was never ACKed (source "application").
    const fromServer = (req as unknown as { meta?: { source?: string } })?.meta?.source === 'application';
    if (fromServer && reason !== undefined && SESSION_EXPIRED.test(reason)) {
      // RFC 4028 §10: drachtio-server's session timer ran out and it has sent BYE.
      hooks.logger.warn({ reason }, 'session timer expired; drachtio-server ended the call');
      hooks.emit({ type: 'session-expired', reason: 'Session timer expired (no session refresh in time)' });
      hooks.onRemoteBye(reason, false);
      return;
    }
    hooks.logger.info({ reason, fromServer }, 'far end hung up');
    if (!fromServer) hooks.emit(reason === undefined ? { type: 'remote-hangup' } : { type: 'remote-hangup', reason });
    hooks.onRemoteBye(reason, fromServer);
  });
  // With no hold/unhold/refresh listeners, drachtio-srf hands every re-INVITE to 'modify'.
  /**
   * What a re-INVITE and an UPDATE share: a body must be SDP (else 415), the session interval must
   * reach our Min-SE (else 422, RFC 4028 §5), and an accepted interval re-arms the expiry watch.
   * Undefined when the request was already answered.
   */
  const admit = (req: Srf.SrfRequest, res: Srf.SrfResponse) => {
    const type = req.get('Content-Type');
    const offer = req.body ? req.body : undefined;
    if (offer !== undefined && type && !/^application\/sdp\b/i.test(type)) {
      res.send(415, { headers: { Accept: 'application/sdp' } });
      return undefined;
    }
    const session = sessionDecision(req, ctx.minSessionExpiresS);
    if (session.kind === 'too-small') {
      res.send(422, { headers: { 'Min-SE': String(session.minSe) } });
      return undefined;
    }
    watch(session.kind === 'timer' ? armedFor(session.interval, 'uas') : undefined);
    return { offer, session };
  };
  dialog.on('modify', (req: Srf.SrfRequest, res: Srf.SrfResponse) => {
    const admitted = admit(req, res);
    if (!admitted) return;
    const { offer, session } = admitted;
    version += 1;
    const { sdp, direction } = reinviteAnswer(hooks.localSdp, offer, version);
    res.send(200, {
      body: sdp,
      headers: { 'Content-Type': 'application/sdp', Allow: ALLOW, ...sessionHeaders(session) },
    });
    hooks.logger.debug({ offer: offer === undefined ? undefined : redactSdp(offer), direction }, 're-INVITE answered');
    if (offer !== undefined) applyOffer(offer);
  });
  const applyOffer = (offer: string): void => {
    const event = hooks.remoteSdp.apply(offer);
    if (event?.type === 'hold' || event?.type === 'resume')
      hooks.logger.info(
        { held: event.type === 'hold' },
        `far end ${event.type === 'hold' ? 'put the call on hold' : 'resumed the call'}`,
      );
    if (event) hooks.emit(event);
  };
  // UPDATE (RFC 3311): a refresh without SDP gets 200; an offer goes through the re-INVITE's offer/answer.
  dialog.on('update', (req: Srf.SrfRequest, res: Srf.SrfResponse) => {
    const admitted = admit(req, res);
    if (!admitted) return;
    const { offer, session } = admitted;
    const headers: Record<string, string> = { Allow: ALLOW, ...sessionHeaders(session) };
    if (offer === undefined) {
      res.send(200, { headers });
      hooks.logger.debug({ sessionExpires: headers['Session-Expires'] }, 'UPDATE answered');
      return;
    }
    version += 1;
    const { sdp, direction } = reinviteAnswer(hooks.localSdp, offer, version);
    res.send(200, { body: sdp, headers: { ...headers, 'Content-Type': 'application/sdp' } });
    hooks.logger.debug({ offer: redactSdp(offer), direction }, 'UPDATE offer answered');
    applyOffer(offer);
  });
  // INFO: DTMF bodies become digits (the same rule as in-process, info-dtmf.ts).
  dialog.on('info', (req: Srf.SrfRequest, res: Srf.SrfResponse) => {
    const verdict = parseInfoDtmf(req.get('Content-Type') || undefined, req.body ? req.body : undefined);
    switch (verdict.kind) {
      case 'unsupported':
        res.send(415, { headers: { Accept: INFO_ACCEPT } });
        return;
      case 'malformed':
        res.send(400, `Bad Request (${verdict.why})`, {});
        return;
      case 'empty':
        res.send(200);
        return;
      case 'digit':
        res.send(200);
        hooks.logger.info({ digit: verdict.digit.digit, durationMs: verdict.digit.durationMs }, 'DTMF by INFO');
        hooks.emit({ type: 'dtmf', ...verdict.digit });
    }
  });
  dialog.on('options', (_req: Srf.SrfRequest, res: Srf.SrfResponse) => {
    res.send(200, { headers: { Allow: ALLOW, Accept: 'application/sdp' } });
  });
  // Not supported; answered as the in-process adapter does.
  for (const method of ['refer', 'message'] as const)
    dialog.on(method as 'info', (_req: Srf.SrfRequest, res: Srf.SrfResponse) => {
      res.send(405, { headers: { Allow: ALLOW } });
    });
  // The call ended on our side (hang-up): nothing may expire afterwards.
  return {
    stop: () => {
      over = true;
      timer.stop();
    },
  };
}

/** BYE for `dialog` with `headers` (e.g. a Reason, RFC 3326); settles on its response. */
export function destroyDialog(dialog: Srf.Dialog, headers: Record<string, string> = {}): Promise<unknown> {
  return new Promise((resolve, reject) => {
    dialog.destroy({ headers }, (err: unknown, msg: unknown) => (err ? reject(err) : resolve(msg)));
  });
}

/** CANCEL the INVITE `req` (drachtio-srf's types omit the options argument). */
export function cancelInvite(req: Srf.SrfRequest, headers: Record<string, string>): void {
  (req as unknown as { cancel(opts: object, cb: () => void): void }).cancel({ headers }, () => undefined);
}
