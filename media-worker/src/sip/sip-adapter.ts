/**
 * Default, in-process {@link SipPort} on the npm `sip` package (kirm, 0.0.6). The package owns
 * transports (UDP/TCP/TLS), parsing and the RFC 3261 §17 transaction state machines with their
 * timers (A/B/D/E/F/G/H/I/K); this adapter adds what it lacks — dialogs (§12), the UAC/UAS core
 * (§13), CANCEL (§9), BYE (§15), digest retries (§22), request routing to dialogs — in
 * `outbound-call.ts`, `inbound-call.ts` and `dialog.ts`.
 *
 * Package traps handled here (see the report in the PR and `sip-package.d.ts`):
 * - it binds `port || 5060`, so port 0 is refused; bind errors on its sockets are unhandled
 *   `error` events that would crash the process, so its sockets are captured as it creates them
 *   and their own bind outcome awaited ({@link withCapturedSockets}), with no probe before;
 * - a request whose next hop equals its own address is treated as a local flow and answered 404
 *   locally; a target on this host at another port (a PBX beside the worker) is therefore reached
 *   through the package's own flow mechanism ({@link routeToOwnHost});
 * - a server transaction that never gets a response never ends, so every request is answered.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import pino from 'pino';
import type { SipMessage, SipRemote, SipStack, SipStackOptions } from 'sip';
import sip from 'sip';
import { type Clock, realClock } from '#core/clock.ts';
import { type SipDialog, type SipStackContext, saysTimer, sessionExpiresOf } from './dialog.ts';
import { type AuthorizationHeader, type DigestCredentials, DigestVerifier } from './digest-server.ts';
import { InboundCall } from './inbound-call.ts';
import { OutboundCall } from './outbound-call.ts';
import { runProbe } from './probe.ts';
import { DEFAULT_SESSION_EXPIRES_S, decideAsUas, MIN_SESSION_EXPIRES_S, unsupportedRequired } from './session-timer.ts';
import type {
  InboundInviteHandler,
  OutboundSipCall,
  PlaceCallOptions,
  SipPort,
  SipProbeResult,
  SipTransport,
} from './sip-port.ts';
import { loadSipPackage, resolveTlsNextHop, SipTlsClient, type SipTlsDns, systemDns } from './sip-tls.ts';
import {
  ALLOW,
  bodyOf,
  explicitPort,
  headerText,
  KNOWN_METHODS,
  newCallId,
  newTag,
  redactedWireText,
  responseTo,
  T1_MS,
  targetPort,
  transportOf,
} from './sip-wire.ts';
import { TargetCooldowns } from './target-plan.ts';

/**
 * TLS material for the `tls` transport. Outgoing TLS (a `sips:` target or `;transport=tls`) sends
 * the target's host name as SNI and verifies the server certificate against it (see `sip-tls.ts`).
 */
export interface SipTlsOptions {
  readonly key: string | Buffer;
  readonly cert: string | Buffer;
  /** @default 5061 */
  readonly port?: number;
  /** CAs trusted when we connect out over TLS, in addition to the default ones (SIP_TLS_CA_FILE). */
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
  /**
   * Verify servers' certificates (chain and name) on outgoing TLS. `false` is for a lab only and is
   * logged as a warning at start (SIP_TLS_VERIFY). @default true
   */
  readonly rejectUnauthorized?: boolean;
}

