import type { Logger } from '#core/logger.ts';

/** One captured log entry. */
export interface LogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  fields: Record<string, unknown>;
}

/** A logger that records entries instead of printing them, so tests stay quiet and can assert on logs. */
export function captureLogger(
  entries: LogEntry[] = [],
  base: Record<string, unknown> = {},
): Logger & { entries: LogEntry[] } {
  const log =
    (level: LogEntry['level']) =>
    (message: string, fields: Record<string, unknown> = {}) => {
      entries.push({ level, message, fields: { ...base, ...fields } });
    };
  return {
    entries,
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: (fields) => captureLogger(entries, { ...base, ...fields }),
  };
}
