/** Errors of the media threads. */

/** A media thread died (an uncaught error, or it exited): every call pinned to it ends `bridge-error`. */
export class MediaThreadLostError extends Error {
  override readonly name = 'MediaThreadLostError';
  /**
   * @param thread - the thread's index in the pool
   * @param cause - why it died (its uncaught error, or its exit code)
   */
  constructor(
    readonly thread: number,
    cause?: unknown,
  ) {
    super(
      `media thread ${thread} died${cause instanceof Error ? `: ${cause.message}` : cause === undefined ? '' : ` (${String(cause)})`}`,
      cause === undefined ? undefined : { cause },
    );
  }
}

/** A media thread did not answer a request in time. */
export class MediaThreadTimeoutError extends Error {
  override readonly name = 'MediaThreadTimeoutError';
  constructor(
    readonly thread: number,
    readonly op: string,
    readonly callId: string | undefined,
    readonly timeoutMs: number,
  ) {
    super(`media thread ${thread} did not answer ${op} for call ${callId ?? '(not yet known)'} within ${timeoutMs} ms`);
  }
}

/** No media thread is alive to take a call (the pool is closed, or every thread is down). */
export class NoMediaThreadError extends Error {
  override readonly name = 'NoMediaThreadError';
  constructor() {
    super('no media thread is alive to take the call');
  }
}
