/**
 * The port of the permission ledger's persistence. The DynamoDB implementation lives in
 * `adapters/aws/dynamo-permission-store.ts`; domain code imports no AWS SDK.
 */
import type { PermissionEntry, PermissionHistoryEntry } from './ledger.ts';

/** Persistence of ledger entries with optimistic concurrency. */
export interface PermissionStore {
  /** The entry of a pair, or `undefined` if the ledger has never seen it. */
  get(phoneNumberId: string, userKey: string): Promise<PermissionEntry | undefined>;
  /**
   * Writes `entry` if the stored version still equals `expectedVersion` (0: no entry yet), together
   * with its history line. Returns false when another writer won; the caller re-reads and retries.
   */
  put(entry: PermissionEntry, expectedVersion: number, history: PermissionHistoryEntry): Promise<boolean>;
  /** The history of a pair, oldest first. */
  history(phoneNumberId: string, userKey: string): Promise<PermissionHistoryEntry[]>;
  /**
   * The key whose entry `aliasKey` stands for, if one was recorded: a user known by BSUID and phone
   * has one entry, stored under one of them; the other is an alias (see `findPermission`).
   */
  alias(phoneNumberId: string, aliasKey: string): Promise<string | undefined>;
  /** Records (or moves) the alias `aliasKey` → `userKey`. Idempotent. */
  putAlias(phoneNumberId: string, aliasKey: string, userKey: string): Promise<void>;
}
