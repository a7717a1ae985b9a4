/**
 * Logs and error messages, shared by every program (and by events.ts, which
 * service.ts builds on).
 *
 * @module
 */
import { Ice } from "ice";

/** The log levels of property `IceFlix.LogLevel`, most severe first. */
const LOG_LEVELS = ["error", "warn", "info", "debug"] as const;

/** One of the levels of property `IceFlix.LogLevel`. */
export type LogLevel = typeof LOG_LEVELS[number];

/** A log that writes `time component LEVEL message` lines on stderr. */
export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
}

/**
 * A logger for `component` that writes the levels up to `IceFlix.LogLevel`
 * (default `info`) to stderr, or to `write` (the client prints them above its prompt).
 */
export function createLogger(
  component: string,
  properties: Ice.Properties,
  write: (line: string) => void = console.error,
): Logger {
  const configured = properties.getPropertyWithDefault("IceFlix.LogLevel", "info").toLowerCase();
  const threshold = LOG_LEVELS.indexOf(configured as LogLevel);
  const at = (level: LogLevel) => (message: string) => {
    if (LOG_LEVELS.indexOf(level) <= (threshold < 0 ? 2 : threshold)) {
      write(`${new Date().toISOString()} ${component} ${level.toUpperCase()} ${message}`);
    }
  };
  return { error: at("error"), warn: at("warn"), info: at("info"), debug: at("debug") };
}

/** One line that says what went wrong, for logs and for users. */
export function describeError(error: unknown): string {
  if (error instanceof Ice.Exception) {
    // Ice exceptions print their Slice type id, plus the reason some carry (`unknown` for a servant's run-time
    // error, whose first line says what happened).
    const { reason, unknown } = error as { reason?: string; unknown?: string };
    const detail = (reason || unknown || "").split("\n")[0];
    return `${error.ice_id()}${detail ? `: ${detail}` : ""}`;
  }
  return error instanceof Error ? error.message : String(error);
}