/** Options of {@link createSipPort}. */
export interface SipPortOptions {
  /** Address to bind, e.g. `127.0.0.1`. Must differ from every target's address (package trap). */
  readonly address: string;
  /** UDP and TCP port. 0 is refused: the package would silently bind 5060. */
  readonly port: number;
  /** @default ['udp', 'tcp'] */
  readonly transports?: readonly SipTransport[];
  /** Required when `transports` includes `tls`. */
  readonly tls?: SipTlsOptions;
  /** Address advertised in Via and Contact (behind NAT). @default address */
  readonly publicAddress?: string;
  /** Host part of our From URI. @default publicAddress ?? address */
  readonly fromDomain?: string;
  /** User-Agent / Server header. @default 'wa-sip-bridge' */
  readonly userAgent?: string;
  /** User part of our Contact. @default 'wa-sip-bridge' */
  readonly contactUser?: string;
  /** pino logger (give it your `component` binding); a child per call carries `sipCallId`. Wire traces at `trace` level, redacted. @default silent */
  readonly logger?: Logger;
  /** Bound on waiting for responses to BYE/CANCEL. @default 8000 */
  readonly requestTimeoutMs?: number;
  /** How long a 2xx we sent waits for its ACK (64·T1). @default 32000 */
  readonly ackTimeoutMs?: number;
  /**
   * T1, the first 2xx retransmission interval over UDP (RFC 3261 §13.3.1.4, doubling up to T2 = 4 s).
   * RFC 3261 §17.1.1.1 allows a smaller value on networks known to be fast; tests use one. The
   * package's own transaction timers keep 500 ms. @default 500
   */
  readonly t1Ms?: number;
  /** An inbound INVITE not answered by the handler within this time is rejected 480 (cf. Timer C). @default 180000 */
  readonly inboundRingLimitMs?: number;
  /**
   * Challenge inbound INVITEs with digest authentication (RFC 3261 §22.2): an INVITE without valid
   * credentials gets 401 with a `WWW-Authenticate` challenge and never reaches the handler.
   */
  readonly inboundAuth?: DigestCredentials;
  /** The Session-Expires our INVITEs ask for (RFC 4028 §4). @default 1800 */
  readonly sessionExpiresS?: number;
  /** Our Min-SE: an INVITE, UPDATE or re-INVITE asking for less gets 422 (RFC 4028 §5). @default 90 */
  readonly minSessionExpiresS?: number;
  /**
   * Time source of the 503 `Retry-After` cooldowns of targets, of the digest nonces' lifetime and
   * of the session timers (tests pass a `ManualClock`). @default realClock
   */
  readonly clock?: Clock;
  /** DNS for TLS next hops named by host name (A/AAAA through the system, SRV). @default the system's */
  readonly dns?: SipTlsDns;
}

/** The stack could not start (bad options, port in use). */
export class SipStackError extends Error {
  override readonly name = 'SipStackError';
}

/** A listening socket of the package: a UDP socket or a TCP/TLS server. */
type PackageSocket = dgram.Socket | net.Server;

/**
 * Run `create` (the package's `sip.create`) and capture the sockets it makes, so their own bind
 * outcome is known: no probe first (a probe releases the port and leaves a gap before the real
 * bind), and no unhandled `error` event on a failed bind (the package listens for none).
 */
function withCapturedSockets<T>(create: () => T): { result: T; sockets: PackageSocket[] } {
  const sockets: PackageSocket[] = [];
  const udp = dgram.createSocket;
  const tcp = net.createServer;
  const secure = tls.createServer;
  const capture = <S extends PackageSocket>(s: S): S => {
    sockets.push(s);
    // Listen at once: the bind error comes asynchronously and must never be unhandled.
    s.once('error', () => undefined);
    return s;
  };
  dgram.createSocket = ((...a: Parameters<typeof udp>) => capture(udp(...a))) as typeof udp;
  net.createServer = ((...a: Parameters<typeof tcp>) => capture(tcp(...a))) as typeof tcp;
  tls.createServer = ((...a: Parameters<typeof secure>) => capture(secure(...a))) as typeof secure;
  try {
    return { result: create(), sockets };
  } finally {
    dgram.createSocket = udp;
    net.createServer = tcp;
    tls.createServer = secure;
  }
}

/** Resolves once `s` listens; rejects with its bind error. */
function listening(s: PackageSocket): Promise<void> {
  if (s instanceof net.Server && s.listening) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const ok = () => {
      s.off('error', fail);
      resolve();
    };
    const fail = (err: Error) => {
      s.off('listening', ok);
      reject(err);
    };
    s.once('listening', ok);
    s.once('error', fail);
  });
}

