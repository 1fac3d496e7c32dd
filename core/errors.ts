/**
 * Named errors of the control plane. Each carries the context an operator needs to find the call
 * (Meta's call id, the Meta error code, the store operation) and keeps the original error as `cause`.
 */

/** Base class for every control-plane error. */
export class BridgeError extends Error {
  override name = 'BridgeError';
  /** Meta's call id, when the error concerns one call. */
  readonly callId: string | undefined;

  constructor(message: string, options: { callId?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.callId = options.callId;
  }
}

/** A webhook body that is not Meta's envelope (bad JSON or schema). Maps to HTTP 400. */
export class WebhookPayloadError extends BridgeError {
  override name = 'WebhookPayloadError';
  /** Where in the payload the problem is, e.g. `entry.0.changes.1.value.calls.0.id`. */
  readonly path: string;

  constructor(message: string, path = '', options: { cause?: unknown } = {}) {
    super(message, options);
    this.path = path;
  }
}

/** A missing or wrong `X-Hub-Signature-256`. Maps to HTTP 401. */
export class WebhookSignatureError extends BridgeError {
  override name = 'WebhookSignatureError';
}

/** A store operation failed for a reason other than a lost conditional write. */
export class StoreError extends BridgeError {
  override name = 'StoreError';
  readonly operation: string;

  constructor(operation: string, options: { callId?: string; cause?: unknown } = {}) {
    super(`store operation ${operation} failed`, options);
    this.operation = operation;
  }
}

/** A call job could not be enqueued. The webhook answers 500 so Meta retries. */
export class JobQueueError extends BridgeError {
  override name = 'JobQueueError';
}

/** A Graph API call failed: HTTP error, Meta error body or timeout. */
export class MetaApiError extends BridgeError {
  override name = 'MetaApiError';
  /** HTTP status, or 0 for a network error or timeout. */
  readonly status: number;
  /** Meta's error code (`error.code`), e.g. 138006. */
  readonly metaCode: number | undefined;
  readonly details: string | undefined;
  /** Meta's `error_data`, e.g. the next allowed time of a limit. */
  readonly errorData: Record<string, unknown> | undefined;

  constructor(
    message: string,
    options: {
      callId?: string;
      status: number;
      metaCode?: number;
      details?: string;
      errorData?: Record<string, unknown>;
      cause?: unknown;
    },
  ) {
    super(message, options);
    this.status = options.status;
    this.metaCode = options.metaCode;
    this.details = options.details;
    this.errorData = options.errorData;
  }
}

/** Invalid configuration; thrown at start-up naming the offending key. */
export class ConfigError extends BridgeError {
  override name = 'ConfigError';
  readonly key: string;
  /** What is wrong, without the key (e.g. `is required but not set`). */
  readonly problem: string;

  constructor(key: string, problem: string) {
    super(`configuration ${key}: ${problem}`);
    this.key = key;
    this.problem = problem;
  }
}
