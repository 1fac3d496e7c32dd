/**
 * An in-memory {@link PermissionStore} with the DynamoDB store's semantics (version-conditional
 * writes, aliases kept apart from entries), for ledger stories that need no dynalite.
 */
import type { PermissionEntry, PermissionHistoryEntry } from '#core/permissions/ledger.ts';
import type { PermissionStore } from '#core/permissions/store.ts';

/** The in-memory store; `entries` and `aliases` are open for assertions. */
export class MemoryPermissionStore implements PermissionStore {
  readonly entries = new Map<string, PermissionEntry>();
  readonly aliases = new Map<string, string>();
  readonly #history = new Map<string, PermissionHistoryEntry[]>();

  async get(phoneNumberId: string, userKey: string): Promise<PermissionEntry | undefined> {
    return this.entries.get(`${phoneNumberId}#${userKey}`);
  }

  async put(entry: PermissionEntry, expectedVersion: number, history: PermissionHistoryEntry): Promise<boolean> {
    const k = `${entry.phoneNumberId}#${entry.userKey}`;
    if ((this.entries.get(k)?.version ?? 0) !== expectedVersion) return false;
    this.entries.set(k, entry);
    this.#history.set(k, [...(this.#history.get(k) ?? []), history]);
    return true;
  }

  async history(phoneNumberId: string, userKey: string): Promise<PermissionHistoryEntry[]> {
    return this.#history.get(`${phoneNumberId}#${userKey}`) ?? [];
  }

  async alias(phoneNumberId: string, aliasKey: string): Promise<string | undefined> {
    return this.aliases.get(`${phoneNumberId}#${aliasKey}`);
  }

  async putAlias(phoneNumberId: string, aliasKey: string, userKey: string): Promise<void> {
    this.aliases.set(`${phoneNumberId}#${aliasKey}`, userKey);
  }
}
