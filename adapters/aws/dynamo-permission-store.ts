/**
 * {@link PermissionStore} on DynamoDB, in the permissions table next to the raw replies:
 * `LINE#<pnid>#USER#<userKey>` / `PERMISSION` holds the ledger entry (with `version`, written only
 * on a matching version: optimistic concurrency), `HIST#<ms>#<seq>` its history lines, and
 * `ALIAS` (under the other identifier of the same user) the key the entry is stored under. Entries
 * written before aliases existed are keyed by phone and stay where they are: they are found by
 * phone, and an alias from the BSUID is added once Meta shows both (no migration).
 */
import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { StoreError } from '#core/errors.ts';
import type { PermissionEntry, PermissionHistoryEntry } from '#core/permissions/ledger.ts';
import type { PermissionStore } from '#core/permissions/store.ts';

const pairKey = (phoneNumberId: string, userKey: string) => `LINE#${phoneNumberId}#USER#${userKey}`;
let historySeq = 0;

/** DynamoDB implementation of the permission ledger. */
export class DynamoPermissionStore implements PermissionStore {
  readonly #doc: DynamoDBDocumentClient;
  readonly #table: string;

  constructor(client: DynamoDBClient, tableName: string) {
    this.#doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
    this.#table = tableName;
  }

  async get(phoneNumberId: string, userKey: string): Promise<PermissionEntry | undefined> {
    try {
      const out = await this.#doc.send(
        new GetCommand({
          TableName: this.#table,
          Key: { pk: pairKey(phoneNumberId, userKey), sk: 'PERMISSION' },
          ConsistentRead: true,
        }),
      );
      if (!out.Item) return undefined;
      const { pk: _pk, sk: _sk, ...entry } = out.Item;
      return entry as PermissionEntry;
    } catch (cause) {
      throw new StoreError('getPermission', { cause });
    }
  }

  async put(entry: PermissionEntry, expectedVersion: number, history: PermissionHistoryEntry): Promise<boolean> {
    const pk = pairKey(entry.phoneNumberId, entry.userKey);
    try {
      await this.#doc.send(
        new PutCommand({
          TableName: this.#table,
          Item: { pk, sk: 'PERMISSION', ...entry },
          ...(expectedVersion === 0
            ? { ConditionExpression: 'attribute_not_exists(pk)' }
            : {
                ConditionExpression: '#version = :expected',
                ExpressionAttributeNames: { '#version': 'version' },
                ExpressionAttributeValues: { ':expected': expectedVersion },
              }),
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw new StoreError('putPermission', { cause: error });
    }
    // The entry is the truth; a lost history line is logged by the caller's retry, never fatal to the entry.
    historySeq = (historySeq + 1) % 1_000_000;
    const sk = `HIST#${String(history.at).padStart(15, '0')}#${String(historySeq).padStart(6, '0')}`;
    try {
      await this.#doc.send(new PutCommand({ TableName: this.#table, Item: { pk, sk, ...history } }));
    } catch (cause) {
      throw new StoreError('appendPermissionHistory', { cause });
    }
    return true;
  }

  async alias(phoneNumberId: string, aliasKey: string): Promise<string | undefined> {
    try {
      const out = await this.#doc.send(
        new GetCommand({
          TableName: this.#table,
          Key: { pk: pairKey(phoneNumberId, aliasKey), sk: 'ALIAS' },
          ConsistentRead: true,
        }),
      );
      const target = out.Item?.userKey;
      return typeof target === 'string' ? target : undefined;
    } catch (cause) {
      throw new StoreError('getPermissionAlias', { cause });
    }
  }

  async putAlias(phoneNumberId: string, aliasKey: string, userKey: string): Promise<void> {
    try {
      await this.#doc.send(
        new PutCommand({
          TableName: this.#table,
          Item: { pk: pairKey(phoneNumberId, aliasKey), sk: 'ALIAS', userKey },
        }),
      );
    } catch (cause) {
      throw new StoreError('putPermissionAlias', { cause });
    }
  }

  async history(phoneNumberId: string, userKey: string): Promise<PermissionHistoryEntry[]> {
    try {
      const out = await this.#doc.send(
        new QueryCommand({
          TableName: this.#table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :h)',
          ExpressionAttributeValues: { ':pk': pairKey(phoneNumberId, userKey), ':h': 'HIST#' },
          ConsistentRead: true,
        }),
      );
      return (out.Items ?? []).map(({ pk: _p, sk: _s, ...h }) => h as PermissionHistoryEntry);
    } catch (cause) {
      throw new StoreError('permissionHistory', { cause });
    }
  }
}
