/**
 * The simulator's HTTP surface: Meta's Graph API subset under `/{version}/…` (meta-calling-api.md §3, §7 item 1)
 * and a control API under `/_sim/…` for tests and the CLI (no Meta auth, plain JSON).
 *
 * Graph (Bearer token or `?access_token=`; any version ≥ v17.0):
 * - `POST /{v}/{pnid}/calls` — connect / pre_accept / accept / reject / terminate
 * - `GET  /{v}/{pnid}/call_permissions?user_wa_id=|recipient=` — rate-limited (613)
 * - `POST /{v}/{pnid}/messages` — call_permission_request, voice_call, template (and plain types)
 * - `GET|POST /{v}/{pnid}/settings` — `?include_sip_credentials=true` on GET
 *
 * Control (`/_sim`, JSON in and out; errors are `{ error: { message, code? } }`):
 * - `GET  /_sim/health`
 * - `POST /_sim/calls` `{ from | waId, userId?, parentUserId?, name?, username?, deeplinkPayload?, ctaPayload?,
 *   omitDirection?, faults?: { connect?, terminate? } }` → 201 call summary (409 + Meta code when refused)
 * - `GET  /_sim/calls`, `GET /_sim/calls/{id}` (summary + history + SDPs + relay state + log)
 * - `POST /_sim/calls/{id}/hangup`, `/dtmf` `{ digits, durationMs? }`, `/tone` `{ hz, dbfs } | { silence: true }`,
 *   `/wait` `{ state, timeoutMs? }`
 * - `GET  /_sim/users`, `POST /_sim/users/{id}/script` `{ permissionReply?, permissionReplyDelayMs?, bicAnswer?,
 *   bicAnswerDelayMs?, acceptedStatus?: { delayMs?, duplicates?, lost? }, uncallable? }` (`acceptedStatus`: faults
 *   of the ACCEPTED status of the user's business-initiated calls: late, duplicated or lost),
 *   `GET|POST /_sim/users/{id}/permission` `{ status }`,
 *   `POST /_sim/users/{id}/messages` `{ text }` (the user texts the business: a `messages` webhook, and the 24 h
 *   customer-service window opens, PERM26/BTN26)
 * - `GET|POST /_sim/templates` `{ name, language, category?, components }` (the WABA's message templates, §3.4)
 * - `POST /_sim/calls/{id}/fail` `{ code, details? }`: the user's WhatsApp client fails; Meta terminates the call
 *   FAILED with `errors[{code}]` (138019 set-up, 138020 relay connection, 138021/138022/138023 media; M-TRB)
 * - `GET|POST /_sim/number/faults` `{ testAllowList?: string[] | null, paymentIssue?: boolean,
 *   callingPaused?: 'business-initiated' | 'user-initiated' | 'all' | null }`: the number's account faults
 *   (131030 not on a test number's allow list, 131044 no payment method, 138014 calling paused)
 * - `GET  /_sim/messages`, `GET /_sim/webhooks`
 *
 * @module
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { WebhookEmitter } from '../webhooks/emitter.ts';
import { accountUpdate, type SimBusiness, type SimUser, type WebhookChange } from '../webhooks/payloads.ts';
import {
  type CallEngine,
  type CallRecord,
  type CallState,
  type NumberFaults,
  SimCallRefusedError,
  type SimMediaPeer,
  SimTimeoutError,
  UnknownCallError,
  type WebhookSink,
} from './call-engine.ts';
import {
  callingNotEnabled,
  GraphError,
  invalidAccessToken,
  invalidParameter,
  newFbtraceId,
  permissionsRateLimited,
  unknownObject,
} from './errors.ts';
import type { MessagesService } from './messages.ts';
import {
  type AcceptedStatusScript,
  isBsuid,
  type PermissionEngine,
  type UserDirectory,
  type UserScript,
} from './permissions.ts';
import type { SettingsStore } from './settings.ts';

/** Relay operations the control API exposes (the media helper's `RelayPeer` has them all). */
export interface ControllablePeer extends SimMediaPeer {
  sendDtmf(digits: string, opts?: { durationMs?: number; gapMs?: number }): Promise<void>;
  playTone(hz: number, dbfs: number): void;
  playSilence(): void;
  readonly receivedDigits: string;
  readonly connectionState: string;
  stats(): object;
  /** What the simulated user hears now (dominant Hz and dBFS of the last second); absent in fakes. */
  heard?(): object;
  /** Epoch ms of the first audio the relay sent the business (the user's first audio); absent in fakes. */
  readonly firstUserMediaSentAt?: number | undefined;
}

