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

/** How often {@linkcode OncePerBurst} sums up what it did not log (ms). */
const BURST_SUMMARY = 60_000;

/**
 * Logs one kind of event (a refusal, a failure) once per burst, so that a flood of them costs a line a minute, not
 * a line each: the first in full; then, every minute while more come, how many more, with the last of them (so that
 * whoever sends garbage is still named). A minute without one ends the burst: the next is logged in full again.
 */
export class OncePerBurst {
  readonly #log: (message: string) => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #untold = 0;
  #last = "";

  constructor(log: (message: string) => void) {
    this.#log = log;
  }

  /** An event: logged now if it starts a burst, else counted for the next summary. */
  note(message: string): void {
    if (this.#timer !== undefined) {
      this.#untold++;
      this.#last = message;
      return;
    }
    this.#log(`${message} (more like it: counted, one line a minute)`);
    this.#startInterval();
  }

  #startInterval(): void {
    this.#timer = setTimeout(() => this.#summary(), BURST_SUMMARY);
    // A summary never keeps a program alive.
    Deno.unrefTimer(this.#timer);
  }

  #summary(): void {
    this.#timer = undefined;
    if (this.#untold === 0) return;
    this.#log(`${this.#untold} more in the last ${BURST_SUMMARY / 1000} s; the last: ${this.#last}`);
    this.#untold = 0;
    this.#startInterval();
  }
}
