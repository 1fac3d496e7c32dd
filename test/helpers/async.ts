import { afterEach } from 'vitest';

/**
 * Resolves after `ms`. For synchronisation, wait for a condition with {@link until} instead; a
 * sleep is for "nothing else arrived" checks, and then it should be clearly longer than the event
 * it rules out would take.
 */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** How {@link until} polls. */
export interface UntilOptions {
  /** Named in the timeout error; a function is read at the timeout (say what was seen). @default 'condition' */
  what?: string | (() => string);
  /** Poll period. @default 10 */
  everyMs?: number;
  /**
   * Treat a throwing `cond` as "not yet" (for a lookup that fails until the thing exists); the
   * last error is named in the timeout error. By default a throw fails at once.
   */
  retryErrors?: boolean;
}

/**
 * Polls `cond` until it returns a truthy value, and returns that value; throws once `timeoutMs`
 * has passed. `cond` runs at least once.
 */
export async function until<T>(
  cond: () => T | Promise<T>,
  timeoutMs = 3000,
  options: UntilOptions = {},
): Promise<Exclude<T, false | 0 | '' | null | undefined>> {
  const { what = 'condition', everyMs = 10, retryErrors = false } = options;
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await cond();
      if (value) return value as Exclude<T, false | 0 | '' | null | undefined>;
    } catch (error) {
      if (!retryErrors) throw error;
      last = error;
    }
    if (Date.now() > end) {
      const name = typeof what === 'function' ? what() : what;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${name}${last ? `: ${String(last)}` : ''}`);
    }
    await sleep(everyMs);
  }
}

/**
 * {@link until} for slower, fallible lookups (HTTP, the store): polls every 25 ms and retries a
 * throwing `check`.
 */
export function eventually<T>(
  check: () => T | Promise<T>,
  timeoutMs = 5000,
  what: string | (() => string) = 'condition',
) {
  return until(check, timeoutMs, { what, everyMs: 25, retryErrors: true });
}

/** Something a test opens and must close (peers, legs, bridges, sockets). */
export interface Closable {
  close(): Promise<void>;
}

/** Tracks what a test opened; `closeAll()` closes it now (the `afterEach` closes what is left). */
export interface Tracker {
  <T extends Closable>(x: T): T;
  closeAll(): Promise<void>;
}

/**
 * Registers an `afterEach` that closes everything passed to the returned `track` during the test,
 * in reverse creation order (a bridge before the legs it joins).
 */
export function closeAfterEach(): Tracker {
  const open: Closable[] = [];
  const closeAll = async () => {
    for (const x of open.splice(0).reverse()) await x.close();
  };
  afterEach(closeAll);
  return Object.assign(
    <T extends Closable>(x: T): T => {
      open.push(x);
      return x;
    },
    { closeAll },
  );
}
