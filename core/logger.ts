/**
 * The logging surface domain code needs. Powertools Logger (Lambdas) and pino (workers) are both
 * adapted to it, so domain modules stay independent of either.
 */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  /** A logger that adds `fields` to every entry (e.g. `{ callId }`). */
  child(fields: Record<string, unknown>): Logger;
}
