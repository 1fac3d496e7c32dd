/**
 * {@link SipPort} on drachtio-srf: the worker is a drachtio application connected over TCP to a
 * drachtio-server (the C++ SIP engine, sofia-sip inside), which owns the SIP transports,
 * transactions, retransmissions and dialogs (see ../shared/docs/dependency-notes.md, drachtio's
 * wire protocol). Selected with `SIP_STACK=drachtio`; the in-process adapter (`sip-adapter.ts`)
 * stays the default for local mode.
 *
 * Out of dialog, this adapter decides what the in-process one decides: OPTIONS 200, INVITEs with
 * `Require` 420, non-SDP bodies 415, no handler 480, closing 503, and the digest challenge of
 * PBX-started calls with the same stateless-nonce {@link DigestVerifier}.
 *
 * SIP over TLS to the PBX: drachtio-server 0.9.4's sofia-sip sends no SNI and has no way to verify
 * a server certificate against the target's name on its own (its only peer verification,
 * DRACHTIO_TLS_VERIFY_CLIENT_CERT=1, also demands client certificates from every inbound TLS peer
 * and trusts its chain file alone). This adapter does not pretend otherwise: while SIP_TLS_VERIFY
 * is on, a TLS target fails as 503 "TLS failed" before anything is sent (see `tlsVerify`).
 */
import Srf from 'drachtio-srf';
import type { Logger } from 'pino';
import pino from 'pino';
import { type Clock, realClock } from '#core/clock.ts';
import { type DigestCredentials, DigestVerifier, parseAuthorization } from '../digest-server.ts';
import { runProbe } from '../probe.ts';
import { DEFAULT_SESSION_EXPIRES_S, MIN_SESSION_EXPIRES_S, unsupportedRequired } from '../session-timer.ts';
import { SipStackError } from '../sip-adapter.ts';
import type { InboundInviteHandler, OutboundSipCall, PlaceCallOptions, SipPort, SipProbeResult } from '../sip-port.ts';
import { ALLOW } from '../sip-wire.ts';
import { TargetCooldowns } from '../target-plan.ts';
import { type DrachtioContext, sessionDecision } from './drachtio-dialog.ts';
import { DrachtioInboundCall } from './drachtio-inbound.ts';
import { DrachtioOutboundCall, isTlsTarget } from './drachtio-outbound.ts';

/** Options of {@link createDrachtioSipPort}. */
export interface DrachtioPortOptions {
  /** drachtio-server's application (admin) address. */
  readonly host: string;
  /** drachtio-server's application port. @default 9022 */
  readonly port?: number;
  /** The shared secret drachtio-server expects. Never logged. */
  readonly secret: string;
  /** Host part of our From URI. @default the SIP address drachtio-server reports */
  readonly fromDomain?: string;
  /** User-Agent / Server header. @default 'wa-sip-bridge' */
  readonly userAgent?: string;
  /** User part of {@link SipPort.localContact}. @default 'wa-sip-bridge' */
  readonly contactUser?: string;
  /** pino logger; a child per call carries `sipCallId`. @default silent */
  readonly logger?: Logger;
  /** Bound on waiting for BYE/CANCEL outcomes and on `close()`. @default 8000 */
  readonly requestTimeoutMs?: number;
  /** How long a 2xx we sent waits for its ACK. @default 32000 */
  readonly ackTimeoutMs?: number;
  /** An inbound INVITE not answered by the handler within this time is rejected 480. @default 180000 */
  readonly inboundRingLimitMs?: number;
  /** Challenge inbound INVITEs with digest authentication (RFC 3261 §22.2). */
  readonly inboundAuth?: DigestCredentials;
  /**
   * Time source of the 503 `Retry-After` cooldowns of targets, of the digest nonces' lifetime and
   * of the session-expiry watch of calls placed to us (tests pass a `ManualClock`). @default realClock
   */
  readonly clock?: Clock;
  /** How long to wait for drachtio-server to accept the connection. @default 10000 */
  readonly connectTimeoutMs?: number;
  /**
   * SIP_TLS_VERIFY. drachtio-server 0.9.4 sends no SNI on outgoing TLS and cannot verify a
   * server certificate by name (its sofia-sip verifies peers only with
   * DRACHTIO_TLS_VERIFY_CLIENT_CERT=1, which also demands client certificates from every inbound
   * TLS peer, against its chain file alone), so while this is `true` a TLS target (`sips:` or
   * `;transport=tls`) fails as 503 "TLS failed" and the next target is tried. `false` sends
   * over drachtio's TLS unverified (a lab), logged as a warning at start. @default true
   */
  readonly tlsVerify?: boolean;
  /** The Session-Expires our INVITEs ask for (RFC 4028 §4). @default 1800 */
  readonly sessionExpiresS?: number;
  /** Our Min-SE: an INVITE, UPDATE or re-INVITE asking for less gets 422 (RFC 4028 §5). @default 90 */
  readonly minSessionExpiresS?: number;
}

