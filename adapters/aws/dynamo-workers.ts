/**
 * The workers table: each worker's heartbeat, control queue and load, so operators and the
 * control plane can see who is alive and which calls a dead worker left behind.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, DynamoDBDocumentClient, PutCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';

/**
 * The last reachability check of one SIP target by a worker: an OPTIONS (RFC 3261 §11) and its
 * final response, or why none came. Any final response means the PBX is reachable.
 */
export interface SipTargetHealth {
  /** The target's URI, without any password. */
  readonly uri: string;
  /** Status of the final response, when one came. */
  readonly status?: number;
  /** Round trip of the OPTIONS, ms, when a response came. */
  readonly rttMs?: number;
  /** Why no response came (`timeout`, or the transport failure), when none did. */
  readonly error?: string;
  /** When the check ended, epoch ms. */
  readonly checkedAt: number;
}

/** A worker as registered. */
export interface WorkerInfo {
  readonly workerId: string;
  readonly controlQueueUrl: string;
  readonly activeCalls: number;
  /** Meta call ids of the calls the worker is bridging, so a survivor can end them if it dies. */
  readonly callIds: readonly string[];
  readonly maxCalls: number;
  readonly draining: boolean;
  /** The worker's task definition (`family:revision`), in ECS. */
  readonly deployment?: string;
  readonly heartbeatAt: number;
  readonly startedAt: number;
  /** The last OPTIONS check of each configured SIP target (absent before the first). */
  readonly sipTargets?: readonly SipTargetHealth[];
}

/** DynamoDB registry of workers: `WORKER#<id>` / `WORKER`. */
export class DynamoWorkerRegistry {
  readonly #doc: DynamoDBDocumentClient;

  constructor(
    client: DynamoDBClient,
    private readonly table: string,
  ) {
    this.#doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  }

  /** Writes the heartbeat; the item expires (TTL) two minutes after the last one. */
  async heartbeat(info: WorkerInfo): Promise<void> {
    await this.#doc.send(
      new PutCommand({
        TableName: this.table,
        Item: {
          pk: `WORKER#${info.workerId}`,
          sk: 'WORKER',
          ...info,
          expiresAt: Math.floor(info.heartbeatAt / 1000) + 120,
        },
      }),
    );
  }

  /** Removes a worker's entry; with `heartbeatAt`, only if it has not beaten since (a reaper must not remove a live worker). */
  async remove(workerId: string, heartbeatAt?: number): Promise<boolean> {
    try {
      await this.#doc.send(
        new DeleteCommand({
          TableName: this.table,
          Key: { pk: `WORKER#${workerId}`, sk: 'WORKER' },
          ...(heartbeatAt === undefined
            ? {}
            : { ConditionExpression: 'heartbeatAt = :h', ExpressionAttributeValues: { ':h': heartbeatAt } }),
        }),
      );
      return true;
    } catch (error) {
      if ((error as { name?: string }).name === 'ConditionalCheckFailedException') return false;
      throw error;
    }
  }

  /** Every registered worker (small table: one item per worker). */
  async list(): Promise<WorkerInfo[]> {
    const out = await this.#doc.send(new ScanCommand({ TableName: this.table, ConsistentRead: true }));
    return (out.Items ?? [])
      .filter((i) => i.sk === 'WORKER')
      .map(({ pk: _p, sk: _s, expiresAt: _e, ...w }) => w as WorkerInfo);
  }
}
