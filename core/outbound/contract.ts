/**
 * Contract between the business-initiated call rules (control plane) and the media worker, which
 * checks the same rules for calls a PBX starts with an INVITE. Implemented in `rules.ts`.
 */
import type { WhatsAppUser } from '../meta/webhook.ts';

/** Why a business-initiated call may not be placed. Stable strings: API clients and SIP Reason headers carry them. */
export type RefusalReason =
  | 'no-permission'
  | 'permission-expired'
  | 'permission-revoked'
  | 'unknown-user'
  | 'business-country-blocked'
  | 'sanctioned-user'
  | 'sanctioned-business'
  | 'daily-limit'
  | 'over-capacity'
  | 'number-not-configured'
  | 'invalid-request';

/** A refusal with what each edge needs to answer. */
export interface Refusal {
  readonly allowed: false;
  readonly reason: RefusalReason;
  /** Human-readable detail. */
  readonly detail: string;
  /** HTTP status for the control API (403, 404, 409, 422, 429). */
  readonly httpStatus: number;
  /** SIP status for a PBX INVITE (403, 404, 480, 486, 503). */
  readonly sipStatus: number;
  /** When the call becomes possible again, ms since the epoch (daily limit). */
  readonly retryAt?: number;
}

/** What the rules need to decide. */
export interface BusinessCallRequest {
  /** The business number's Meta phone number id. */
  readonly phoneNumberId: string;
  /** The WhatsApp user: phone digits and/or BSUID. */
  readonly user: WhatsAppUser;
}

/** An allowed call and the permission it rests on. */
export interface Allowance {
  readonly allowed: true;
  readonly permission: 'temporary' | 'permanent';
  /** Expiry of a temporary permission, ms. */
  readonly expiresAt?: number;
}

/** Decides whether a business-initiated call may be placed now. */
export type CheckBusinessCall = (request: BusinessCallRequest) => Promise<Allowance | Refusal>;
