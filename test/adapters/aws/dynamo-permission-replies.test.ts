/**
 * Raw permission replies on DynamoDB (dynalite), keyed like the ledger: BSUID first, the phone an
 * alias (Corrections §5: a user seen with phone and BSUID may later be seen with the BSUID alone).
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoPermissionReplies } from '#adapters/aws/dynamo-permission-replies.ts';
import type { PermissionReply, WhatsAppUser } from '#core/meta/webhook.ts';
import { type LocalAws, startLocalAws } from '#local/emulators.ts';

const PNID = '436666719526789';
const T0 = Date.UTC(2026, 3, 1, 9, 0, 0);
let aws: LocalAws;
let client: DynamoDBClient;
let replies: DynamoPermissionReplies;

function reply(user: WhatsAppUser, messageId: string, at = T0): PermissionReply {
  return {
    kind: 'permission-reply',
    line: { phoneNumberId: PNID, businessNumber: '447700900123', accountId: '366634483210360' },
    user,
    response: 'accept',
    permanent: true,
    source: 'user_action',
    messageId,
    timestamp: at,
  };
}

beforeAll(async () => {
  aws = await startLocalAws({ prefix: 'ids-replies' });
  client = new DynamoDBClient({
    region: aws.region,
    endpoint: aws.dynamodbEndpoint,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  replies = new DynamoPermissionReplies(client, aws.tables.permissions);
});
afterAll(async () => {
  client?.destroy();
  await aws?.stop();
});

describe('permission replies keyed BSUID-first', () => {
  it('finds a reply that came with phone and BSUID when the user is later known by the BSUID only', async () => {
    // Before: stored under the phone, so the BSUID-only lookup found nothing.
    expect(await replies.record(reply({ phone: '4915100000200', userId: 'DE.200' }, 'wamid.r1'), T0)).toBe(true);
    expect(await replies.list(PNID, { userId: 'DE.200' })).toMatchObject([{ messageId: 'wamid.r1' }]);
    expect(await replies.list(PNID, { phone: '4915100000200' }), 'the phone is an alias').toMatchObject([
      { messageId: 'wamid.r1' },
    ]);
    expect(await replies.record(reply({ phone: '4915100000200', userId: 'DE.200' }, 'wamid.r1'), T0)).toBe(false);
  });

  it('lists a user’s replies from both identifiers in order, and leaves out a recycled phone’s previous owner', async () => {
    await replies.record(reply({ phone: '4915100000201', userId: 'DE.201' }, 'wamid.a', T0 + 2), T0);
    await replies.record(reply({ userId: 'DE.201' }, 'wamid.b', T0 + 3), T0);
    expect((await replies.list(PNID, { phone: '4915100000201' })).map((r) => r.messageId)).toEqual([
      'wamid.a',
      'wamid.b',
    ]);
    // The number passes to someone else: their replies are not the first owner's.
    await replies.record(reply({ phone: '4915100000201', userId: 'DE.999' }, 'wamid.c', T0 + 4), T0);
    expect((await replies.list(PNID, { userId: 'DE.201', phone: '4915100000201' })).map((r) => r.messageId)).toEqual([
      'wamid.a',
      'wamid.b',
    ]);
  });

  it('still reads replies stored by phone before this layout (no migration)', async () => {
    const phone = '4915100000202';
    // An item exactly as the store wrote it before: keyed by phone.
    await DynamoDBDocumentClient.from(client).send(
      new PutCommand({
        TableName: aws.tables.permissions,
        Item: {
          pk: `LINE#${PNID}#USER#${phone}`,
          sk: 'REPLY#wamid.old',
          ...reply({ phone, userId: 'DE.202' }, 'wamid.old'),
          receivedAt: T0,
        },
      }),
    );
    expect(await replies.list(PNID, { phone })).toMatchObject([{ messageId: 'wamid.old' }]);
    // The ledger's alias (BSUID → phone, written once Meta showed both) leads a BSUID-only lookup there.
    await DynamoDBDocumentClient.from(client).send(
      new PutCommand({
        TableName: aws.tables.permissions,
        Item: { pk: `LINE#${PNID}#USER#DE.202`, sk: 'ALIAS', userKey: phone },
      }),
    );
    expect(await replies.list(PNID, { userId: 'DE.202' })).toMatchObject([{ messageId: 'wamid.old' }]);
  });
});
