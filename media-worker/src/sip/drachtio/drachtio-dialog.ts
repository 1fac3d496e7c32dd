/**
 * What both call directions share on drachtio-srf: the adapter context, header helpers and the
 * in-dialog behaviour of a confirmed call (BYE from the far end, re-INVITE hold/resume/media
 * update answered with our mirrored SDP, OPTIONS, methods we do not support). drachtio-server
 * keeps the dialog state (tags, CSeq, route set, remote target); this file only decides answers.
 */
import type Srf from 'drachtio-srf';
import type { Logger } from 'pino';
import { redactSdp } from '../../sdp/sdp.ts';
import { type RemoteSdpTracker, reinviteAnswer } from '../reinvite.ts';
import type { SipDialogEvent } from '../sip-port.ts';
import { ALLOW, extraHeaders, fromWire, sanitizeHeaderValue } from '../sip-wire.ts';

/** What the drachtio adapter gives every call. */
export interface DrachtioContext {
  readonly srf: Srf;
  readonly userAgent: string;
  readonly fromDomain: string;
  /** Bound on waiting for BYE/CANCEL outcomes. */
  readonly requestTimeoutMs: number;
  /** SIP_TLS_VERIFY: TLS targets must be verified by name, which drachtio-server 0.9.4 cannot do. */
  readonly tlsVerify: boolean;
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

/** How a confirmed dialog reports to its call. */
export interface DialogHooks {
  readonly logger: Logger;
  /** The SDP we offered or answered; re-INVITE answers are built from it. */
  readonly localSdp: string;
  /** Its o= session version; each re-INVITE answer bumps it (RFC 3264 §8). */
  readonly localVersion: number;
  readonly remoteSdp: RemoteSdpTracker;
  emit(e: SipDialogEvent): void;
  /** BYE from the far end (drachtio has answered 200); the call ends. */
  onRemoteBye(reason: string | undefined, fromServer: boolean): void;
}

/** Handle in-dialog requests of a confirmed drachtio dialog the way `dialog.ts` does for the `sip` package. */
export function attachDialog(_ctx: DrachtioContext, dialog: Srf.Dialog, hooks: DialogHooks): void {
  let version = hooks.localVersion;
  dialog.on('destroy', (req: Srf.SrfRequest) => {
    const reason = req?.has?.('Reason') ? req.get('Reason') : undefined;
    // drachtio-server itself sends BYE when our 2xx was never ACKed (source "application").
    const fromServer = (req as unknown as { meta?: { source?: string } })?.meta?.source === 'application';
    hooks.logger.info({ reason, fromServer }, 'far end hung up');
    if (!fromServer) hooks.emit(reason === undefined ? { type: 'remote-hangup' } : { type: 'remote-hangup', reason });
    hooks.onRemoteBye(reason, fromServer);
  });
  // With no hold/unhold/refresh listeners, drachtio-srf hands every re-INVITE to 'modify'.
  dialog.on('modify', (req: Srf.SrfRequest, res: Srf.SrfResponse) => {
    const type = req.get('Content-Type');
    const offer = req.body ? req.body : undefined;
    if (offer !== undefined && type && !/^application\/sdp\b/i.test(type)) {
      res.send(415, { headers: { Accept: 'application/sdp' } });
      return;
    }
    version += 1;
    const { sdp, direction } = reinviteAnswer(hooks.localSdp, offer, version);
    res.send(200, { body: sdp, headers: { 'Content-Type': 'application/sdp', Allow: ALLOW } });
    hooks.logger.debug({ offer: offer === undefined ? undefined : redactSdp(offer), direction }, 're-INVITE answered');
    if (offer === undefined) return;
    const event = hooks.remoteSdp.apply(offer);
    if (event?.type === 'hold' || event?.type === 'resume')
      hooks.logger.info(
        { held: event.type === 'hold' },
        `far end ${event.type === 'hold' ? 'put the call on hold' : 'resumed the call'}`,
      );
    if (event) hooks.emit(event);
  });
  dialog.on('options', (_req: Srf.SrfRequest, res: Srf.SrfResponse) => {
    res.send(200, { headers: { Allow: ALLOW, Accept: 'application/sdp' } });
  });
  // Not supported yet (issue 14 item 4: INFO dtmf-relay); answered as the in-process adapter does.
  for (const method of ['info', 'refer', 'message'] as const)
    dialog.on(method as 'info', (_req: Srf.SrfRequest, res: Srf.SrfResponse) => {
      res.send(405, { headers: { Allow: ALLOW } });
    });
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