/**
 * `udp/127.0.0.1:5080,tcp/127.0.0.1:5080` (drachtio's hostport list) → the SIP address our
 * Contact names: drachtio's first UDP or TCP contact (`tls/…` only if it has no other).
 */
export function firstHostPort(hostport: string): { host: string; port: number } {
  // drachtio lists its contacts in its own order (TLS first when configured): the plain contact is
  // the one our Contact and From domain use, as the in-process adapter does.
  const all = hostport.split(',').map((h) => h.trim());
  const first = all.find((h) => /^(udp|tcp)\//i.test(h)) ?? all[0] ?? '';
  const m = /^[a-z]+\/(\[[^\]]+\]|[^:]+):(\d+)$/i.exec(first);
  return { host: m?.[1] ?? '127.0.0.1', port: Number(m?.[2] ?? 5060) };
}

/** drachtio-srf's internals that stopping needs: its agent's wire protocol (reconnect timer, `closing`). */
interface SrfInternals {
  readonly _app?: {
    readonly client?: { readonly wp?: { closing?: boolean; reconnectVars?: { retryTimer?: NodeJS.Timeout | null } } };
  };
}

/**
 * Drop the connection and stop drachtio-srf's reconnect attempts. `srf.disconnect()` asserts a live
 * socket, so without one (server gone, never connected) it would throw; the retry timer is
 * cleared by hand so nothing keeps trying (or keeps the process alive).
 */
function shutdown(srf: Srf, logger: Logger): void {
  const wp = (srf as unknown as SrfInternals)._app?.client?.wp;
  if (wp) {
    wp.closing = true;
    if (wp.reconnectVars?.retryTimer) clearTimeout(wp.reconnectVars.retryTimer);
  }
  try {
    srf.disconnect();
  } catch (err) {
    logger.debug({ err }, 'no drachtio connection to close');
  }
}

/**
 * Connect to drachtio-server and return the port on it. Resolves once authenticated.
 * @throws {SipStackError} when the server cannot be reached or refuses the secret in time.
 */