/** Everything the server routes to. */
export interface GraphServerContext<P extends ControllablePeer> {
  business: SimBusiness;
  accessToken: string;
  /** App id the token belongs to (SIP servers are per app, §3.6). */
  appId: string;
  engine: CallEngine<P>;
  permissions: PermissionEngine;
  settings: SettingsStore;
  messages: MessagesService;
  users: UserDirectory;
  emitter: WebhookEmitter;
  /** Where out-of-call webhooks (`account_update`) go; without it `POST /_sim/account_update` answers 501. */
  webhooks?: WebhookSink;
  logger: Logger;
  /** `GET call_permissions` requests per 1 s window per number (613 beyond). Meta: 5 (M-REF) or 100 (M-PERM). */
  permissionsRateLimitPerSecond: number;
}

/** Options of {@link startGraphServer}. */
export interface GraphServerOptions<P extends ControllablePeer> extends GraphServerContext<P> {
  host: string;
  /** 0 = any free port. */
  port: number;
}

/** A running server. */
export interface RunningGraphServer {
  server: Server;
  port: number;
  host: string;
  close(): Promise<void>;
}

/** Thrown for malformed `/_sim` requests. */
export class SimControlError extends Error {
  /** HTTP status to answer with. */
  readonly status: number;
  /** @param status - HTTP status; @param message - explanation */
  constructor(status: number, message: string) {
    super(message);
    this.name = 'SimControlError';
    this.status = status;
  }
}

const MAX_BODY = 1024 * 1024;
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new SimControlError(413, 'body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=UTF-8',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** Summary of a call for `GET /_sim/calls` (no SDP, no log). */
export function callSummary(call: CallRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: call.id,
    direction: call.direction,
    state: call.state,
    user: call.user,
    createdAt: new Date(call.createdAt).toISOString(),
  };
  if (call.startedAt !== undefined) out.startedAt = new Date(call.startedAt).toISOString();
  if (call.endedAt !== undefined) out.endedAt = new Date(call.endedAt).toISOString();
  if (call.endReason !== undefined) out.endReason = call.endReason;
  if (call.terminateStatus !== undefined) out.terminateStatus = call.terminateStatus;
  if (call.bizOpaqueCallbackData !== undefined) out.bizOpaqueCallbackData = call.bizOpaqueCallbackData;
  return out;
}

/** Full detail of a call for `GET /_sim/calls/{id}`: summary + SDPs + relay state + log. */
export function callDetail(call: CallRecord<ControllablePeer>): Record<string, unknown> {
  return {
    ...callSummary(call),
    history: call.history,
    ...(call.direction === 'USER_INITIATED' ? { caller: callerView(call) } : {}),
    metaSdp: call.metaSdp,
    businessSdp: call.businessSdp,
    relay: {
      connectionState: call.relay.connectionState,
      receivedDigits: call.relay.receivedDigits,
      firstBusinessMediaAt: call.relay.firstBusinessMediaAt,
      lastBusinessMediaAt: call.relay.lastBusinessMediaAt,
      firstUserMediaSentAt: call.relay.firstUserMediaSentAt,
      stats: call.relay.stats(),
      ...(call.relay.heard ? { heard: call.relay.heard() } : {}),
    },
    log: call.log,
  };
}

/**
 * What the WhatsApp caller's client saw of a user-initiated call: what it took as the answer (the `accept`, or the
 * business's first media packet when that came first, M-FAQ), when, and the engine-clock times to compare it with.
 */
function callerView(call: CallRecord<ControllablePeer>): Record<string, unknown> {
  const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
  return {
    answeredBy: call.answeredBy,
    answeredAt: iso(call.callerAnsweredAt),
    firstBusinessMediaAt: iso(call.firstBusinessMediaAt),
    acceptedAt: iso(call.acceptedAt),
    acceptRespondedAt: iso(call.acceptRespondedAt),
    businessPacketsBeforeAccept: call.businessPacketsBeforeAccept,
  };
}

