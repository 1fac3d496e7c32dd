/**
 * `MetaSimulator`: a faithful local stand-in for Meta's WhatsApp Business Calling (Graph API + webhooks +
 * WebRTC relay), used by `npm start` (local mode) and by every test. See meta-calling-api.md §7.
 *
 * ```ts
 * const sim = await MetaSimulator.start({ accessToken, appSecret, verifyToken, webhookUrl, business });
 * const call = await sim.placeUserCall({ user: { waId: '447700900123', name: 'Zoë' } });
 * await call.waitFor('accepted', 10_000);
 * call.hangUp();
 * await sim.stop();
 * ```
 *
 * @module
 */
import pino, { type Logger } from 'pino';
import {
  CallEngine,
  type CallEngine as CallEngineT,
  type CallLogEntry,
  type CallRecord,
  type CallState,
  type CallTimers,
  type MediaFactory,
  type PlaceUserCallInput,
  type WebhookSink,
} from './graph/call-engine.ts';
import { realClock, type SimClock } from './graph/clock.ts';
import { MessagesService, type SimTemplate } from './graph/messages.ts';
import { PermissionEngine, type PermissionLimits, UserDirectory } from './graph/permissions.ts';
import { type RunningGraphServer, startGraphServer } from './graph/server.ts';
import { SettingsStore, type SettingsStoreOptions } from './graph/settings.ts';
import { RelayPeer } from './media/relay-peer.ts';
import { validateBusinessSdp } from './media/sdp-validation.ts';
import { type Delivery, type SendOptions, WebhookEmitter } from './webhooks/emitter.ts';
import { createIdGenerator, type SimBusiness, type SimUser } from './webhooks/payloads.ts';

export type { CallLogEntry, CallState, CallTimers, SimBusiness, SimUser };

/** Options of {@link MetaSimulator.start}. */
export interface MetaSimulatorOptions {
  /** Port for the Graph + control server; 0 (default) picks a free one. */
  port?: number;
  /** Bind address; loopback only. Default `127.0.0.1`. */
  host?: string;
  /** Graph version used in {@link MetaSimulator.graphUrl}. Any `vNN.N` ≥ v17.0 is accepted on requests. Default `v23.0`. */
  graphVersion?: string;
  /** The Bearer token the bridge must present (never logged). */
  accessToken: string;
  /** App secret used to sign webhooks (never logged). */
  appSecret: string;
  /** Verify token of the GET handshake. */
  verifyToken: string;
  /** The bridge's webhook callback URL. */
  webhookUrl: string;
  /** The simulated business number. Note BIC is refused (138013) for US/CA/EG/VN/NG numbers (§4.4). */
  business: SimBusiness;
  /** App id the access token belongs to (SIP servers are per app). Default `1000000000000001`. */
  appId?: string;
  /** Timer overrides (ms, each ≥ 1). Defaults are Meta's values; see {@link CallTimers}. */
  timers?: Partial<CallTimers>;
  /** Time source for timers and permission windows. Default: wall clock. */
  clock?: SimClock;
  /** pino logger; default silent. Secrets are never logged. */
  logger?: Logger;
  /** Run the GET `hub.*` handshake before the first delivery (§2.2). Default true. */
  verifyWebhook?: boolean;
  /** Emitter tuning: request timeout (Meta ~20 s) and retry back-off. */
  webhook?: { timeoutMs?: number; retryDelaysMs?: number[] };
  /** Max concurrent calls per number (138002). Meta: 1000. */
  maxConcurrentCalls?: number;
  /** BIC initiate attempts per rolling 24 h (138005). Meta: 10 000. */
  maxCallAttemptsPer24h?: number;
  /** `GET call_permissions` requests per second (613 beyond). Default 5 (M-REF; M-PERM says 100). */
  permissionsRateLimitPerSecond?: number;
  /** Sandbox/test-number permission limits (§4.1). */
  sandbox?: boolean;
  /** Individual permission limit overrides. */
  permissionLimits?: Partial<PermissionLimits>;
  /** The WABA's message templates (§3.4). Default: a `call_permission_request` (en) permission-request template. */
  templates?: readonly SimTemplate[];
  /** Initial calling settings (calling starts ENABLED in the simulator; Meta's default is DISABLED). */
  settings?: SettingsStoreOptions['initial'];
  /** Also refuse BIC for Turkish business numbers (older docs, §4.4). */
  blockTurkeyBic?: boolean;
  /** `status` of terminate webhooks for unanswered calls; default COMPLETED (see §2.7). */
  unansweredTerminateStatus?: 'COMPLETED' | 'FAILED';
  /** Namespace of the deterministic id generator (same namespace → same `wacid`/`wamid` sequence). */
  idNamespace?: string;
  /** IPv4 address of the relay's host candidate. Default `127.0.0.1`. */
  relayBindAddress?: string;
  /** Replace relay creation / SDP validation (default: the real {@link RelayPeer} and `validateBusinessSdp`). */
  media?: MediaFactory<RelayPeer>;
}

