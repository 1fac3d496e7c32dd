import { afterEach } from 'vitest';

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `cond` every 10 ms until it holds; throws once `timeoutMs` has passed. */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(10);
  }
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