export async function createDrachtioSipPort(options: DrachtioPortOptions): Promise<SipPort> {
  const logger = options.logger ?? pino({ level: 'silent' });
  const userAgent = options.userAgent ?? 'wa-sip-bridge';
  const requestTimeoutMs = options.requestTimeoutMs ?? 8000;
  const inboundRingLimitMs = options.inboundRingLimitMs ?? 180_000;
  const clock = options.clock ?? realClock;
  const verifier = options.inboundAuth ? new DigestVerifier(options.inboundAuth, { clock }) : undefined;
  /** Targets that answered 503 with Retry-After, shared by every call of this port (RFC 3261 §21.5.4). */
  const cooldowns = new TargetCooldowns({ clock });
  const minSe = options.minSessionExpiresS ?? MIN_SESSION_EXPIRES_S;
  const srf = new Srf();
  if (options.tlsVerify === false)
    logger.warn(
      'SIP_TLS_VERIFY=false: TLS targets go through drachtio-server without SNI and without any check of the PBX certificate. For a lab only.',
    );
  const calls = new Set<DrachtioOutboundCall | DrachtioInboundCall>();
  const background = new Set<Promise<unknown>>();
  let inviteHandler: InboundInviteHandler | undefined;
  let closing: Promise<void> | undefined;

  const bounded = async (p: Promise<unknown>, what: string, log: Logger): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        log.warn({ what, requestTimeoutMs }, 'no outcome in time');
        resolve();
      }, requestTimeoutMs);
    });
    await Promise.race([
      p.then(
        () => undefined,
        (err: unknown) => log.warn({ err, what }, 'request failed'),
      ),
      timeout,
    ]);
    clearTimeout(timer);
  };
  let fromDomain = options.fromDomain ?? options.host;
  const ctx: DrachtioContext = {
    srf,
    userAgent,
    get fromDomain() {
      return fromDomain;
    },
    requestTimeoutMs,
    tlsVerify: options.tlsVerify !== false,
    sessionExpiresS: Math.max(options.sessionExpiresS ?? DEFAULT_SESSION_EXPIRES_S, minSe),
    minSessionExpiresS: minSe,
    clock,
    parseUri: (uri) => Srf.parseUri(uri),
    background: (p, what, log) => {
      const tracked = p.then(
        () => undefined,
        (err: unknown) => log.error({ err }, `${what} failed`),
      );
      background.add(tracked);
      void tracked.finally(() => background.delete(tracked));
    },
    bounded,
  };

  // drachtio-srf routes a method to us once a handler exists; its types omit the per-method helpers.
  const route = srf as unknown as Record<string, (h: (req: Srf.SrfRequest, res: Srf.SrfResponse) => void) => void>;
  route.options?.((_req, res) => {
    res.send(200, { headers: { Allow: ALLOW, Accept: 'application/sdp', 'Accept-Language': 'en' } });
  });
  // Out-of-dialog methods we do not support: 405 with Allow, as in-process (unrouted, drachtio says 503).
  for (const method of ['register', 'subscribe', 'message', 'publish', 'refer', 'info', 'notify', 'update'])
    route[method]?.((_req, res) => {
      res.send(405, { headers: { Allow: ALLOW } });
    });
  srf.invite((req: Srf.SrfRequest, res: Srf.SrfResponse) => {
    try {
      onInvite(req, res);
    } catch (err) {
      logger.error({ err }, 'failed to handle INVITE');
      if (!res.finalResponseSent) res.send(500);
    }
  });

  function onInvite(req: Srf.SrfRequest, res: Srf.SrfResponse): void {
    if (closing) {
      res.send(503, { headers: { 'Retry-After': '5' } });
      return;
    }
    const unsupported = unsupportedRequired(req.get('Require') || undefined);
    if (unsupported.length > 0) {
      // RFC 3261 §8.2.2.3: of the extensions, we support session timers only (no 100rel).
      res.send(420, { headers: { Unsupported: unsupported.join(', ') } });
      return;
    }
    const session = sessionDecision(req, minSe);
    if (session.kind === 'too-small') {
      // RFC 4028 §8.1: before any handler sees the call.
      res.send(422, { headers: { 'Min-SE': String(session.minSe) } });
      return;
    }
    const type = req.get('Content-Type');
    if (req.body && type && !/^application\/sdp\b/i.test(type)) {
      res.send(415, { headers: { Accept: 'application/sdp' } });
      return;
    }
    if (!inviteHandler) {
      res.send(480);
      return;
    }
    if (verifier) {
      const given = req.has('Authorization') ? parseAuthorization(req.get('Authorization')) : undefined;
      const verdict = verifier.verify('INVITE', given ? [given] : undefined, req.uri);
      if (verdict === 'uri-mismatch') {
        // RFC 2617 §3.2.2.5: an answer for another resource is a bad request, not a credentials problem.
        logger.warn({ source: req.source_address }, 'INVITE whose digest uri is not its Request-URI');
        res.send(400);
        return;
      }
      if (verdict !== 'ok') {
        // 401 with a fresh challenge; the retried INVITE is a new transaction (RFC 3261 §22.2).
        if (verdict === 'bad' || verdict === 'replay')
          logger.warn({ source: req.source_address, verdict }, 'INVITE with wrong or replayed digest credentials');
        res.send(401, { headers: { 'WWW-Authenticate': verifier.challengeText(verdict === 'stale') } });
        return;
      }
    }
    let ringLimit: NodeJS.Timeout | undefined;
    const call = new DrachtioInboundCall(
      ctx,
      logger,
      req,
      res,
      { ackTimeoutMs: options.ackTimeoutMs ?? 32_000 },
      (c) => {
        clearTimeout(ringLimit);
        calls.delete(c);
      },
    );
    calls.add(call);
    ringLimit = setTimeout(() => {
      if (call.state === 'calling' || call.state === 'early') call.reject(480, 'Temporarily Unavailable');
    }, inboundRingLimitMs);
    try {
      const r = inviteHandler(call);
      if (r instanceof Promise)
        ctx.background(
          r.catch((err: unknown) => call.failInternally(err)),
          'inbound INVITE handler',
          logger,
        );
    } catch (err) {
      call.failInternally(err);
    }
  }

  const hostport = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      shutdown(srf, logger);
      reject(
        new SipStackError(
          `drachtio-server at ${options.host}:${options.port ?? 9022} did not accept us within ${options.connectTimeoutMs ?? 10_000} ms`,
        ),
      );
    }, options.connectTimeoutMs ?? 10_000);
    srf.on('connect', (err: Error | null, hp: string) => {
      clearTimeout(timer);
      if (err) {
        shutdown(srf, logger);
        reject(new SipStackError(`drachtio-server refused the connection: ${err.message}`, { cause: err }));
      } else resolve(hp);
    });
    // Reconnection attempts report here; they must not crash the process.
    srf.on('error', (err: Error) => logger.warn({ err: err.message }, 'drachtio connection error'));
    // drachtio-srf reconnects by itself; until then no call can be placed or received.
    (srf as unknown as NodeJS.EventEmitter).on('close', () => {
      if (!closing) logger.error('lost the connection to drachtio-server');
    });
    void srf.connect({ host: options.host, port: options.port ?? 9022, secret: options.secret });
  });
  const sipAt = firstHostPort(hostport);
  if (!options.fromDomain) fromDomain = sipAt.host;
  const contactUser = options.contactUser ?? 'wa-sip-bridge';
  logger.info({ drachtio: `${options.host}:${options.port ?? 9022}`, sip: hostport }, 'connected to drachtio-server');

  return {
    localContact: `sip:${contactUser}@${sipAt.host}:${sipAt.port}`,
    get activeCalls() {
      return calls.size;
    },
    placeCall(opts: PlaceCallOptions): OutboundSipCall {
      if (closing) throw new SipStackError('SIP port is closed');
      const call = new DrachtioOutboundCall(ctx, logger, opts, (c) => calls.delete(c), cooldowns);
      calls.add(call);
      return call;
    },
    onInvite(handler: InboundInviteHandler): void {
      inviteHandler = handler;
    },
    probe(uri: string, timeoutMs: number): Promise<SipProbeResult> {
      return runProbe(uri, timeoutMs, clock, (outcome) => {
        if (closing) throw new SipStackError('SIP port is closed');
        // As for calls: drachtio-server cannot verify a TLS peer by name (see `tlsVerify`).
        if (ctx.tlsVerify && isTlsTarget(uri))
          throw new SipStackError('TLS failed: drachtio-server cannot verify the PBX certificate');
        // RFC 3261 §11.1: an OPTIONS outside any dialog; drachtio-server adds Via, Call-ID, CSeq.
        const request = srf.request as unknown as (
          uri: string,
          opts: { method: string; headers: Record<string, string> },
          callback: (err: Error | null, req: Srf.SrfRequest) => void,
        ) => void;
        request.call(
          srf,
          uri,
          {
            method: 'OPTIONS',
            headers: {
              From: `<sip:${contactUser}@${fromDomain}>`,
              'Max-Forwards': '70',
              'User-Agent': userAgent,
              Accept: 'application/sdp',
            },
          },
          (err, req) => {
            if (err) {
              outcome.failed(err);
              return;
            }
            (req as unknown as NodeJS.EventEmitter).on('response', (res: Srf.SrfResponse) => {
              if (res.status >= 200) outcome.final(res.status, res.reason ?? '', /;\s*tag=/i.test(res.get('To') ?? ''));
            });
          },
        );
      });
    },
    close(): Promise<void> {
      closing ??= (async () => {
        await bounded(Promise.allSettled([...calls].map((c) => c.hangUp())), 'hang up all', logger);
        await bounded(Promise.allSettled([...background]), 'background work', logger);
        shutdown(srf, logger);
        logger.info('drachtio connection closed');
      })();
      return closing;
    },
  };
}
