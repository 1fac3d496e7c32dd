/**
 * Simulated `POST /{PHONE_NUMBER_ID}/messages` for the message types the calling flows use:
 * `interactive.call_permission_request`, `interactive.voice_call` and `template` (meta-calling-api.md §3.4, §3.5).
 * A permission request triggers the recipient's scripted `call_permission_reply` webhook (§2.9).
 * Other message types are accepted and answered with a `wamid` so a bridge that also sends text works.
 *
 * @module
 */
import type { Logger } from 'pino';
import {
  type IdGenerator,
  permissionReply,
  type SimBusiness,
  type SimUser,
  userTextMessage,
} from '../webhooks/payloads.ts';
import type { WebhookSink } from './call-engine.ts';
import { bicBlockedCountry } from './call-engine.ts';
import type { SimClock } from './clock.ts';
import { bicUnavailable, GraphError, invalidParameter, serviceWindowClosed } from './errors.ts';
import { isBsuid, type PermissionEngine, type UserDirectory, userKey } from './permissions.ts';

/** One message the simulator accepted (for inspection via `/_sim/messages`). */
export interface SentMessage {
  id: string;
  to: string;
  type: string;
  /** `call_permission_request`, `voice_call`, `template:<name>`, or the plain type. */
  kind: string;
  at: number;
  body: Record<string, unknown>;
}

/** Options of {@link MessagesService}. */
export interface MessagesServiceOptions {
  business: SimBusiness;
  clock: SimClock;
  ids: IdGenerator;
  users: UserDirectory;
  permissions: PermissionEngine;
  webhooks: WebhookSink;
  logger: Logger;
  /** BIC country gating also blocks permission requests (§4.4). */
  blockTurkeyBic?: boolean;
  /**
   * Message templates of the WABA, as `POST /{WABA_ID}/message_templates` created them (§3.4). Meta knows a
   * permission-request template by its `call_permission_request` component, not by its name. Default:
   * {@link DEFAULT_TEMPLATES}.
   */
  templates?: readonly SimTemplate[];
}

/** A message template as created on the WABA (§3.4): name, language and components. */
export interface SimTemplate {
  name: string;
  language: string;
  category: 'MARKETING' | 'UTILITY' | 'AUTHENTICATION';
  /** `HEADER`/`BODY`/`FOOTER`/`BUTTONS` components and, for a permission request, `{ type: 'call_permission_request' }`. */
  components: ReadonlyArray<{ type: string; text?: string } & Record<string, unknown>>;
}

/**
 * The templates a simulated WABA starts with: Meta's sample permission-request template (§3.4) under the name the
 * bridge's local mode configures (`call_permission_request`, language `en`), with no body parameters.
 */
export const DEFAULT_TEMPLATES: readonly SimTemplate[] = [
  {
    name: 'call_permission_request',
    language: 'en',
    category: 'UTILITY',
    components: [
      { type: 'BODY', text: 'We would like to call you to help with your request.' },
      { type: 'call_permission_request' },
    ],
  },
];

