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
import "./ice_timeouts.ts";
import { EventChannel } from "./events.ts";
import { createLogger, describeError, type Logger } from "./log.ts";
import { Trust } from "./trust.ts";

export { createLogger, describeError, type Logger, type LogLevel } from "./log.ts";

/** Seconds a call to another service may take before it counts as failed, unless configured. */
const DEFAULT_CALL_TIMEOUT = 3;

/** Seconds between announcements and liveness checks, unless configured. */
const DEFAULT_ANNOUNCE_INTERVAL = 5;

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

/**
 * Creates a communicator from the Ice configuration in `args` (see {@linkcode loadProperties}), after `configure`
 * has seen (and completed) the properties.
 */
export function initializeCommunicator(
  args: string[],
  configure: (properties: Ice.Properties) => void = () => {},
): Ice.Communicator {
  const initData = new Ice.InitializationData();
  initData.properties = loadProperties(args);
  configure(initData.properties);
  return Ice.initialize(initData);
}

/** The call timeout of `properties` (ms): see {@linkcode ServiceContext.callTimeout}. */
function callTimeoutOf(properties: Ice.Properties): number {
  return secondsProperty(properties, "IceFlix.Discovery.CallTimeout", DEFAULT_CALL_TIMEOUT) * 1000;
}

/**
 * A service's outgoing connections are established within the call timeout (`Ice.Override.ConnectTimeout`, unless
 * configured). Otherwise Ice gives a connection as long as its endpoint's `-t` says, which an announced proxy chooses:
 * a forged one at a socket that accepts and never answers held a descriptor for an hour (`-t 3600000`), or for ever
 * (`-t -1`), though the call itself had failed after the call timeout.
 */
function boundConnects(properties: Ice.Properties): void {
  if (properties.getProperty("Ice.Override.ConnectTimeout").trim() !== "") return;
  properties.setProperty("Ice.Override.ConnectTimeout", String(callTimeoutOf(properties)));
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

/** What every part of a service is built with: its Ice objects, its log, its IceStorm link and its timing. */
export interface ServiceContext {
  communicator: Ice.Communicator;
  properties: Ice.Properties;
  /** The service's object adapter, already listening, activated after setup. */
  adapter: Ice.ObjectAdapter;
  logger: Logger;
  /** The service's one IceStorm link, for discovery and for its own topics. */
  events: EventChannel;
  /**
   * How long a call to another service (or a ping) may take before that service counts as gone, dead or hung (ms;
   * property `IceFlix.Discovery.CallTimeout`, in seconds, default 3). Every call to another service carries it.
   */
  callTimeout: number;
  /** Seconds between announcements, liveness checks and periodic pulls (`IceFlix.Discovery.AnnounceInterval`, 5). */
  announceInterval: number;
  /** The installation secret, and what is admitted without proof of it. */
  trust: Trust;
}

/**
 * The context of a service listening at `adapter`, from the adapter's
 * communicator's properties.
 *
 * @throws Error when a timing property is nonsense, or the secret file is missing
 */
export async function createServiceContext(adapter: Ice.ObjectAdapter, logger: Logger): Promise<ServiceContext> {
  const communicator = adapter.getCommunicator();
  const properties = communicator.getProperties();
  return {
    communicator,
    properties,
    adapter,
    logger,
    events: new EventChannel(communicator, logger),
    callTimeout: callTimeoutOf(properties),
    announceInterval: secondsProperty(properties, "IceFlix.Discovery.AnnounceInterval", DEFAULT_ANNOUNCE_INTERVAL),
    trust: await Trust.load(communicator, logger),
  };
}

/** What {@linkcode ServiceOptions.setup} gets: the context, and a way to register cleanups. */
export interface ServiceSetup extends ServiceContext {
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
  setup(context: ServiceSetup): Promise<Ice.ObjectPrx>;
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
    communicator = initializeCommunicator(args, boundConnects);
    logger = createLogger(options.name, communicator.getProperties());
    const adapter = await createObjectAdapter(communicator, options.adapterName);
    const context = await createServiceContext(adapter, logger);
    // Registered first, so it runs last: the services' own cleanups still reach IceStorm.
    cleanups.unshift(() => context.events.close());
    const proxy = await options.setup({ ...context, onShutdown: (cleanup) => cleanups.unshift(cleanup) });
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