const CALL_STATES: readonly CallState[] = [
  'offered',
  'pre_accepted',
  'answered_by_media',
  'dialing',
  'ringing',
  'accepted',
  'ended',
];

const VIOLATION_TYPES = [
  'LOW_BUSINESS_INITIATED_CALLING_QUALITY',
  'LOW_USER_INITIATED_CALLING_QUALITY',
  'USER_INITIATED_CALLS_LOW_PICKUP_RATE',
] as const;
const RESTRICTION_TYPES = [
  'RESTRICTED_BUSINESS_INITIATED_CALLING',
  'RESTRICTED_USER_INITIATED_CALLING',
  'RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN',
] as const;

/**
 * `POST /_sim/account_update` body → the webhook change: `{event:"ACCOUNT_VIOLATION", violationType}` or
 * `{event:"ACCOUNT_RESTRICTION", restrictions:[{type, expiration (unix s)}]}` (§2.10).
 */
function accountUpdateFromControl(business: SimBusiness, body: Record<string, unknown>): WebhookChange {
  if (body.event === 'ACCOUNT_VIOLATION') {
    const t = body.violationType;
    if (!(VIOLATION_TYPES as readonly unknown[]).includes(t)) {
      throw new SimControlError(400, `violationType must be one of ${VIOLATION_TYPES.join(', ')}`);
    }
    return accountUpdate({
      business,
      event: 'ACCOUNT_VIOLATION',
      violationType: t as (typeof VIOLATION_TYPES)[number],
    });
  }
  if (body.event === 'ACCOUNT_RESTRICTION') {
    const list = body.restrictions;
    if (
      !Array.isArray(list) ||
      list.length === 0 ||
      !list.every(
        (r) =>
          isObj(r) &&
          (RESTRICTION_TYPES as readonly unknown[]).includes(r.type) &&
          typeof r.expiration === 'number' &&
          Number.isInteger(r.expiration),
      )
    ) {
      throw new SimControlError(
        400,
        `restrictions must be a non-empty array of {type: ${RESTRICTION_TYPES.join('|')}, expiration: unix seconds}`,
      );
    }
    return accountUpdate({
      business,
      event: 'ACCOUNT_RESTRICTION',
      restrictions: list as Array<{ type: (typeof RESTRICTION_TYPES)[number]; expiration: number }>,
    });
  }
  throw new SimControlError(400, 'event must be ACCOUNT_VIOLATION or ACCOUNT_RESTRICTION');
}

