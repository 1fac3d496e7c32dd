/**
 * ECS task scale-in protection while the worker has calls: scale-in and deployments must not stop
 * a task in the middle of conversations (Fargate gives at most 120 s after SIGTERM;
 * anchors-perf-reliability-style.md §B2). Protection is set when the first call starts, refreshed
 * at half its period while calls go on, and cleared when the last call ends.
 */
import type { Logger } from 'pino';

/** Tracks the call count and keeps the task's protection in step with it. */
export class TaskProtection {
  #protected = false;
  #refresh: NodeJS.Timeout | undefined;
  #pending: Promise<void> = Promise.resolve();

  constructor(private readonly options: { agentUri: string; minutes: number; logger: Logger; timeoutMs?: number }) {}

  /** Call whenever the number of active calls changes. */
  update(activeCalls: number): void {
    if (activeCalls > 0 && !this.#protected) {
      this.#protected = true;
      this.#set(true);
      this.#refresh = setInterval(() => this.#set(true), (this.options.minutes * 60_000) / 2);
      this.#refresh.unref();
    } else if (activeCalls === 0 && this.#protected) {
      this.#protected = false;
      if (this.#refresh) clearInterval(this.#refresh);
      this.#set(false);
    }
  }

  /** Clears protection (after a drain) and waits for outstanding requests. */
  async close(): Promise<void> {
    this.update(0);
    await this.#pending;
  }

  #set(enabled: boolean): void {
    const body = enabled
      ? { ProtectionEnabled: true, ExpiresInMinutes: this.options.minutes }
      : { ProtectionEnabled: false };
    this.#pending = this.#pending
      .then(async () => {
        const res = await fetch(`${this.options.agentUri}/task-protection/v1/state`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(this.options.timeoutMs ?? 2000),
        });
        if (!res.ok) throw new Error(`ECS agent answered ${res.status}`);
        this.options.logger.info({ enabled }, 'task scale-in protection updated');
      })
      .catch((error: unknown) =>
        this.options.logger.warn({ err: String(error), enabled }, 'updating task scale-in protection failed'),
      );
  }
}
