/**
 * {@link CallStore} on DynamoDB. Every state change is one conditional write; a lost condition is
 * reported as "did not apply", never as an error.
 */
import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { CallHistoryEntry, CallPatch, CallRecord, CallStore } from '#core/calls/call-record.ts';
import { type CallEvent, movesFor } from '#core/calls/call-state.ts';
import { StoreError } from '#core/errors.ts';

const RECORD = 'RECORD';
const callKey = (callId: string) => ({ pk: `CALL#${callId}`, sk: RECORD });
const slotKey = (phoneNumberId: string) => ({ pk: `LINE#${phoneNumberId}`, sk: 'SLOTS' });

let historySeq = 0;

/** DynamoDB implementation of the call store. */
export class DynamoCallStore implements CallStore {
  readonly #doc: DynamoDBDocumentClient;
  readonly #table: string;

  constructor(client: DynamoDBClient, tableName: string) {
    this.#doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
    this.#table = tableName;
  }

  async createIfAbsent(record: CallRecord): Promise<{ created: true } | { created: false; existing: CallRecord }> {
    try {
      await this.#doc.send(
        new PutCommand({
          TableName: this.#table,
          Item: { ...callKey(record.callId), ...record },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return { created: true };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException))
        throw new StoreError('createCall', { callId: record.callId, cause: error });
    }
    const existing = await this.get(record.callId);
    if (!existing) throw new StoreError('createCall: record vanished', { callId: record.callId });
    return { created: false, existing };
  }

  async get(callId: string): Promise<CallRecord | undefined> {
    try {
      const out = await this.#doc.send(
        new GetCommand({ TableName: this.#table, Key: callKey(callId), ConsistentRead: true }),
      );
      return out.Item ? toRecord(out.Item) : undefined;
    } catch (cause) {
      throw new StoreError('getCall', { callId, cause });
    }
  }

  async transition(callId: string, event: CallEvent, patch: CallPatch = {}): Promise<CallRecord | undefined> {
    const move = movesFor(event);
    const names: Record<string, string> = { '#state': 'state', '#version': 'version' };
    const values: Record<string, unknown> = { ':to': move.to, ':one': 1 };
    const sets = ['#state = :to', '#version = #version + :one', ...setClauses(patch, names, values)];
    const froms = move.from.map((s, i) => {
      values[`:from${i}`] = s;
      return `:from${i}`;
    });
    return this.#update(
      callId,
      `SET ${sets.join(', ')}`,
      `#state IN (${froms.join(', ')})`,
      names,
      values,
      'transition',
    );
  }

  async patchIf(
    callId: string,
    expect: Partial<Record<keyof CallRecord, unknown>>,
    patch: CallPatch,
  ): Promise<boolean> {
    const names: Record<string, string> = { '#version': 'version' };
    const values: Record<string, unknown> = { ':one': 1 };
    const conditions = ['attribute_exists(pk)'];
    Object.entries(expect).forEach(([key, value], i) => {
      names[`#e${i}`] = key;
      if (value === undefined) conditions.push(`attribute_not_exists(#e${i})`);
      else {
        values[`:e${i}`] = value;
        conditions.push(`#e${i} = :e${i}`);
      }
    });
    const sets = ['#version = #version + :one', ...setClauses(patch, names, values)];
    const updated = await this.#update(
      callId,
      `SET ${sets.join(', ')}`,
      conditions.join(' AND '),
      names,
      values,
      'patch',
    );
    return updated !== undefined;
  }

  async acquireSlot(phoneNumberId: string, cap: number): Promise<boolean> {
    try {
      await this.#doc.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: slotKey(phoneNumberId),
          UpdateExpression: 'SET inUse = if_not_exists(inUse, :zero) + :one',
          ConditionExpression: 'attribute_not_exists(inUse) OR inUse < :cap',
          ExpressionAttributeValues: { ':zero': 0, ':one': 1, ':cap': cap },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw new StoreError('acquireSlot', { cause: error });
    }
  }

  async releaseSlot(phoneNumberId: string): Promise<void> {
    try {
      await this.#doc.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: slotKey(phoneNumberId),
          UpdateExpression: 'SET inUse = inUse - :one',
          ConditionExpression: 'inUse > :zero',
          ExpressionAttributeValues: { ':zero': 0, ':one': 1 },
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return; // already at zero
      throw new StoreError('releaseSlot', { cause: error });
    }
  }

  async slotsInUse(phoneNumberId: string): Promise<number> {
    const out = await this.#doc.send(
      new GetCommand({ TableName: this.#table, Key: slotKey(phoneNumberId), ConsistentRead: true }),
    );
    return Number(out.Item?.inUse ?? 0);
  }

  async appendHistory(callId: string, entry: CallHistoryEntry): Promise<void> {
    historySeq = (historySeq + 1) % 1_000_000;
    const sk = `HIST#${String(entry.at).padStart(15, '0')}#${String(historySeq).padStart(6, '0')}`;
    try {
      await this.#doc.send(new PutCommand({ TableName: this.#table, Item: { pk: `CALL#${callId}`, sk, ...entry } }));
    } catch (cause) {
      throw new StoreError('appendHistory', { callId, cause });
    }
  }

  async history(callId: string): Promise<CallHistoryEntry[]> {
    const out = await this.#doc.send(
      new QueryCommand({
        TableName: this.#table,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :h)',
        ExpressionAttributeValues: { ':pk': `CALL#${callId}`, ':h': 'HIST#' },
        ConsistentRead: true,
      }),
    );
    return (out.Items ?? []).map((i) => ({ at: i.at, what: i.what, ...(i.detail ? { detail: i.detail } : {}) }));
  }

  async #update(
    callId: string,
    update: string,
    condition: string,
    names: Record<string, string>,
    values: Record<string, unknown>,
    operation: string,
  ): Promise<CallRecord | undefined> {
    try {
      const out = await this.#doc.send(
        new UpdateCommand({
          TableName: this.#table,
          Key: callKey(callId),
          UpdateExpression: update,
          ConditionExpression: condition,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        }),
      );
      return out.Attributes ? toRecord(out.Attributes) : undefined;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return undefined;
      throw new StoreError(operation, { callId, cause: error });
    }
  }
}

function setClauses(patch: CallPatch, names: Record<string, string>, values: Record<string, unknown>): string[] {
  return Object.entries(patch)
    .filter(([, v]) => v !== undefined)
    .map(([key, value], i) => {
      names[`#p${i}`] = key;
      values[`:p${i}`] = value;
      return `#p${i} = :p${i}`;
    });
}

function toRecord(item: Record<string, unknown>): CallRecord {
  const { pk: _pk, sk: _sk, ...rest } = item;
  return rest as unknown as CallRecord;
}
