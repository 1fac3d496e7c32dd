/**
 * Minimal type declarations for the untyped npm `sip` package (kirm, 0.0.6) and its digest
 * module. Only what `sip-adapter.ts` uses is declared; nothing here is re-exported through the
 * port, so the rest of the worker never sees these shapes.
 *
 * Message objects are plain JSON-ish structures: header names are lower case, `to`/`from` are
 * parsed name-addrs, `via`/`contact`/`route`/`record-route` are arrays, unknown headers are
 * strings (repeated headers joined with `,`). Bodies are *binary* (latin1) strings: the package
 * computes Content-Length with `string.length` and writes with `Buffer.from(s, 'binary')`.
 */
declare module 'sip' {
  /** A parsed SIP URI (RFC 3261 §19.1). `port` is `NaN` when absent. */
  export interface SipUri {
    schema?: string;
    user?: string;
    password?: string;
    host: string;
    port?: number;
    params: Record<string, string | null>;
    headers?: Record<string, string>;
  }

  /** A name-addr / addr-spec with header parameters (`tag`, `lr`, …). */
  export interface SipNameAddr {
    name?: string;
    uri: string | SipUri;
    params: Record<string, string | null>;
  }

  /** One Via entry. The transport layer fills `host`, `port`, `protocol` when sending. */
  export interface SipVia {
    version?: string;
    protocol?: string;
    host?: string;
    port?: number;
    params: Record<string, string | null>;
  }

  export interface SipCSeq {
    seq: number;
    method: string;
  }

  /** A Digest challenge or credentials header, values still quoted as on the wire. */
  export type SipAuthHeader = Record<string, string | undefined> & { scheme?: string };

  export interface SipHeaders {
    via?: SipVia[];
    to?: SipNameAddr;
    from?: SipNameAddr;
    'call-id'?: string;
    cseq?: SipCSeq;
    contact?: SipNameAddr[] | '*';
    route?: SipNameAddr[];
    'record-route'?: SipNameAddr[];
    'www-authenticate'?: SipAuthHeader[];
    'proxy-authenticate'?: SipAuthHeader[];
    authorization?: SipAuthHeader[];
    'proxy-authorization'?: SipAuthHeader[];
    'content-length'?: number;
    'max-forwards'?: number | string;
    [name: string]: unknown;
  }

  /** A request (`method` set) or a response (`status` set). */
  export interface SipMessage {
    method?: string;
    uri?: string | SipUri;
    status?: number;
    reason?: string;
    version?: string;
    headers: SipHeaders;
    content?: string;
  }

  /** Where a message came from. `protocol` is upper case: `UDP`, `TCP`, `TLS`, `WS`. */
  export interface SipRemote {
    protocol: string;
    address: string;
    port: number;
    local?: { address: string; port: number };
  }

  export interface SipStackOptions {
    address?: string;
    port?: number;
    publicAddress?: string;
    hostname?: string;
    udp?: boolean;
    tcp?: boolean;
    tls?: import('node:tls').TlsOptions;
    tls_port?: number;
    rport?: boolean;
    'max-forwards'?: number;
    logger?: {
      send?: (m: SipMessage, target: unknown) => void;
      recv?: (m: SipMessage, remote: SipRemote) => void;
      error?: (e: unknown) => void;
    };
  }

  export interface SipStack {
    /**
     * Requests: resolves the next hop (top Route, else Request-URI), runs a client transaction and
     * calls `callback` for every response, including locally generated 408 (Timer B/F) and 503
     * (transport error). ACK is sent statelessly. Responses: handed to the matching server
     * transaction (matched by top Via branch, Call-ID and CSeq method).
     */
    send(m: SipMessage, callback?: (rs: SipMessage) => void): void;
    destroy(): void;
    hostname(): string;
    /**
     * A URI on this stack's own host naming `flow`. As the next hop (top Route) the package takes
     * it off the message and sends to `flow.address:flow.port` over `flow.protocol` (`open`, so a
     * new TCP/TLS connection is made when needed).
     */
    encodeFlowUri(flow: SipFlow): SipUri;
  }

  /** A transport flow as the package's flow tokens carry it. */
  export interface SipFlow {
    protocol: 'UDP' | 'TCP' | 'TLS';
    address: string;
    port: number;
    local: { address: string; port: number };
  }

  interface SipModule {
    create(options: SipStackOptions, onRequest: (rq: SipMessage, remote: SipRemote) => void): SipStack;
    makeResponse(
      rq: SipMessage,
      status: number,
      reason?: string,
      extension?: { headers?: Record<string, unknown>; content?: string },
    ): SipMessage;
    parseUri(s: string | SipUri): SipUri | undefined;
    stringifyUri(u: string | SipUri): string;
    stringify(m: SipMessage): string;
    parse(s: string | Buffer): SipMessage | undefined;
    generateBranch(): string;
    copyMessage(m: SipMessage, deep?: boolean): SipMessage;
  }

  const sip: SipModule;
  export default sip;
}

declare module 'sip/digest.js' {
  import type { SipMessage } from 'sip';

  /** Client or server digest context; mutated by the functions below. */
  export interface DigestContext {
    realm?: string;
    nonce?: string;
    qop?: string;
    nc?: number;
    proxy?: boolean;
    [k: string]: unknown;
  }

  interface DigestModule {
    /** Adds a WWW-/Proxy-Authenticate challenge (407 → proxy) to `rs`; returns it. */
    challenge(ctx: DigestContext, rs: SipMessage): SipMessage;
    /** Checks the Authorization/Proxy-Authorization of `rq` against `ctx`. */
    authenticateRequest(ctx: DigestContext, rq: SipMessage, creds: { user: string; password: string }): boolean;
    /** Adds Authorization/Proxy-Authorization to `rq` answering the challenge in `rs` (RFC 2617). */
    signRequest(
      ctx: DigestContext | null,
      rq: SipMessage,
      rs: SipMessage | undefined,
      creds: { user: string; password: string; realm?: string },
    ): DigestContext | null;
  }

  const digest: DigestModule;
  export default digest;
}
