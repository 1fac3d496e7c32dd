/**
 * DynamoDB table layouts shared by the local stack (dynalite) and the CDK stacks, so both create
 * the same keys. See docs/architecture.md for the access patterns.
 */

/** Logical tables and their key schema. All use a string partition key `pk` and sort key `sk`. */
export const TABLES = {
  /**
   * Calls: `CALL#<callId>` / `RECORD` (the call), `CALL#<callId>` / `HIST#<ms>#<n>` (history),
   * `LINE#<phoneNumberId>` / `SLOTS` (concurrency counter).
   */
  calls: { ttlAttribute: 'expiresAt' },
  /** Permissions: `LINE#<phoneNumberId>#USER#<userKey>` / `PERMISSION` and `HIST#…` (issue 4). */
  permissions: { ttlAttribute: 'expiresAt' },
  /** Workers: `WORKER#<workerId>` / `WORKER` (heartbeat, control queue, load). */
  workers: { ttlAttribute: 'expiresAt' },
} as const;

export type TableName = keyof typeof TABLES;
