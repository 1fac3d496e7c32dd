/**
 * The two {@link SipPort} adapters under one test interface, so the SIP contract suite runs the
 * same stories on both: `inprocess` (the `sip` package, `sip-adapter.ts`) and `drachtio`
 * (drachtio-srf over a drachtio-server the helper starts, `sip/drachtio/`).
 */
import type { Logger } from 'pino';
import type { Clock } from '#core/clock.ts';
import { type DrachtioServer, startDrachtioServer } from '#test/helpers/drachtio-server.ts';
import type { DigestCredentials } from '#worker/sip/digest-server.ts';
import { createDrachtioSipPort } from '#worker/sip/drachtio/drachtio-adapter.ts';
import { createSipPort } from '#worker/sip/sip-adapter.ts';
import type { SipPort } from '#worker/sip/sip-port.ts';
import { freePort } from './far-end.ts';

/** Which adapter a suite runs on. */
export type AdapterName = 'inprocess' | 'drachtio';

/** Options both adapters understand. */
export interface AdapterOptions {
  readonly address?: string;
  readonly port?: number;
  readonly requestTimeoutMs?: number;
  readonly ackTimeoutMs?: number;
  /** In-process only (drachtio-server keeps sofia-sip's T1). */
  readonly t1Ms?: number;
  readonly inboundAuth?: DigestCredentials;
  readonly logger?: Logger;
  /**
   * Time source of the adapter's target cooldowns, digest nonces and session timers (tests pass a
   * ManualClock). drachtio-server runs the timers of sessions we place itself, on its own clock;
   * the drachtio adapter's clock watches the expiry of sessions placed to us.
   */
  readonly clock?: Clock;
  /** Our Min-SE (RFC 4028 §5); below 90 only so drachtio's real-time stories stay short. */
  readonly minSessionExpiresS?: number;
}

/** A started adapter: the port plus where its SIP listens. */
export interface StartedAdapter {
  readonly name: AdapterName;
  readonly port: SipPort;
  /** SIP address and port the far end sends requests to. */
  readonly address: string;
  readonly sipPort: number;
  /** The drachtio-server behind it (drachtio only). */
  readonly server: DrachtioServer | undefined;
  close(): Promise<void>;
}

/** Start adapter `name` on loopback (127.0.0.1 unless `address`). */
export async function startAdapter(name: AdapterName, options: AdapterOptions = {}): Promise<StartedAdapter> {
  const address = options.address ?? '127.0.0.1';
  if (name === 'inprocess') {
    const sipPort = options.port ?? (await freePort([address]));
    const port = await createSipPort({
      address,
      port: sipPort,
      transports: ['udp', 'tcp'],
      ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
      ...(options.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: options.ackTimeoutMs }),
      ...(options.t1Ms === undefined ? {} : { t1Ms: options.t1Ms }),
      ...(options.inboundAuth === undefined ? {} : { inboundAuth: options.inboundAuth }),
      ...(options.logger === undefined ? {} : { logger: options.logger }),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.minSessionExpiresS === undefined ? {} : { minSessionExpiresS: options.minSessionExpiresS }),
    });
    return { name, port, address, sipPort, server: undefined, close: () => port.close() };
  }
  const server = await startDrachtioServer(address, options.port);
  try {
    const port = await createDrachtioSipPort({
      host: server.host,
      port: server.port,
      secret: server.secret,
      ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
      ...(options.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: options.ackTimeoutMs }),
      ...(options.inboundAuth === undefined ? {} : { inboundAuth: options.inboundAuth }),
      ...(options.logger === undefined ? {} : { logger: options.logger }),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.minSessionExpiresS === undefined ? {} : { minSessionExpiresS: options.minSessionExpiresS }),
    });
    return {
      name,
      port,
      address,
      sipPort: server.sipPort,
      server,
      close: async () => {
        await port.close();
        await server.stop();
      },
    };
  } catch (err) {
    await server.stop();
    throw err;
  }
}