/** A simulated call as tests see it. */
export class SimCall {
  readonly #engine: CallEngineT<RelayPeer>;
  readonly #record: CallRecord<RelayPeer>;

  /** @internal created by {@link MetaSimulator} */
  constructor(engine: CallEngineT<RelayPeer>, record: CallRecord<RelayPeer>) {
    this.#engine = engine;
    this.#record = record;
  }

  /** The `wacid.…` id. */
  get id(): string {
    return this.#record.id;
  }

  /** `USER_INITIATED` or `BUSINESS_INITIATED`. */
  get direction(): CallRecord['direction'] {
    return this.#record.direction;
  }

  /** Current state. */
  get state(): CallState {
    return this.#record.state;
  }

  /** The WhatsApp user. */
  get user(): SimUser {
    return this.#record.user;
  }

  /** Meta's relay for this call (play tones, send DTMF, record, inspect media timestamps). */
  get relay(): RelayPeer {
    return this.#record.relay;
  }

  /** The engine record (timestamps, SDPs, end reason). */
  get record(): Readonly<CallRecord<RelayPeer>> {
    return this.#record;
  }

  /** Every action, webhook, transition and timer of this call. */
  get log(): readonly CallLogEntry[] {
    return this.#record.log;
  }

  /** Resolve when the call enters `state` (immediately if it already did); reject on end or timeout. */
  async waitFor(state: CallState, timeoutMs: number): Promise<SimCall> {
    await this.#engine.waitFor(this.#record.id, state, timeoutMs);
    return this;
  }

  /** The user hangs up; sends `terminate` (§2.7). */
  hangUp(): void {
    this.#engine.hangUp(this.#record.id);
  }
}

/** The simulated Meta. Create with {@link MetaSimulator.start}; always {@link MetaSimulator.stop}. */
export class MetaSimulator {
  /** `http://host:port` of the server (the `/_sim` control API lives under it). */
  readonly baseUrl: string;
  /** `baseUrl` + `/{graphVersion}`, the bridge's Graph base URL. */
  readonly graphUrl: string;
  /** The webhook emitter (holds, faults, deliveries). */
  readonly emitter: WebhookEmitter;
  /** Permission engine for the business number. */
  readonly permissions: PermissionEngine;
  /** Calling settings of the business number. */
  readonly settings: SettingsStore;
  /** Simulated users and their scripts. */
  readonly users: UserDirectory;
  /** Sent messages. */
  readonly messages: MessagesService;
  /** The call engine. */
  readonly engine: CallEngineT<RelayPeer>;
  /** The simulated business. */
  readonly business: SimBusiness;
  readonly #server: RunningGraphServer;
  readonly #log: Logger;
  readonly #wrappers = new Map<string, SimCall>();
  #stopping: Promise<void> | undefined;

  private constructor(parts: {
    baseUrl: string;
    graphUrl: string;
    emitter: WebhookEmitter;
    permissions: PermissionEngine;
    settings: SettingsStore;
    users: UserDirectory;
    messages: MessagesService;
    engine: CallEngineT<RelayPeer>;
    business: SimBusiness;
    server: RunningGraphServer;
    log: Logger;
  }) {
    this.baseUrl = parts.baseUrl;
    this.graphUrl = parts.graphUrl;
    this.emitter = parts.emitter;
    this.permissions = parts.permissions;
    this.settings = parts.settings;
    this.users = parts.users;
    this.messages = parts.messages;
    this.engine = parts.engine;
    this.business = parts.business;
    this.#server = parts.server;
    this.#log = parts.log;
  }