/** Whether a template carries the `call_permission_request` component (§3.4). */
export function isPermissionTemplate(t: SimTemplate): boolean {
  return t.components.some((c) => c.type.toLowerCase() === 'call_permission_request');
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Handles message sends and the scripted user replies. */
export class MessagesService {
  /** Every accepted message, oldest first. */
  readonly sent: SentMessage[] = [];
  readonly #o: MessagesServiceOptions;
  readonly #timers = new Set<ReturnType<SimClock['setTimeout']>>();
  readonly #templates = new Map<string, SimTemplate>();
  #closed = false;

  /** @param opts - see {@link MessagesServiceOptions} */
  constructor(opts: MessagesServiceOptions) {
    this.#o = opts;
    for (const t of opts.templates ?? DEFAULT_TEMPLATES) this.registerTemplate(t);
  }

  /** Creates (or replaces) a template on the WABA, as `POST /{WABA_ID}/message_templates` does (§3.4). */
  registerTemplate(template: SimTemplate): void {
    this.#templates.set(`${template.name}/${template.language}`, template);
  }

  /** The WABA's templates. */
  get templates(): readonly SimTemplate[] {
    return [...this.#templates.values()];
  }

  /**
   * The user sends the business a text message: a `messages` webhook, and the 24 h customer-service window opens
   * (PERM26, BTN26). Returns the message's `wamid`.
   */
  async userSendsText(user: SimUser, text: string): Promise<string> {
    const key = userKey(user);
    this.#o.permissions.openServiceWindow(key);
    const id = this.#o.ids.messageId();
    await this.#o.webhooks.deliver([
      userTextMessage({
        business: this.#o.business,
        user,
        text,
        messageId: id,
        timestamp: Math.floor(this.#o.clock.now() / 1000),
      }),
    ]);
    return id;
  }

  /** Handle a `POST /{pnid}/messages` body; returns Meta's message response or throws {@link GraphError}. */
  handle(body: unknown): Record<string, unknown> {
    if (!isObj(body)) throw invalidParameter('Request body must be a JSON object');
    if (body.messaging_product !== 'whatsapp') {
      throw invalidParameter(
        body.messaging_product === undefined
          ? 'The parameter messaging_product is required.'
          : `Invalid value for messaging_product: '${String(body.messaging_product)}'. Expected 'whatsapp'.`,
      );
    }
    const to = body.to;
    const recipient = body.recipient;
    if (to === undefined && recipient === undefined) throw invalidParameter('The parameter to is required.');
    if (to !== undefined && (typeof to !== 'string' || !/^\+?\d{6,15}$/.test(to))) {
      throw invalidParameter(`Invalid parameter to: '${String(to)}'.`);
    }
    // BSUID-F: a BSUID is a country prefix, a dot and up to 128 alphanumerics.
    if (recipient !== undefined && !isBsuid(recipient))
      throw invalidParameter(`Invalid parameter recipient: '${String(recipient)}' is not a business-scoped user ID.`);
    if (typeof body.type !== 'string') throw invalidParameter('The parameter type is required.');
    const input = (typeof to === 'string' ? to : (recipient as string)).replace(/^\+/, '');
    const user = this.#o.users.resolve(
      typeof to === 'string' ? { to: to.replace(/^\+/, '') } : { recipient: recipient as string },
    ) as SimUser;
    const key = userKey(user);

    let kind = body.type;
    let permissionRequest = false;
    if (body.type === 'interactive') {
      const it = body.interactive;
      if (!isObj(it) || typeof it.type !== 'string')
        throw invalidParameter('The parameter interactive.type is required.');
      kind = it.type;
      if (it.type === 'call_permission_request') {
        const action = it.action;
        if (!isObj(action) || action.name !== 'call_permission_request') {
          throw invalidParameter("interactive.action.name must be 'call_permission_request'.");
        }
        // No header or footer allowed on the free-form request (§3.4).
        if (it.header !== undefined || it.footer !== undefined) {
          throw invalidParameter('call_permission_request messages cannot have a header or footer.');
        }
        permissionRequest = true;
      } else if (it.type === 'voice_call') {
        this.#validateVoiceCall(it);
      }
      // Free-form permission requests and call buttons only inside the customer-service window (PERM26, BTN26).
      if (
        (it.type === 'call_permission_request' || it.type === 'voice_call') &&
        !this.#o.permissions.serviceWindowOpen(key)
      ) {
        throw serviceWindowClosed(it.type);
      }
    } else if (body.type === 'template') {
      const t = body.template;
      if (!isObj(t) || typeof t.name !== 'string' || t.name === '') {
        throw invalidParameter('The parameter template.name is required.');
      }
      if (!isObj(t.language) || typeof t.language.code !== 'string') {
        throw invalidParameter('The parameter template.language.code is required.');
      }
      kind = `template:${t.name}`;
      const template = this.#template(t.name, t.language.code, t.components);
      // Meta knows a permission-request template by its component, not its name (§3.4).
      permissionRequest = isPermissionTemplate(template);
    }

    if (permissionRequest) {
      // BIC-unavailable countries cannot request permission either (§4.4).
      const blocked = bicBlockedCountry(this.#o.business.displayPhoneNumber, this.#o.blockTurkeyBic ?? false);
      if (blocked) throw bicUnavailable(blocked);
      this.#o.permissions.assertCanRequest(key);
      this.#o.permissions.recordRequest(key);
    }
    const id = this.#o.ids.messageId();
    this.sent.push({ id, to: input, type: body.type, kind, at: this.#o.clock.now(), body });
    this.#o.logger.info({ messageId: id, kind, user: key }, 'message accepted');
    if (permissionRequest) this.#scheduleReply(user, key, id);
    return {
      messaging_product: 'whatsapp',
      contacts: [{ input, wa_id: user.waId ?? input }],
      messages: [{ id }],
    };
  }

  /**
   * The registered template a send names, with its body parameters checked against the template's placeholders:
   * an unknown name/language is 132001, a parameter count mismatch 132000 (Cloud API's template errors).
   */
  #template(name: string, language: string, components: unknown): SimTemplate {
    const template = this.#templates.get(`${name}/${language}`);
    if (!template) {
      throw new GraphError(132001, `template name (${name}) does not exist in ${language}`);
    }
    const bodyText = template.components.find((c) => c.type === 'BODY')?.text ?? '';
    const expected = new Set(bodyText.match(/\{\{\d+\}\}/g) ?? []).size;
    const sentBody = Array.isArray(components)
      ? components.find((c): c is Record<string, unknown> => isObj(c) && c.type === 'body')
      : undefined;
    const given = Array.isArray(sentBody?.parameters) ? sentBody.parameters.length : 0;
    if (given !== expected) {
      throw new GraphError(
        132000,
        `body: number of localizable_params (${given}) does not match the expected number of params (${expected})`,
      );
    }
    return template;
  }

  #validateVoiceCall(it: Record<string, unknown>): void {
    const action = it.action;
    if (!isObj(action) || action.name !== 'voice_call')
      throw invalidParameter("interactive.action.name must be 'voice_call'.");
    const p = action.parameters;
    if (p === undefined) return;
    if (!isObj(p)) throw invalidParameter('interactive.action.parameters must be an object.');
    if (p.display_text !== undefined && (typeof p.display_text !== 'string' || p.display_text.length > 20)) {
      throw invalidParameter('display_text must be a string of at most 20 characters.');
    }
    if (
      p.ttl_minutes !== undefined &&
      (typeof p.ttl_minutes !== 'number' ||
        !Number.isInteger(p.ttl_minutes) ||
        p.ttl_minutes < 1 ||
        p.ttl_minutes > 43200)
    ) {
      throw invalidParameter('ttl_minutes must be an integer between 1 and 43200.');
    }
    if (p.payload !== undefined && (typeof p.payload !== 'string' || p.payload.length > 512)) {
      throw invalidParameter('payload must be a string of at most 512 characters.');
    }
  }

  /** The user's scripted answer to a permission request (§2.9 scenario table). */
  #scheduleReply(user: SimUser, key: string, wamid: string): void {
    const script = this.#o.users.script(key);
    if (script.permissionReply === 'none') return;
    const t = this.#o.clock.setTimeout(
      () => {
        this.#timers.delete(t);
        if (this.#closed) return;
        const now = this.#o.clock.now();
        const base = {
          business: this.#o.business,
          user,
          source: 'user_action' as const,
          contextId: wamid,
          timestamp: Math.floor(now / 1000),
        };
        if (script.permissionReply === 'reject') {
          this.#o.permissions.revoke(key);
          void this.#o.webhooks.deliver([permissionReply({ ...base, response: 'reject' })]);
          return;
        }
        const permanent = script.permissionReply === 'accept_permanent';
        const { expiresAt } = this.#o.permissions.grant(key, { permanent });
        void this.#o.webhooks.deliver([
          permissionReply({
            ...base,
            response: 'accept',
            isPermanent: permanent,
            ...(expiresAt !== undefined ? { expirationTimestamp: Math.floor(expiresAt / 1000) } : {}),
          }),
        ]);
      },
      Math.max(1, script.permissionReplyDelayMs),
    );
    this.#timers.add(t);
  }

  /** Cancel pending scripted replies. */
  close(): void {
    this.#closed = true;
    for (const t of this.#timers) this.#o.clock.clearTimeout(t);
    this.#timers.clear();
  }
}
