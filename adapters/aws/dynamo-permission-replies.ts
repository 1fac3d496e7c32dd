/**
 * Stores `call_permission_reply` webhooks as they arrive, deduplicated by Meta's message id, for
 * the permission ledger (business-initiated calls) to build on.
 *
 * Keyed like the ledger (D4, Corrections §5): the BSUID is the stable identity, the phone an alias.
 * Meta sends the BSUID on every webhook since Mar 31 2026 but the phone only under conditions, so a
 * user seen with phone and BSUID may later be seen with the BSUID alone; their replies must still
 * be found. Layout, in the permissions table next to the ledger:
 * - `LINE#<pnid>#USER#<BSUID, else phone>` / `REPLY#<messageId>`: the reply;
 * - `LINE#<pnid>#USER#<phone>` / `REPLIES`: `{ userKey: <BSUID> }`, written when a reply carried both,
 *   so a phone-only lookup finds the BSUID's replies.
 * Replies stored by phone before this layout stay where they are (pre-1.0: no migration): a lookup
 * with the phone reads them directly, and one with only the BSUID reaches them through the
 * ledger's `ALIAS` item (BSUID → phone), written once Meta showed both.
 */
import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { StoreError } from '#core/errors.ts';
import type { PermissionReply, WhatsAppUser } from '#core/meta/webhook.ts';
import { ledgerKeyOf } from '#core/permissions/service.ts';

/** Durable log of permission replies. */
export interface PermissionReplies {
  /** Records a reply once; returns false for a duplicate. */
  record(reply: PermissionReply, receivedAt: number): Promise<boolean>;
  /**
   * Replies of one user of one business number, oldest first, whichever of the user's identifiers
   * they arrived with. Replies recorded for another BSUID (a recycled phone number) are left out.
   */
  list(phoneNumberId: string, user: Pick<WhatsAppUser, 'phone' | 'userId'>): Promise<PermissionReply[]>;
}

const pairKey = (phoneNumberId: string, userKey: string) => `LINE#${phoneNumberId}#USER#${userKey}`;
const nonEmpty = (v: string | undefined) => (v === undefined || v.trim() === '' ? undefined : v);

/** DynamoDB implementation; see the module comment for the layout. */
export class DynamoPermissionReplies implements PermissionReplies {
  readonly #doc: DynamoDBDocumentClient;

  constructor(
    client: DynamoDBClient,
    private readonly table: string,
  ) {
    this.#doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  }

  async record(reply: PermissionReply, receivedAt: number): Promise<boolean> {
    const key = ledgerKeyOf(reply.user);
    try {
      await this.#doc.send(
        new PutCommand({
          TableName: this.table,
          Item: { pk: pairKey(reply.line.phoneNumberId, key), sk: `REPLY#${reply.messageId}`, ...reply, receivedAt },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw new StoreError('recordPermissionReply', { cause: error });
    }
    const phone = nonEmpty(reply.user.phone);
    if (phone !== undefined && phone !== key) {
      // Idempotent; a recycled phone number moves it to its new owner's BSUID.
      await this.#doc
        .send(
          new PutCommand({
            TableName: this.table,
            Item: { pk: pairKey(reply.line.phoneNumberId, phone), sk: 'REPLIES', userKey: key },
          }),
        )
        .catch((error: unknown) => {
          throw new StoreError('recordPermissionReplyAlias', { cause: error });
        });
    }
    return true;
  }

  async list(phoneNumberId: string, user: Pick<WhatsAppUser, 'phone' | 'userId'>): Promise<PermissionReply[]> {
    const userId = nonEmpty(user.userId);
    const direct = [userId, nonEmpty(user.phone)].filter((k): k is string => k !== undefined);
    const keys = new Set(direct);
    for (const k of direct) {
      for (const sk of ['REPLIES', 'ALIAS']) {
        const target = await this.#aliasTarget(phoneNumberId, k, sk);
        if (target !== undefined) keys.add(target);
      }
    }
    const byId = new Map<string, PermissionReply>();
    for (const key of keys) {
      const out = await this.#doc.send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :r)',
          ExpressionAttributeValues: { ':pk': pairKey(phoneNumberId, key), ':r': 'REPLY#' },
          ConsistentRead: true,
        }),
      );
      for (const { pk: _p, sk: _s, receivedAt: _r, ...item } of out.Items ?? []) {
        const reply = item as PermissionReply;
        const stored = nonEmpty(reply.user.userId);
        if (userId !== undefined && stored !== undefined && stored !== userId) continue; // another person
        byId.set(reply.messageId, reply);
      }
    }
    return [...byId.values()].sort((a, b) => a.timestamp - b.timestamp || a.messageId.localeCompare(b.messageId));
  }

  /** The key an alias item (`REPLIES` of this store, `ALIAS` of the ledger) under `key` points at. */
  async #aliasTarget(phoneNumberId: string, key: string, sk: string): Promise<string | undefined> {
    const out = await this.#doc.send(
      new GetCommand({ TableName: this.table, Key: { pk: pairKey(phoneNumberId, key), sk }, ConsistentRead: true }),
    );
    const target = out.Item?.userKey;
    return typeof target === 'string' && target !== key ? target : undefined;
  }
}