  /** Start the server and wire every component. */
  static async start(opts: MetaSimulatorOptions): Promise<MetaSimulator> {
    const host = opts.host ?? '127.0.0.1';
    if (!(host.startsWith('127.') || host === 'localhost' || host === '::1')) {
      throw new RangeError(`the simulator binds to loopback only (127.0.0.0/8, localhost, ::1), got ${host}`);
    }
    const graphVersion = opts.graphVersion ?? 'v23.0';
    const m = /^v(\d+)\.\d+$/.exec(graphVersion);
    if (!m || Number(m[1]) < 17)
      throw new RangeError(`graphVersion must look like v23.0 and be ≥ v17.0 (got ${graphVersion})`);
    const base = opts.logger ?? pino({ level: 'silent' });
    const logger = base.child({ component: 'meta-simulator' });
    const clock = opts.clock ?? realClock;
    const emitter = new WebhookEmitter({
      url: opts.webhookUrl,
      appSecret: opts.appSecret,
      verifyToken: opts.verifyToken,
      ...(opts.webhook?.timeoutMs !== undefined ? { timeoutMs: opts.webhook.timeoutMs } : {}),
      ...(opts.webhook?.retryDelaysMs !== undefined ? { retryDelaysMs: opts.webhook.retryDelaysMs } : {}),
      logger: base.child({ component: 'webhook-emitter' }),
      skipVerify: opts.verifyWebhook === false,
    });
    let verifying: Promise<unknown> | undefined;
    const webhooks: WebhookSink = {
      deliver: async (changes, sendOpts?: SendOptions): Promise<Delivery | undefined> => {
        try {
          if (emitter.closed) return undefined;
          if (!emitter.isVerified) {
            // The handshake runs lazily before the first delivery, so the bridge may start after the simulator.
            verifying ??= emitter.verify().finally(() => {
              verifying = undefined;
            });
            await verifying;
            if (!emitter.isVerified) {
              logger.error(
                { url: opts.webhookUrl },
                'webhook verification failed; delivery dropped (Meta would not deliver to an unverified callback)',
              );
              return undefined;
            }
          }
          return await emitter.send(changes, sendOpts);
        } catch (err) {
          if (!emitter.closed) logger.error({ err }, 'webhook send failed');
          return undefined;
        }
      },
    };
    const permissions = new PermissionEngine({
      clock,
      ...(opts.sandbox !== undefined ? { sandbox: opts.sandbox } : {}),
      ...(opts.permissionLimits ? { limits: opts.permissionLimits } : {}),
    });
    const settings = new SettingsStore({ clock, ...(opts.settings ? { initial: opts.settings } : {}) });
    const users = new UserDirectory();
    const ids = createIdGenerator(opts.idNamespace ?? `sim-${process.pid}-${Date.now()}`);
    const relayLogger = base;
    const media: MediaFactory<RelayPeer> = opts.media ?? {
      createPeer: ({ allowG711, keyExchange }) =>
        new RelayPeer({
          bindAddress: opts.relayBindAddress ?? '127.0.0.1',
          allowG711,
          keyExchange,
          logger: relayLogger,
        }),
      validateSdp: (sdp, v) => validateBusinessSdp(sdp, v),
    };
    const engine = new CallEngine<RelayPeer>({
      business: opts.business,
      clock,
      ...(opts.timers ? { timers: opts.timers } : {}),
      media,
      webhooks,
      permissions,
      settings,
      users,
      ids,
      logger: base,
      ...(opts.maxConcurrentCalls !== undefined ? { maxConcurrentCalls: opts.maxConcurrentCalls } : {}),
      ...(opts.maxCallAttemptsPer24h !== undefined ? { maxCallAttemptsPer24h: opts.maxCallAttemptsPer24h } : {}),
      ...(opts.blockTurkeyBic !== undefined ? { blockTurkeyBic: opts.blockTurkeyBic } : {}),
      ...(opts.unansweredTerminateStatus ? { unansweredTerminateStatus: opts.unansweredTerminateStatus } : {}),
    });
    const messages = new MessagesService({
      business: opts.business,
      clock,
      ids,
      users,
      permissions,
      webhooks,
      logger: base.child({ component: 'messages' }),
      ...(opts.blockTurkeyBic !== undefined ? { blockTurkeyBic: opts.blockTurkeyBic } : {}),
      ...(opts.templates !== undefined ? { templates: opts.templates } : {}),
    });
    const server = await startGraphServer<RelayPeer>({
      host,
      port: opts.port ?? 0,
      business: opts.business,
      accessToken: opts.accessToken,
      appId: opts.appId ?? '1000000000000001',
      engine,
      permissions,
      settings,
      messages,
      users,
      emitter,
      webhooks,
      logger: base,
      permissionsRateLimitPerSecond: opts.permissionsRateLimitPerSecond ?? 5,
    });
    const baseUrl = `http://${host.includes(':') ? `[${host}]` : host}:${server.port}`;
    logger.info({ baseUrl, graphVersion, pnid: opts.business.phoneNumberId }, 'meta simulator listening');
    return new MetaSimulator({
      baseUrl,
      graphUrl: `${baseUrl}/${graphVersion}`,
      emitter,
      permissions,
      settings,
      users,
      messages,
      engine,
      business: opts.business,
      server,
      log: logger,
    });
  }

  #wrap(record: CallRecord<RelayPeer>): SimCall {
    let w = this.#wrappers.get(record.id);
    if (!w) {
      w = new SimCall(this.engine, record);
      this.#wrappers.set(record.id, w);
    }
    return w;
  }

  /** A WhatsApp user calls the business: `connect` webhook with the relay's offer (§2.6). */
  async placeUserCall(opts: PlaceUserCallInput): Promise<SimCall> {
    return this.#wrap(await this.engine.placeUserCall(opts));
  }

  /** Every call (both directions), oldest first. */
  get calls(): SimCall[] {
    return this.engine.list().map((r) => this.#wrap(r));
  }

  /** A call by id (e.g. the id a business-initiated `connect` returned). */
  getCall(id: string): SimCall | undefined {
    const r = this.engine.get(id);
    return r ? this.#wrap(r) : undefined;
  }

  /** Stop: end calls silently, close every relay, timer, the emitter and the server. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.messages.close();
      await this.engine.close();
      this.emitter.close();
      await this.#server.close();
      this.#log.info('meta simulator stopped');
    })();
    return this.#stopping;
  }
}