const dialogKey = (callId: string, tag: string): string => `${callId}\n${tag}`;

/**
 * The 503 responses as they arrived. The package's RFC 3263 address search answers a 503 by
 * trying the next address and, with none left, hands the caller a 503 it makes itself from the
 * request, without the far end's headers: the `Retry-After` (RFC 3261 §21.5.4) would be lost.
 * The wire hook keeps each received 503 here, keyed by Call-ID and branch, and the send callback
 * swaps the made-up 503 for it. Bounded: the oldest go first.
 */
class Received503s {
  static readonly MAX = 64;
  readonly #byKey = new Map<string, SipMessage>();

  static #key(m: SipMessage): string {
    return `${m.headers['call-id'] ?? ''}\n${m.headers.via?.[0]?.params.branch ?? ''}`;
  }

  keep(rs: SipMessage): void {
    this.#byKey.set(Received503s.#key(rs), rs);
    for (const key of this.#byKey.keys()) {
      if (this.#byKey.size <= Received503s.MAX) break;
      this.#byKey.delete(key);
    }
  }

  /** The received 503 matching `rs` (the package's own), removed from the store. */
  take(rs: SipMessage): SipMessage | undefined {
    const key = Received503s.#key(rs);
    const found = this.#byKey.get(key);
    this.#byKey.delete(key);
    return found;
  }
}

/**
 * The package treats any request whose next hop is its own host as addressed to one of its own
 * flows and answers it 404 locally, so a PBX on the worker's IP at another port was unreachable (issue
 * 14: no INVITE ever left). Such a request gets a first Route naming a flow to that port, the
 * package's own flow-token mechanism: the package takes that Route off (it never reaches the wire)
 * and sends to the flow's address and port. Our own address and port is left alone (a loop).
 */
export function routeToOwnHost(
  stack: Pick<SipStack, 'hostname' | 'encodeFlowUri'>,
  m: SipMessage,
  own: { address: string; port: (t: SipTransport) => number },
): void {
  if (!m.method) return;
  const first = m.headers.route?.[0]?.uri;
  const next = first ?? m.uri;
  const hop = next === undefined ? undefined : typeof next === 'string' ? sip.parseUri(next) : next;
  if (!hop || hop.host !== stack.hostname()) return;
  const transport = transportOf(hop);
  const port = targetPort(hop, transport);
  if (port === own.port(transport)) return;
  const flow = stack.encodeFlowUri({
    protocol: transport === 'tls' ? 'TLS' : transport === 'tcp' ? 'TCP' : 'UDP',
    address: hop.host,
    port,
    local: { address: own.address, port: own.port(transport) },
  });
  m.headers.route = [{ uri: { ...flow, params: { lr: null } }, params: {} }, ...(m.headers.route ?? [])];
}

/**
 * The next hop of request `m` when it goes over TLS (`sips:` or `;transport=tls`, RFC 3261 §26.2),
 * unless it is already one of the package's flows on our own host.
 */
export function tlsNextHop(
  stack: Pick<SipStack, 'hostname'>,
  m: SipMessage,
): { host: string; port?: number } | undefined {
  if (!m.method) return undefined;
  const first = m.headers.route?.[0]?.uri;
  const next = first ?? m.uri;
  const hop = next === undefined ? undefined : typeof next === 'string' ? sip.parseUri(next) : next;
  if (!hop || hop.host === stack.hostname() || transportOf(hop) !== 'tls') return undefined;
  const port = explicitPort(hop);
  return port === undefined ? { host: hop.host } : { host: hop.host, port };
}

/**
 * Start a SIP stack and return the port on it. Resolves once the sockets are bound.
 * @throws {SipStackError} when a port is in use or options are inconsistent.
 */
