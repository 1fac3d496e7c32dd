/** Recording of a call's events with awaitable lookups. */
export interface EventLog<E extends { type: string }> {
  readonly events: E[];
  /** The first event of `type` (already seen or future). */
  next<T extends E['type']>(type: T, timeoutMs?: number): Promise<Extract<E, { type: T }>>;
  types(): string[];
}

/** Subscribe to `call` and record every event. */
export function record<E extends { type: string }>(call: { on(l: (e: E) => void): () => void }): EventLog<E> {
  const events: E[] = [];
  const waiters: { type: string; resolve: (e: E) => void }[] = [];
  call.on((e) => {
    events.push(e);
    for (const w of [...waiters]) {
      if (w.type === e.type) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(e);
      }
    }
  });
  return {
    events,
    types: () => events.map((e) => e.type),
    next<T extends E['type']>(type: T, timeoutMs = 5000): Promise<Extract<E, { type: T }>> {
      const seen = events.find((e) => e.type === type);
      if (seen) return Promise.resolve(seen as Extract<E, { type: T }>);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(new Error(`no '${type}' event within ${timeoutMs} ms; got ${events.map((e) => e.type).join(',')}`)),
          timeoutMs,
        );
        waiters.push({
          type,
          resolve: (e) => {
            clearTimeout(timer);
            resolve(e as Extract<E, { type: T }>);
          },
        });
      });
    },
  };
}
