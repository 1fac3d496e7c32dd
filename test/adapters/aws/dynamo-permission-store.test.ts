/**
 * The permission ledger on DynamoDB (dynalite): entries stored by phone before BSUIDs keep working,
 * and a user's BSUID and phone lead to one entry through an alias item (D4), with no migration.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoPermissionStore } from '#adapters/aws/dynamo-permission-store.ts';
import { emptyEntry } from '#core/permissions/ledger.ts';
import { findPermission, recordConnectedCall, recordUnansweredCall } from '#core/permissions/service.ts';
import { type LocalAws, startLocalAws } from '#local/emulators.ts';

const PNID = '436666719526789';
const T0 = Date.UTC(2026, 3, 1, 9, 0, 0);
let aws: LocalAws;
let client: DynamoDBClient;
let store: DynamoPermissionStore;

beforeAll(async () => {
  aws = await startLocalAws({ prefix: 'ids-ledger' });
  client = new DynamoDBClient({
    region: aws.region,
    endpoint: aws.dynamodbEndpoint,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  store = new DynamoPermissionStore(client, aws.tables.permissions);
});
afterAll(async () => {
  client?.destroy();
  await aws?.stop();
});

describe('DynamoPermissionStore identity', () => {
  it('reads an entry written by phone before aliases existed, and links the BSUID to it', async () => {
    // An item exactly as the store wrote it before this change: keyed by phone, no alias anywhere.
    const phone = '4915100000100';
    const legacy = { ...emptyEntry(PNID, phone, { phone }, T0), state: 'permanent', version: 3 };
    await DynamoDBDocumentClient.from(client).send(
      new PutCommand({
        TableName: aws.tables.permissions,
        Item: { pk: `LINE#${PNID}#USER#${phone}`, sk: 'PERMISSION', ...legacy },
      }),
    );
    const deps = { permissions: store, now: () => T0 };
    expect((await findPermission(store, PNID, { phone })).entry).toMatchObject({ state: 'permanent', version: 3 });
    await recordConnectedCall({ phoneNumberId: PNID, user: { phone, userId: 'DE.100' }, callId: 'wacid.1' }, deps);
    // Later Meta sends only the BSUID: the same entry, still under the phone key.
    await recordUnansweredCall({ phoneNumberId: PNID, user: { userId: 'DE.100' }, callId: 'wacid.2' }, deps);
    expect(await store.alias(PNID, 'DE.100')).toBe(phone);
    expect(await store.get(PNID, 'DE.100')).toBeUndefined();
    expect(await store.get(PNID, phone)).toMatchObject({
      state: 'permanent',
      version: 5,
      user: { phone, userId: 'DE.100' },
      connectedCalls: [T0],
      consecutiveUnanswered: 1,
    });
    expect((await store.history(PNID, phone)).map((h) => h.event)).toEqual(['call-connected', 'call-unanswered']);
  });

  it('writes a new user under the BSUID and makes the phone an alias of it', async () => {
    const deps = { permissions: store, now: () => T0 };
    const phone = '4915100000101';
    await recordConnectedCall({ phoneNumberId: PNID, user: { phone, userId: 'DE.101' }, callId: 'wacid.3' }, deps);
    expect(await store.get(PNID, 'DE.101')).toMatchObject({ userKey: 'DE.101', user: { phone, userId: 'DE.101' } });
    expect(await store.alias(PNID, phone)).toBe('DE.101');
    expect((await findPermission(store, PNID, { phone })).key).toBe('DE.101');
  });
});
