/**
 * What every IceFlix program shares: its Ice configuration, its log, and a
 * clean start and shutdown.
 *
 * A service file calls {@linkcode runService} with a function that adds its
 * servants; this module does the rest the same way for all of them.
 *
 * @module
 */
import { Ice } from "ice";
import { createObjectAdapter } from "./acceptor.ts";

/**
 * Reads the Ice configuration as a C++ or Python Ice program would: the files
 * named by `--Ice.Config=a,b`, then every `--Name=value` argument on top.
 * Returns the properties; arguments that are not properties are left in
 * `args` (which is modified), for the program's own options.
 */
export function loadProperties(args: string[]): Ice.Properties {
  const properties = Ice.createProperties();
  const configFiles = args.filter((arg) => arg.startsWith("--Ice.Config="))
    .flatMap((arg) => arg.slice("--Ice.Config=".length).split(","))
    .filter((file) => file !== "");
  for (const file of configFiles) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch (error) {
      throw new Error(`cannot read configuration file ${file}: ${(error as Error).message}`);
    }
    // Ice's parser (present, but missing from the typings) cannot take a file with no lines at all.
    if (text.trim() !== "") (properties as Ice.Properties & { parse(text: string): void }).parse(text);
  }
  const rest = properties.parseCommandLineOptions("", args);
  args.splice(0, args.length, ...rest);
  return properties;
}

/** Creates a communicator from the Ice configuration in `args` (see {@linkcode loadProperties}). */
export function initializeCommunicator(args: string[]): Ice.Communicator {
  const initData = new Ice.InitializationData();
  initData.properties = loadProperties(args);
  return Ice.initialize(initData);
}

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
 * (default `info`) to stderr.
 */
export function createLogger(component: string, properties: Ice.Properties): Logger {
  const configured = properties.getPropertyWithDefault("IceFlix.LogLevel", "info").toLowerCase();
  const threshold = LOG_LEVELS.indexOf(configured as LogLevel);
  const write = (level: LogLevel) => (message: string) => {
    if (LOG_LEVELS.indexOf(level) <= (threshold < 0 ? 2 : threshold)) {
      console.error(`${new Date().toISOString()} ${component} ${level.toUpperCase()} ${message}`);
    }
  };
  return { error: write("error"), warn: write("warn"), info: write("info"), debug: write("debug") };
}

/** Reads a property holding a number of seconds, with a default; refuses nonsense. */
export function secondsProperty(properties: Ice.Properties, name: string, defaultSeconds: number): number {
  const text = properties.getProperty(name).trim();
  if (text === "") return defaultSeconds;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new Error(`property ${name} must be a positive number of seconds, not "${text}"`);
  }
  return seconds;
}

/**
 * Logs promise rejections and errors that nothing awaited, instead of letting
 * them end the process: one bad request must never kill a service.
 */
export function keepAliveOnStrayErrors(logger: Logger): void {
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    logger.error(`unhandled rejection: ${describeError(event.reason)}`);
  });
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    logger.error(`uncaught error: ${describeError(event.error)}`);
  });
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

/** What a service gets to build itself with. */
export interface ServiceContext {
  communicator: Ice.Communicator;
  properties: Ice.Properties;
  /** The service's object adapter, already listening, activated after setup. */
  adapter: Ice.ObjectAdapter;
  logger: Logger;
  /** Registers a cleanup to run at shutdown, before the communicator is destroyed (last registered runs first). */
  onShutdown(cleanup: () => unknown): void;
}

/** How {@linkcode runService} starts one service. */
export interface ServiceOptions {
  /** Short name used in logs: main, auth, catalog, streaming. */
  name: string;
  /** The object adapter whose `<adapterName>.Endpoints` the service listens at. */
  adapterName: string;
  /** Adds the servants; returns the proxy the service prints when ready. */
  setup(context: ServiceContext): Promise<Ice.ObjectPrx>;
}

/**
 * Runs a service until SIGINT or SIGTERM: reads the configuration from the
 * command line, creates the listening adapter, lets `setup` add the servants,
 * activates the adapter and prints the service's proxy as one line on stdout
 * (the ready signal for scripts and tests). On a signal it runs the cleanups,
 * destroys the communicator and exits 0. A failure while starting is logged as
 * one line and the process exits 1.
 */
export async function runService(options: ServiceOptions, args: string[] = [...Deno.args]): Promise<void> {
  let communicator: Ice.Communicator | undefined;
  let logger = createLogger(options.name, Ice.createProperties());
  keepAliveOnStrayErrors({
    error: (message) => logger.error(message),
    warn: (message) => logger.warn(message),
    info: (message) => logger.info(message),
    debug: (message) => logger.debug(message),
  });
  const cleanups: (() => unknown)[] = [];
  try {
    communicator = initializeCommunicator(args);
    const properties = communicator.getProperties();
    logger = createLogger(options.name, properties);
    const adapter = await createObjectAdapter(communicator, options.adapterName);
    const proxy = await options.setup({
      communicator,
      properties,
      adapter,
      logger,
      onShutdown: (cleanup) => cleanups.unshift(cleanup),
    });
    // Until activation the adapter holds incoming requests; from now on it dispatches them.
    await adapter.activate();
    console.log(communicator.proxyToString(proxy));
    logger.info(`ready at ${communicator.proxyToString(proxy)}`);
  } catch (error) {
    logger.error(`cannot start: ${describeError(error)}`);
    await communicator?.destroy().catch(() => {});
    Deno.exit(1);
  }

  const signal = await new Promise<Deno.Signal>((resolve) => {
    for (const name of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(name, () => resolve(name));
  });
  logger.info(`${signal}: shutting down`);
  for (const cleanup of cleanups) {
    try {
      await cleanup();
    } catch (error) {
      logger.warn(`during shutdown: ${describeError(error)}`);
    }
  }
  await communicator.destroy();
  Deno.exit(0);
}