export async function createSipPort(options: SipPortOptions): Promise<SipPort> {
  const transports = new Set<SipTransport>(options.transports ?? ['udp', 'tcp']);
  if (!Number.isInteger(options.port) || options.port <= 0 || options.port > 65535)
    throw new SipStackError(`invalid SIP port ${options.port} (0 is not supported)`);
  if (transports.has('tls') && !options.tls) throw new SipStackError('transport tls needs tls key and cert');
  const logger = options.logger ?? pino({ level: 'silent' });
  const tlsPort = options.tls?.port ?? 5061;

  const host = options.publicAddress ?? options.address;
  const userAgent = options.userAgent ?? 'wa-sip-bridge';
  const contactUser = options.contactUser ?? 'wa-sip-bridge';
  const requestTimeoutMs = options.requestTimeoutMs ?? 8000;
  const inboundRingLimitMs = options.inboundRingLimitMs ?? 180_000;
  const clock = options.clock ?? realClock;
  const verifier = options.inboundAuth ? new DigestVerifier(options.inboundAuth, { clock }) : undefined;
  /** Targets that answered 503 with Retry-After, shared by every call of this stack (RFC 3261 §21.5.4). */
  const cooldowns = new TargetCooldowns({ clock });
  const received503s = new Received503s();
  const minSe = options.minSessionExpiresS ?? MIN_SESSION_EXPIRES_S;
  const dialogs = new Map<string, SipDialog>();
  /** Unanswered inbound INVITEs by Call-ID and top Via branch, for CANCEL matching (RFC 3261 §9.2). */
  const pendingInvites = new Map<string, InboundCall>();
  const calls = new Set<OutboundCall | InboundCall>();
  const background = new Set<Promise<unknown>>();
  let inviteHandler: InboundInviteHandler | undefined;
  let closing: Promise<void> | undefined;

  // Outgoing TLS goes through our client (SNI and verification by name, `sip-tls.ts`) inside a
  // private instance of the package; without TLS the shared module does.
  const tlsClient =
    transports.has('tls') && options.tls
      ? new SipTlsClient({
          key: options.tls.key,
          cert: options.tls.cert,
          ...(options.tls.ca === undefined ? {} : { ca: options.tls.ca }),
          verify: options.tls.rejectUnauthorized !== false,
          logger,
        })
      : undefined;
  if (tlsClient && options.tls?.rejectUnauthorized === false)
    logger.warn(
      'SIP_TLS_VERIFY=false: certificates of TLS peers are NOT verified; anyone on the path can impersonate the PBX. For a lab only.',
    );
  const sipPackage = tlsClient ? loadSipPackage(tlsClient) : sip;

  const stackOptions: SipStackOptions = {
    address: options.address,
    port: options.port,
    udp: transports.has('udp'),
    tcp: transports.has('tcp'),
    // The package's TLS server uses these; no client certificate is requested (Meta: no mTLS).
    ...(transports.has('tls') && options.tls
      ? { tls: { key: options.tls.key, cert: options.tls.cert }, tls_port: tlsPort }
      : {}),
    ...(options.publicAddress ? { publicAddress: options.publicAddress } : {}),
    logger: {
      send: (m) => {
        if (logger.isLevelEnabled('trace')) logger.trace({ wire: redactedWireText(m) }, 'SIP out');
      },
      recv: (m, remote) => {
        if (m.status === 503) received503s.keep(m);
        if (logger.isLevelEnabled('trace'))
          logger.trace(
            { wire: redactedWireText(m), from: `${remote.protocol} ${remote.address}:${remote.port}` },
            'SIP in',
          );
      },
      error: (err) => logger.warn({ err }, 'sip package error'),
    },
  };

  const respond = (
    rq: SipMessage,
    status: number,
    reason: string,
    extra: { toTag?: string; headers?: Record<string, unknown>; content?: string } = {},
  ): void => {
    stack.send(
      responseTo(rq, status, reason, {
        toTag: extra.toTag ?? newTag(),
        headers: { server: userAgent, ...extra.headers },
        ...(extra.content === undefined ? {} : { content: extra.content }),
      }),
    );
  };

  const ownPort = (t: SipTransport): number => (t === 'tls' ? tlsPort : options.port);
  const ctx: SipStackContext = {
    get stack() {
      return routedStack;
    },
    ownPort,
    userAgent,
    fromDomain: options.fromDomain ?? host,
    localHost: host,
    requestTimeoutMs,
    ackTimeoutMs: options.ackTimeoutMs ?? 32_000,
    t1Ms: options.t1Ms ?? T1_MS,
    transports,
    clock,
    sessionExpiresS: Math.max(options.sessionExpiresS ?? DEFAULT_SESSION_EXPIRES_S, minSe),
    minSessionExpiresS: minSe,
    contactFor: (t) =>
      t === 'udp'
        ? `sip:${contactUser}@${host}:${options.port}`
        : `sip:${contactUser}@${host}:${t === 'tls' ? tlsPort : options.port};transport=${t}`,
    registerDialog: (callId, tag, d) => {
      dialogs.set(dialogKey(callId, tag), d);
    },
    unregisterDialog: (callId, tag) => {
      dialogs.delete(dialogKey(callId, tag));
    },
    respond,
    background: (p, what, log) => {
      const tracked = p.then(
        () => undefined,
        (err: unknown) => log.error({ err }, `${what} failed`),
      );
      background.add(tracked);
      void tracked.finally(() => background.delete(tracked));
    },
  };

  function onInboundInvite(rq: SipMessage, remote: SipRemote): void {
    if (closing) {
      respond(rq, 503, 'Service Unavailable', { headers: { 'retry-after': '5' } });
      return;
    }
    const unsupported = unsupportedRequired(headerText(rq, 'require'));
    if (unsupported.length > 0) {
      // RFC 3261 §8.2.2.3: of the extensions, we support session timers only (no 100rel).
      respond(rq, 420, 'Bad Extension', { headers: { unsupported: unsupported.join(', ') } });
      return;
    }
    const session = decideAsUas({ sessionExpires: sessionExpiresOf(rq), uacSupportsTimer: saysTimer(rq) }, minSe);
    if (session.kind === 'too-small') {
      // RFC 4028 §8.1: before any handler sees the call.
      respond(rq, 422, 'Session Interval Too Small', { headers: { 'min-se': String(session.minSe) } });
      return;
    }
    const type = headerText(rq, 'content-type');
    if (bodyOf(rq) !== undefined && type !== undefined && !/^application\/sdp\b/i.test(type)) {
      respond(rq, 415, 'Unsupported Media Type', { headers: { accept: 'application/sdp' } });
      return;
    }
    if (!inviteHandler) {
      respond(rq, 480, 'Temporarily Unavailable');
      return;
    }
    if (verifier) {
      const verdict = verifier.verify(
        'INVITE',
        rq.headers.authorization as AuthorizationHeader[] | undefined,
        typeof rq.uri === 'string' ? rq.uri : sip.stringifyUri(rq.uri ?? ''),
      );
      if (verdict === 'uri-mismatch') {
        // RFC 2617 §3.2.2.5: an answer for another resource is a bad request, not a credentials problem.
        logger.warn({ source: remote.address }, 'INVITE whose digest uri is not its Request-URI');
        respond(rq, 400, 'Bad Request');
        return;
      }
      if (verdict !== 'ok') {
        // 401 with a fresh challenge; the retried INVITE is a new transaction (RFC 3261 §22.2).
        if (verdict === 'bad' || verdict === 'replay')
          logger.warn({ source: remote.address, verdict }, 'INVITE with wrong or replayed digest credentials');
        respond(rq, 401, 'Unauthorized', {
          headers: { 'www-authenticate': [verifier.challenge(verdict === 'stale')] },
        });
        return;
      }
    }
    const branch = rq.headers.via?.[0]?.params.branch ?? '';
    const pendingKey = dialogKey(rq.headers['call-id'] ?? '', branch);
    let ringLimit: NodeJS.Timeout | undefined;
    const call = new InboundCall(ctx, logger, rq, remote, (c) => {
      clearTimeout(ringLimit);
      calls.delete(c);
      pendingInvites.delete(pendingKey);
    });
    calls.add(call);
    pendingInvites.set(pendingKey, call);
    ringLimit = setTimeout(() => {
      if (call.state === 'calling' || call.state === 'early') call.reject(480, 'Temporarily Unavailable');
    }, inboundRingLimitMs);
    call.trying();
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

  function onRequest(rq: SipMessage, remote: SipRemote): void {
    const method = rq.method ?? '';
    const callId = rq.headers['call-id'] ?? '';
    const toTag = rq.headers.to?.params.tag ?? undefined;
    if (method === 'ACK') {
      // ACK for a 2xx is its own transaction (RFC 3261 §17.1.1.3): route it to the dialog.
      if (toTag) dialogs.get(dialogKey(callId, toTag))?.onAck(rq);
      return;
    }
    if (method === 'CANCEL') {
      const call = pendingInvites.get(dialogKey(callId, rq.headers.via?.[0]?.params.branch ?? ''));
      if (call) call.onCancel(rq);
      else respond(rq, 481, 'Call/Transaction Does Not Exist');
      return;
    }
    if (String(rq.headers['max-forwards'] ?? '70').trim() === '0' && method !== 'OPTIONS') {
      respond(rq, 483, 'Too Many Hops');
      return;
    }
    if (toTag) {
      const dialog = dialogs.get(dialogKey(callId, toTag));
      if (dialog) dialog.handleRequest(rq, remote);
      else respond(rq, 481, 'Call/Transaction Does Not Exist');
      return;
    }
    switch (method) {
      case 'INVITE':
        onInboundInvite(rq, remote);
        return;
      case 'OPTIONS':
        respond(rq, 200, 'OK', { headers: { allow: ALLOW, accept: 'application/sdp', 'accept-language': 'en' } });
        return;
      case 'BYE':
        respond(rq, 481, 'Call/Transaction Does Not Exist');
        return;
      default:
        if (KNOWN_METHODS.has(method)) respond(rq, 405, 'Method Not Allowed', { headers: { allow: ALLOW } });
        else respond(rq, 501, 'Not Implemented', { headers: { allow: ALLOW } });
    }
  }

  const { result: stack, sockets } = withCapturedSockets(() =>
    sipPackage.create(stackOptions, (rq, remote) => {
      try {
        onRequest(rq, remote);
      } catch (err) {
        logger.error({ err, method: rq.method }, 'failed to handle SIP request');
        if (rq.method !== 'ACK') respond(rq, 500, 'Server Internal Error');
      }
    }),
  );
  // The package's own binds decide (issue 14: no probe-then-bind); a later socket error is logged.
  const bound = await Promise.allSettled(sockets.map(listening));
  for (const s of sockets) s.on('error', (err: Error) => logger.error({ err }, 'SIP socket error'));
  const failed = bound.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    try {
      stack.destroy();
    } catch {
      // a socket whose bind failed is not running; closing the others is what matters
    }
    const err = failed.reason as Error;
    throw new SipStackError(`cannot bind SIP on ${options.address}:${options.port}: ${err.message}`, { cause: err });
  }
  /** Send `m` to `flow` (a TLS next hop); a 503 the package makes up says why the connection failed. */
  const sendOverTls = (m: SipMessage, flow: { address: string; port: number }, callback?: (rs: SipMessage) => void) => {
    const via = stack.encodeFlowUri({ protocol: 'TLS', ...flow, local: { address: options.address, port: tlsPort } });
    m.headers.route = [{ uri: { ...via, params: { lr: null } }, params: {} }, ...(m.headers.route ?? [])];
    stack.send(
      m,
      callback &&
        ((rs) => {
          if (rs.status !== 503) return callback(rs);
          const received = received503s.take(rs);
          const why = received ? undefined : tlsClient?.failure(flow.address, flow.port);
          callback(received ?? (why ? { ...rs, reason: why } : rs));
        }),
    );
  };
  const routedStack: SipStack = {
    send: (m, callback) => {
      routeToOwnHost(stack, m, { address: options.address, port: ownPort });
      const hop = tlsClient ? tlsNextHop(stack, m) : undefined;
      if (!hop) {
        stack.send(m, callback && ((rs) => callback(rs.status === 503 ? (received503s.take(rs) ?? rs) : rs)));
        return;
      }
      if (net.isIP(hop.host)) {
        sendOverTls(m, { address: hop.host, port: hop.port ?? 5061 }, callback);
        return;
      }
      // A host name: resolved here (RFC 3263, hosts file included) and remembered for SNI and verification.
      const resolved = resolveTlsNextHop(hop, options.dns ?? systemDns).then(
        (next) => {
          tlsClient?.remember(next.address, next.port, next.name);
          sendOverTls(m, next, callback);
        },
        (err: Error) => {
          logger.warn({ host: hop.host, reason: err.message }, 'SIP TLS target not resolved');
          callback?.(sip.makeResponse(m, 503, `TLS failed: ${err.message}`));
        },
      );
      ctx.background(resolved, 'TLS next hop', logger);
    },
    destroy: () => stack.destroy(),
    hostname: () => stack.hostname(),
    encodeFlowUri: (flow) => stack.encodeFlowUri(flow),
  };
  logger.info({ address: options.address, port: options.port, transports: [...transports] }, 'SIP stack listening');

  const port: SipPort = {
    localContact: `sip:${contactUser}@${host}:${options.port}`,
    get activeCalls() {
      return calls.size;
    },
    placeCall(opts: PlaceCallOptions): OutboundSipCall {
      if (closing) throw new SipStackError('SIP port is closed');
      const call = new OutboundCall(ctx, logger, opts, (c) => calls.delete(c), cooldowns);
      calls.add(call);
      return call;
    },
    onInvite(handler: InboundInviteHandler): void {
      inviteHandler = handler;
    },
    probe(uri: string, timeoutMs: number): Promise<SipProbeResult> {
      return runProbe(uri, timeoutMs, clock, (outcome) => {
        if (closing) throw new SipStackError('SIP port is closed');
        const parsed = sip.parseUri(uri);
        if (!parsed) throw new SipStackError(`not a SIP URI: ${uri}`);
        // RFC 3261 §11.1: an OPTIONS outside any dialog, constructed like an INVITE.
        const rq: SipMessage = {
          method: 'OPTIONS',
          uri,
          headers: {
            via: [],
            to: { uri, params: {} },
            from: { uri: `sip:${contactUser}@${ctx.fromDomain}`, params: { tag: newTag() } },
            'call-id': newCallId(),
            cseq: { seq: 1, method: 'OPTIONS' },
            contact: [{ uri: ctx.contactFor(transportOf(parsed)), params: {} }],
            'max-forwards': 70,
            'user-agent': userAgent,
            accept: 'application/sdp',
          },
        };
        routedStack.send(rq, (rs) => {
          const status = rs.status ?? 0;
          if (status >= 200) outcome.final(status, rs.reason ?? '', !!rs.headers.to?.params.tag);
        });
      });
    },
    close(): Promise<void> {
      closing ??= (async () => {
        const hangUps = Promise.allSettled([...calls].map((c) => c.hangUp()));
        await Promise.race([hangUps, new Promise((r) => setTimeout(r, requestTimeoutMs).unref())]);
        await Promise.race([
          Promise.allSettled([...background]),
          new Promise((r) => setTimeout(r, requestTimeoutMs).unref()),
        ]);
        stack.destroy();
        logger.info('SIP stack closed');
      })();
      return closing;
    },
  };
  return port;
}
