/**
 * Stores `call_permission_reply` webhooks as they arrive, deduplicated by Meta's message id, for
 * the permission ledger (business-initiated calls) to build on.
 */
import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { StoreError } from '#core/errors.ts';
import type { PermissionReply } from '#core/meta/webhook.ts';

/** Durable log of permission replies. */
export interface PermissionReplies {
  /** Records a reply once; returns false for a duplicate. */
  record(reply: PermissionReply, receivedAt: number): Promise<boolean>;
  /** Replies for one user of one business number, oldest first. */
  list(phoneNumberId: string, userKey: string): Promise<PermissionReply[]>;
}

/** The key a user is stored under: phone digits when Meta sends them, else the BSUID. */
export function userKeyOf(user: { phone?: string; userId?: string }): string {
  return user.phone ?? user.userId ?? 'unknown';
}

/** DynamoDB implementation: `LINE#<pnid>#USER#<userKey>` / `REPLY#<messageId>`. */
export class DynamoPermissionReplies implements PermissionReplies {
  readonly #doc: DynamoDBDocumentClient;

  constructor(
    client: DynamoDBClient,
    private readonly table: string,
  ) {
    this.#doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  }

  async record(reply: PermissionReply, receivedAt: number): Promise<boolean> {
    try {
      await this.#doc.send(
        new PutCommand({
          TableName: this.table,
          Item: {
            pk: `LINE#${reply.line.phoneNumberId}#USER#${userKeyOf(reply.user)}`,
            sk: `REPLY#${reply.messageId}`,
            ...reply,
            receivedAt,
          },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw new StoreError('recordPermissionReply', { cause: error });
    }
  }

  async list(phoneNumberId: string, userKey: string): Promise<PermissionReply[]> {
    const out = await this.#doc.send(
      new QueryCommand({
        TableName: this.table,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :r)',
        ExpressionAttributeValues: { ':pk': `LINE#${phoneNumberId}#USER#${userKey}`, ':r': 'REPLY#' },
        ConsistentRead: true,
      }),
    );
    return (out.Items ?? []).map(({ pk: _p, sk: _s, receivedAt: _r, ...reply }) => reply as PermissionReply);
  }
}