/** Start the Graph + control server. */
export async function startGraphServer<P extends ControllablePeer>(
  opts: GraphServerOptions<P>,
): Promise<RunningGraphServer> {
  const log = opts.logger.child({ component: 'graph-server' });
  const permWindow: number[] = [];

  const graph = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const method = req.method ?? 'GET';
    const m = /^\/v(\d+)\.(\d+)\/([^/]+)(?:\/([^/]+))?\/?$/.exec(url.pathname);
    if (!m)
      throw unknownObject(
        url.pathname.split('/').filter(Boolean).slice(1).join('/') || url.pathname,
        method === 'POST' ? 'POST' : 'GET',
      );
    // Calling needs Graph v17.0 or later (§3).
    if (Number(m[1]) < 17)
      throw invalidParameter(`Graph API version v${m[1]}.${m[2]} is not supported for Calling; use v17.0 or later.`);
    const header = req.headers.authorization;
    const token = header?.startsWith('Bearer ')
      ? header.slice(7).trim()
      : (url.searchParams.get('access_token') ?? undefined);
    if (!token) throw invalidAccessToken(true);
    if (token !== opts.accessToken) throw invalidAccessToken(false);
    const objectId = decodeURIComponent(m[3] ?? '');
    const edge = m[4];
    if (objectId !== opts.business.phoneNumberId || edge === undefined)
      throw unknownObject(objectId, method === 'POST' ? 'POST' : 'GET');

    let body: unknown;
    if (method === 'POST') {
      const raw = await readBody(req);
      try {
        body = raw.trim() === '' ? {} : JSON.parse(raw);
      } catch {
        throw invalidParameter('Request body is not valid JSON');
      }
    }
    if (edge === 'calls' && method === 'POST') {
      sendJson(res, 200, await opts.engine.handleAction(body));
      return;
    }
    if (edge === 'call_permissions' && method === 'GET') {
      const now = performance.now();
      while (permWindow.length > 0 && now - (permWindow[0] ?? 0) >= 1000) permWindow.shift();
      if (permWindow.length >= opts.permissionsRateLimitPerSecond) {
        throw permissionsRateLimited(opts.permissionsRateLimitPerSecond);
      }
      permWindow.push(now);
      // REF26 lists "Calling is not enabled for the business phone number" among this endpoint's errors.
      if (!opts.settings.callingEnabled) throw callingNotEnabled();
      const waId = url.searchParams.get('user_wa_id');
      const recipient = url.searchParams.get('recipient');
      if (!waId && !recipient) throw invalidParameter('The parameter user_wa_id is required.');
      if (!waId && !isBsuid(recipient)) {
        throw invalidParameter(`Invalid parameter recipient: '${recipient}' is not a business-scoped user ID.`);
      }
      if (waId && !/^\+?\d{6,15}$/.test(waId)) {
        throw invalidParameter(`Invalid parameter user_wa_id: '${waId}' is not a valid WhatsApp phone number.`);
      }
      const user = opts.users.resolve(waId ? { to: waId.replace(/^\+/, '') } : { recipient: recipient ?? '' });
      sendJson(res, 200, opts.permissions.describe(user.waId ?? user.userId ?? ''));
      return;
    }
    if (edge === 'messages' && method === 'POST') {
      sendJson(res, 200, opts.messages.handle(body));
      return;
    }
    if (edge === 'settings' && method === 'GET') {
      sendJson(
        res,
        200,
        opts.settings.view({ includeSipCredentials: url.searchParams.get('include_sip_credentials') === 'true' }),
      );
      return;
    }
    if (edge === 'settings' && method === 'POST') {
      opts.settings.update(body, { appId: opts.appId });
      sendJson(res, 200, { success: true });
      return;
    }
    throw unknownObject(objectId, method === 'POST' ? 'POST' : 'GET');
  };

  const control = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const method = req.method ?? 'GET';
    const parts = url.pathname.split('/').filter(Boolean).slice(1).map(decodeURIComponent);
    let body: Record<string, unknown> = {};
    if (method === 'POST') {
      const raw = await readBody(req);
      if (raw.trim() !== '') {
        let parsed: unknown;
        try {
          parsed = JSON.parse(raw);
        } catch {
          throw new SimControlError(400, 'body is not valid JSON');
        }
        if (!isObj(parsed)) throw new SimControlError(400, 'body must be a JSON object');
        body = parsed;
      }
    }
    const str = (k: string): string | undefined => {
      const v = body[k];
      if (v === undefined) return undefined;
      if (typeof v !== 'string') throw new SimControlError(400, `${k} must be a string`);
      return v;
    };
    const [a, id, verb] = parts;
    const requireCall = (): CallRecord<P> => {
      const call = id ? opts.engine.get(id) : undefined;
      if (!call) throw new SimControlError(404, `unknown call ${id ?? ''}`);
      return call;
    };

    if (a === 'health' && method === 'GET') {
      sendJson(res, 200, { ok: true, business: opts.business, activeCalls: opts.engine.active().length });
    } else if (a === 'calls' && id === undefined && method === 'GET') {
      sendJson(res, 200, { calls: opts.engine.list().map(callSummary) });
    } else if (a === 'calls' && id === undefined && method === 'POST') {
      const user: SimUser = {};
      const waId = str('from') ?? str('waId');
      if (waId !== undefined) user.waId = waId.replace(/^\+/, '');
      const userId = str('userId');
      if (userId !== undefined) user.userId = userId;
      const parentUserId = str('parentUserId');
      if (parentUserId !== undefined) user.parentUserId = parentUserId;
      const name = str('name');
      if (name !== undefined) user.name = name;
      const username = str('username');
      if (username !== undefined) user.username = username;
      if (!user.waId && !user.userId)
        throw new SimControlError(400, 'from (wa_id digits) or userId (BSUID) is required');
      const deeplinkPayload = str('deeplinkPayload');
      const ctaPayload = str('ctaPayload');
      const faults = body.faults;
      if (faults !== undefined && !isObj(faults)) throw new SimControlError(400, 'faults must be an object');
      const call = await opts.engine.placeUserCall({
        user,
        ...(deeplinkPayload !== undefined ? { deeplinkPayload } : {}),
        ...(ctaPayload !== undefined ? { ctaPayload } : {}),
        ...(body.omitDirection === true ? { omitDirection: true } : {}),
        ...(faults ? { faults: faults as NonNullable<Parameters<CallEngine<P>['placeUserCall']>[0]['faults']> } : {}),
      });
      sendJson(res, 201, callSummary(call));
    } else if (a === 'calls' && id !== undefined && verb === undefined && method === 'GET') {
      sendJson(res, 200, callDetail(requireCall()));
    } else if (a === 'calls' && verb === 'hangup' && method === 'POST') {
      const call = requireCall();
      if (call.state === 'ended') throw new SimControlError(409, `call ${call.id} has already ended`);
      opts.engine.hangUp(call.id);
      sendJson(res, 200, callSummary(call));
    } else if (a === 'calls' && verb === 'fail' && method === 'POST') {
      const call = requireCall();
      const code = body.code;
      if (typeof code !== 'number' || !Number.isInteger(code))
        throw new SimControlError(400, 'code must be an integer');
      const details = str('details');
      opts.engine.failCall(call.id, code, details);
      sendJson(res, 200, callSummary(call));
    } else if (a === 'number' && id === 'faults' && method === 'GET') {
      sendJson(res, 200, { faults: opts.engine.numberFaults });
    } else if (a === 'number' && id === 'faults' && method === 'POST') {
      sendJson(res, 200, { faults: opts.engine.setNumberFaults(validateNumberFaults(body)) });
    } else if (a === 'calls' && verb === 'dtmf' && method === 'POST') {
      const call = requireCall();
      const digits = str('digits');
      if (!digits || !/^[0-9*#A-Da-d]+$/.test(digits)) throw new SimControlError(400, 'digits must match [0-9*#A-D]+');
      if (call.state === 'ended') throw new SimControlError(409, `call ${call.id} has ended`);
      const durationMs = typeof body.durationMs === 'number' ? body.durationMs : undefined;
      // Resolves once sent; digits queue behind the maiden-packet rule, so do not block the HTTP answer on it.
      call.relay.sendDtmf(digits, durationMs !== undefined ? { durationMs } : {}).catch((err: unknown) => {
        log.warn({ callId: call.id, err }, 'dtmf send failed');
      });
      sendJson(res, 202, { id: call.id, queued: digits });
    } else if (a === 'calls' && verb === 'tone' && method === 'POST') {
      const call = requireCall();
      if (body.silence === true) {
        call.relay.playSilence();
        sendJson(res, 200, { id: call.id, playing: 'silence' });
        return;
      }
      const hz = body.hz;
      const dbfs = body.dbfs ?? -20;
      if (typeof hz !== 'number' || hz <= 0 || hz > 20000 || typeof dbfs !== 'number' || dbfs > 0) {
        throw new SimControlError(400, 'hz must be in (0, 20000] and dbfs ≤ 0');
      }
      call.relay.playTone(hz, dbfs);
      sendJson(res, 200, { id: call.id, playing: { hz, dbfs } });
    } else if (a === 'calls' && verb === 'wait' && method === 'POST') {
      const call = requireCall();
      const state = str('state') as CallState | undefined;
      if (!state || !CALL_STATES.includes(state))
        throw new SimControlError(400, `state must be one of ${CALL_STATES.join(', ')}`);
      const timeoutMs = typeof body.timeoutMs === 'number' ? body.timeoutMs : 10_000;
      await opts.engine.waitFor(call.id, state, timeoutMs);
      sendJson(res, 200, callSummary(call));
    } else if (a === 'users' && id === undefined && method === 'GET') {
      sendJson(res, 200, { users: opts.users.list() });
    } else if (a === 'users' && id !== undefined && verb === 'script' && method === 'POST') {
      sendJson(res, 200, { user: id, script: opts.users.setScript(id, validateScript(body)) });
    } else if (a === 'users' && id !== undefined && verb === 'permission' && method === 'GET') {
      sendJson(res, 200, opts.permissions.describe(userKeyOf(opts.users, id)));
    } else if (a === 'users' && id !== undefined && verb === 'permission' && method === 'POST') {
      const key = userKeyOf(opts.users, id);
      const status = body.status;
      if (status === 'temporary' || status === 'permanent')
        opts.permissions.grant(key, { permanent: status === 'permanent' });
      else if (status === 'no_permission') opts.permissions.revoke(key);
      else throw new SimControlError(400, 'status must be temporary, permanent or no_permission');
      sendJson(res, 200, opts.permissions.describe(key));
    } else if (a === 'users' && id !== undefined && verb === 'messages' && method === 'POST') {
      const text = str('text');
      if (!text) throw new SimControlError(400, 'text is required');
      const key = userKeyOf(opts.users, id);
      const user = opts.users.resolve(/^\d+$/.test(key) ? { to: key } : { recipient: key }) as SimUser;
      const messageId = await opts.messages.userSendsText(user, text);
      sendJson(res, 201, { user: key, messageId, serviceWindowOpen: opts.permissions.serviceWindowOpen(key) });
    } else if (a === 'templates' && id === undefined && method === 'GET') {
      sendJson(res, 200, { templates: opts.messages.templates });
    } else if (a === 'templates' && id === undefined && method === 'POST') {
      const name = str('name');
      const language = str('language');
      const components = body.components;
      const category = body.category ?? 'UTILITY';
      if (!name || !language || !Array.isArray(components) || components.some((c) => typeof c?.type !== 'string'))
        throw new SimControlError(400, 'name, language and components [{ type, … }] are required');
      if (category !== 'MARKETING' && category !== 'UTILITY' && category !== 'AUTHENTICATION')
        throw new SimControlError(400, 'category must be MARKETING, UTILITY or AUTHENTICATION');
      opts.messages.registerTemplate({ name, language, category, components });
      sendJson(res, 201, { templates: opts.messages.templates });
    } else if (a === 'account_update' && id === undefined && method === 'POST') {
      // Meta's quality warning / restriction (§2.10, §4.6): sent out of band, not tied to a call.
      if (!opts.webhooks) throw new SimControlError(501, 'this simulator has no webhook sink');
      const change = accountUpdateFromControl(opts.business, body);
      const delivery = await opts.webhooks.deliver([change]);
      sendJson(res, 200, { sent: change.value, delivered: delivery?.outcome ?? 'not sent' });
    } else if (a === 'messages' && method === 'GET') {
      sendJson(res, 200, { messages: opts.messages.sent });
    } else if (a === 'webhooks' && method === 'GET') {
      sendJson(res, 200, {
        deliveries: opts.emitter.deliveries.map((d) => ({
          id: d.id,
          outcome: d.outcome,
          fields: d.changes.map((c) => c.field),
          attempts: d.attempts.length,
          createdAt: new Date(d.createdAt).toISOString(),
        })),
      });
    } else {
      throw new SimControlError(404, `no route ${method} ${url.pathname}`);
    }
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://sim.local');
    const isControl = url.pathname.startsWith('/_sim/');
    const started = performance.now();
    const handler = isControl ? control(req, res, url) : graph(req, res, url);
    handler
      .catch((err: unknown) => {
        if (err instanceof GraphError) {
          const trace = newFbtraceId();
          sendJson(res, err.status, err.toBody(trace), { 'x-fb-trace-id': trace });
          log.info({ method: req.method, path: url.pathname, code: err.code, status: err.status }, 'graph error');
          return;
        }
        if (err instanceof SimControlError) {
          sendJson(res, err.status, { error: { message: err.message } });
          return;
        }
        if (err instanceof SimCallRefusedError) {
          sendJson(res, 409, { error: { message: err.message, code: err.code } });
          return;
        }
        if (err instanceof UnknownCallError) {
          sendJson(res, 404, { error: { message: err.message } });
          return;
        }
        if (err instanceof SimTimeoutError) {
          sendJson(res, 408, { error: { message: err.message } });
          return;
        }
        log.error({ err, method: req.method, path: url.pathname }, 'unhandled error');
        if (isControl) sendJson(res, 500, { error: { message: err instanceof Error ? err.message : String(err) } });
        else {
          const ge = new GraphError(1, 'An unknown error occurred', {
            status: 500,
            title: 'An unknown error occurred',
          });
          sendJson(res, 500, ge.toBody());
        }
      })
      .finally(() => {
        // Never log the URL query (it may carry access_token).
        log.debug(
          {
            method: req.method,
            path: url.pathname,
            status: res.statusCode,
            ms: Math.round(performance.now() - started),
          },
          'request',
        );
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    server,
    port,
    host: opts.host,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      return closing;
    },
  };
}

function userKeyOf(users: UserDirectory, ref: string): string {
  const u = users.find(ref)?.identity ?? users.upsert(/^\d+$/.test(ref) ? { waId: ref } : { userId: ref });
  return u.waId ?? u.userId ?? ref;
}

function validateScript(body: Record<string, unknown>): Partial<UserScript> {
  const out: Partial<UserScript> = {};
  const pr = body.permissionReply;
  if (pr !== undefined) {
    if (pr !== 'accept_temporary' && pr !== 'accept_permanent' && pr !== 'reject' && pr !== 'none') {
      throw new SimControlError(400, 'permissionReply must be accept_temporary, accept_permanent, reject or none');
    }
    out.permissionReply = pr;
  }
  const bic = body.bicAnswer;
  if (bic !== undefined) {
    if (bic !== 'accept' && bic !== 'reject' && bic !== 'no_answer') {
      throw new SimControlError(400, 'bicAnswer must be accept, reject or no_answer');
    }
    out.bicAnswer = bic;
  }
  for (const k of ['permissionReplyDelayMs', 'bicAnswerDelayMs'] as const) {
    const v = body[k];
    if (v !== undefined) {
      if (typeof v !== 'number' || v < 0) throw new SimControlError(400, `${k} must be a number ≥ 0`);
      out[k] = v;
    }
  }
  if (body.acceptedStatus !== undefined) out.acceptedStatus = validateAcceptedStatus(body.acceptedStatus);
  if (body.uncallable !== undefined) {
    if (typeof body.uncallable !== 'boolean') throw new SimControlError(400, 'uncallable must be a boolean');
    out.uncallable = body.uncallable;
  }
  return out;
}

/** `POST /_sim/number/faults` body; `null` clears a member. */
function validateNumberFaults(body: Record<string, unknown>): NumberFaults {
  const out: Record<string, unknown> = {};
  if ('testAllowList' in body) {
    const v = body.testAllowList;
    if (v === null) out.testAllowList = undefined;
    else if (Array.isArray(v) && v.every((n) => typeof n === 'string' && /^\d{6,15}$/.test(n))) out.testAllowList = v;
    else throw new SimControlError(400, 'testAllowList must be a list of phone numbers (digits) or null');
  }
  if ('paymentIssue' in body) {
    if (typeof body.paymentIssue !== 'boolean') throw new SimControlError(400, 'paymentIssue must be a boolean');
    out.paymentIssue = body.paymentIssue;
  }
  if ('callingPaused' in body) {
    const v = body.callingPaused;
    if (v === null) out.callingPaused = undefined;
    else if (v === 'business-initiated' || v === 'user-initiated' || v === 'all') out.callingPaused = v;
    else throw new SimControlError(400, 'callingPaused must be business-initiated, user-initiated, all or null');
  }
  return out as NumberFaults;
}

function validateAcceptedStatus(v: unknown): AcceptedStatusScript {
  if (!isObj(v)) throw new SimControlError(400, 'acceptedStatus must be an object { delayMs?, duplicates?, lost? }');
  const out: AcceptedStatusScript = {};
  for (const k of ['delayMs', 'duplicates'] as const) {
    const n = v[k];
    if (n === undefined) continue;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0)
      throw new SimControlError(400, `acceptedStatus.${k} must be an integer ≥ 0`);
    out[k] = n;
  }
  if (v.lost !== undefined) {
    if (typeof v.lost !== 'boolean') throw new SimControlError(400, 'acceptedStatus.lost must be a boolean');
    out.lost = v.lost;
  }
  return out;
}
