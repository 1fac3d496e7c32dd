/**
 * Ports the call kinds share with the rest of the worker: what they report to the permission
 * ledger. The ledger's implementation is `ledgerOutcomes` in `core/permissions/service.ts`.
 */
import type { WhatsAppUser } from '#core/meta/webhook.ts';

/** Outcomes the permission ledger counts (connected calls per day, unanswered in a row). */
export interface BusinessCallOutcomes {
  connected(phoneNumberId: string, user: WhatsAppUser, callId?: string): Promise<void>;
  unanswered(phoneNumberId: string, user: WhatsAppUser, callId?: string): Promise<void>;
  /** A user-initiated call was answered: resets Meta's permission-request limits (§4.1). */
  userCallAnswered?(phoneNumberId: string, user: WhatsAppUser, callId?: string): Promise<void>;
  /** Meta refused a business-initiated `connect`: 138006 and 138012 correct the ledger (M-TRB). */
  metaRefused?(
    phoneNumberId: string,
    user: WhatsAppUser,
    refusal: { readonly code: number; readonly nextAllowedAt?: number },
  ): Promise<void>;
}
