/**
 * The in-process adapter's TLS client: SNI and server certificate verification by host name
 * (issue 14 item 4; RFC 5922 §7.2, RFC 6066 §3).
 *
 * Why this wraps the `sip` package: `sip` 0.0.6 opens every client connection with
 * `tls.connect(port, resolvedIp, options.tls)` — one options object for all connections and the
 * resolved address instead of the name, so it sends no SNI and Node checks the certificate against
 * the IP (only certificates with IP SANs passed). Its own name resolution (`dns.resolve4`) also
 * skips the hosts file. The narrowest point that can be given per-connection options is that
 * `tls.connect` call, so {@link loadSipPackage} loads a private instance of the package whose
 * `require('tls')` is a façade with our {@link SipTlsClient.connect}; the package is otherwise
 * unchanged, and nothing process-wide is patched. The adapter resolves a TLS next hop named by
 * host name itself (`dns.lookup`, hosts file included), remembers the name for that address and
 * port, and routes the request to the address through the package's own flow mechanism.
 */
import { lookup, resolveSrv } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { dirname } from 'node:path';
import tls from 'node:tls';
import vm from 'node:vm';
import type { Logger } from 'pino';
import type sip from 'sip';

/** Options of {@link SipTlsClient}. */
export interface SipTlsClientOptions {
  /** Our certificate and key, presented if a server asks for a client certificate. */
  readonly key: string | Buffer;
  readonly cert: string | Buffer;
  /** CAs trusted in addition to the default ones (Node's bundle and `NODE_EXTRA_CA_CERTS`). */
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
  /** Verify the server's certificate chain and name. @default true */
  readonly verify?: boolean;
  /** Also receives what the package itself prints (at `debug`). */
  readonly logger: Logger;
}

/** The DNS queries a TLS next hop needs (tests give their own). */
export interface SipTlsDns {
  /** An address of `host` as the system resolves it (hosts file included). */
  lookup(host: string): Promise<string>;
  resolveSrv(name: string): Promise<readonly { name: string; port: number; priority: number; weight: number }[]>;
}

/** The system's resolver. */
export const systemDns: SipTlsDns = {
  lookup: async (host) => (await lookup(host)).address,
  resolveSrv: (name) => resolveSrv(name),
};

/** Where a TLS request goes, and the name its certificate must carry. */
export interface TlsNextHop {
  readonly address: string;
  readonly port: number;
  /** The host of the URI: SNI and the identity checked (RFC 5922 §4.1), also when SRV points elsewhere. */
  readonly name: string;
}

/**
 * RFC 3263 §4.2 for a TLS next hop named by host name: an explicit port is used as is; without one
 * the `_sips._tcp` SRV records (RFC 5630), then the older `_sip._tls` ones, pick the server (lowest
 * priority, then highest weight: one server, no weighted lottery), else the name itself on 5061.
 * Only the first address is tried.
 * @throws Error naming the host when it does not resolve.
 */
export async function resolveTlsNextHop(hop: { host: string; port?: number }, dns: SipTlsDns): Promise<TlsNextHop> {
  let target = hop.host;
  let port = hop.port;
  if (port === undefined) {
    for (const service of ['_sips._tcp', '_sip._tls']) {
      const records = await dns.resolveSrv(`${service}.${hop.host}`).catch(() => []);
      const best = [...records].sort((a, b) => a.priority - b.priority || b.weight - a.weight)[0];
      if (best) {
        target = best.name;
        port = best.port;
        break;
      }
    }
  }
  try {
    return { address: await dns.lookup(target), port: port ?? 5061, name: hop.host };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new Error(`cannot resolve ${target}${target === hop.host ? '' : ` (SRV of ${hop.host})`}: ${code}`, {
      cause: err,
    });
  }
}

const addressKey = (address: string, port: number): string => `${address}:${port}`;

/**
 * Opens the TLS connections of one SIP stack: `servername` is the target's host name (never an
 * IP literal, RFC 6066 §3), the chain is checked against the default CAs plus the configured ones,
 * and Node's `checkServerIdentity` matches the name (or the IP of an IP-literal target). The last
 * failure per address is kept so the adapter can say why a target failed.
 */
export class SipTlsClient {
  readonly #names = new Map<string, string>();
  readonly #failures = new Map<string, string>();
  readonly #options: SipTlsClientOptions;
  /** The stack's logger. */
  readonly logger: Logger;
  readonly #ca: string[] | undefined;

  constructor(options: SipTlsClientOptions) {
    this.#options = options;
    this.logger = options.logger;
    const extra = options.ca === undefined ? [] : Array.isArray(options.ca) ? options.ca : [options.ca];
    this.#ca =
      extra.length === 0
        ? undefined
        : [...tls.getCACertificates('default'), ...extra.map((c: string | Buffer) => c.toString())];
  }

  /** The host name a connection to `address:port` is verified against (set before the request goes out). */
  remember(address: string, port: number, name: string): void {
    this.#names.set(addressKey(address, port), name);
  }

  /** Why the last connection to `address:port` failed, if it did. */
  failure(address: string, port: number): string | undefined {
    return this.#failures.get(addressKey(address, port));
  }

  /** The package's `tls.connect(port, host, options, callback)`, with our per-connection options. */
  connect(port: number, host: string, _packageOptions: unknown, callback?: () => void): tls.TLSSocket {
    const key = addressKey(host, port);
    const name = net.isIP(host) ? this.#names.get(key) : host;
    const peer = name === undefined ? key : `${name} (${key})`;
    const socket = tls.connect(
      {
        host,
        port,
        key: this.#options.key,
        cert: this.#options.cert,
        ...(this.#ca ? { ca: this.#ca } : {}),
        rejectUnauthorized: this.#options.verify !== false,
        // RFC 6066 §3: SNI carries a host name, never an IP literal.
        ...(name === undefined ? {} : { servername: name }),
      },
      callback,
    );
    socket.once('secureConnect', () => {
      this.#failures.delete(key);
      this.#options.logger.debug({ peer, authorized: socket.authorized }, 'SIP TLS connection up');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const reason = `TLS failed: ${peer}: ${err.code ?? 'error'}: ${err.message}`;
      this.#failures.set(key, reason);
      this.#options.logger.warn({ peer, code: err.code, reason: err.message }, 'SIP TLS connection failed');
    });
    return socket;
  }
}

/**
 * A private instance of the `sip` package whose TLS client connections go through `client`
 * (see the header of this file for why).
 */
export function loadSipPackage(client: SipTlsClient): typeof sip {
  const require = createRequire(import.meta.url);
  const file = require.resolve('sip');
  const packageRequire = createRequire(file);
  const façade = Object.create(tls, {
    connect: { value: (...args: Parameters<SipTlsClient['connect']>) => client.connect(...args) },
  }) as typeof tls;
  // The package prints transport errors with console.log ("err: …"); here they go to the logger.
  const quiet = {
    ...console,
    log: (...args: unknown[]) => client.logger.debug({ printed: args.map(String).join(' ') }, 'sip package'),
  };
  const load = vm.compileFunction(
    readFileSync(file, 'utf8'),
    ['exports', 'require', 'module', '__filename', '__dirname', 'console'],
    {
      filename: file,
    },
  );
  const module: { exports: unknown } = { exports: {} };
  load(
    module.exports,
    (id: string) => (id === 'tls' ? façade : packageRequire(id)),
    module,
    file,
    dirname(file),
    quiet,
  );
  return module.exports as typeof sip;
}
