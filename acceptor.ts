/**
 * Server-side TCP for Ice for JavaScript.
 *
 * Ice for JavaScript 3.7 only makes outgoing connections: an object adapter
 * with `Endpoints` is refused ("object adapter endpoints not supported"). This
 * module adds the missing half. It listens with `node:net`, and hands every
 * accepted socket to the same connection class (`ConnectionI`) that Ice uses
 * for outgoing connections, marked as incoming and bound to the adapter. From
 * then on the Ice runtime itself reads requests, dispatches them to servants
 * and writes replies, so any Ice program (C++, Python, Java, JS) and IceStorm
 * can call our servants.
 *
 * Every Ice server and IceStorm subscriber in IceFlix creates its object
 * adapter through {@linkcode createObjectAdapter}.
 *
 * @module
 */
import { Ice } from "ice";
import net from "node:net";
import os from "node:os";
import { ConnectionGate, connectionLimits, watchDescriptors } from "./connection_limits.ts";
import "./ice_dispatch.ts";
import "./ice_tcp.ts";
import { createLogger } from "./log.ts";

/** The parts of an Ice endpoint object (`TcpEndpointI`) used here. */
interface TcpEndpoint {
  _instance: unknown;
  _host: string;
  _port: number;
  protocol(): string;
  createEndpoint(host: string, port: number, connectionId: string): TcpEndpoint;
}

/** The parts of Ice's connection class (`ConnectionI`) used here. */
interface IncomingConnection {
  start(): PromiseLike<void>;
  activate(): void;
  message(operation: number): void;
  destroy(reason: number): void;
  waitUntilFinished(): PromiseLike<void>;
}

/** The parts of Ice's TCP transceiver used here. */
interface TcpTransceiver {
  socketBytesAvailable(data: Uint8Array): void;
  socketClosed(error?: unknown): void;
  socketError(error: unknown): void;
}

/** The parts of Ice's connection monitor (`FactoryACMMonitor`) used here. */
interface ConnectionMonitor {
  swapReapedConnections(): unknown[] | null;
  destroy(): void;
}

/** The communicator's private `Instance`, as far as it is used here. */
interface CommunicatorInstance {
  endpointFactoryManager(): { create(text: string, oaEndpoint: boolean): TcpEndpoint };
  initializationData(): { properties: Ice.Properties; logger: Ice.Logger };
}

/**
 * Ice internals that the `ice` package exports on its `Ice` namespace but does
 * not declare in its typings. They are stable for the pinned ice@3.7.110.
 */
const internals = Ice as unknown as {
  ACMConfig: new (...args: unknown[]) => { close: unknown; timeout: number };
  ACMClose: { CloseOnIdle: unknown };
  FactoryACMMonitor: new (instance: CommunicatorInstance, config: unknown) => ConnectionMonitor;
  TcpTransceiver: { createIncoming(instance: unknown, socket: net.Socket): TcpTransceiver };
  ConnectionI: {
    new (
      communicator: Ice.Communicator,
      instance: CommunicatorInstance,
      monitor: ConnectionMonitor,
      transceiver: TcpTransceiver,
      endpoint: TcpEndpoint,
      incoming: boolean,
      adapter: Ice.ObjectAdapter,
    ): IncomingConnection;
    ObjectAdapterDeactivated: number;
  };
  SocketOperation: { Write: number };
  Timer: { setImmediate(callback: () => void): void };
};

/** One bound listening socket and the endpoint it serves. */
interface Listener {
  /** Replaced when the listener is opened again after running out of descriptors. */
  server: net.Server;
  endpoint: TcpEndpoint;
}

/** Incoming connections still open, over every adapter of this process. */
const openConnections = new Set<IncomingConnection>();

/**
 * The number of incoming connections currently open in this process, over
 * every adapter. Tests use it to check that shutdown leaves nothing behind
 * (Deno's sanitizers do not see `node:net` sockets).
 */
export function openIncomingConnections(): number {
  return openConnections.size;
}

/**
 * Creates an object adapter that accepts connections at the endpoints of
 * property `<name>.Endpoints`, exactly as a C++ or Python Ice server would.
 *
 * - Only `tcp` endpoints are supported; `-h` (address, `*` or none for every
 *   interface), `-p` (`0` or none for a port chosen by the system) and `-t`
 *   keep their usual Ice meaning.
 * - The proxies the adapter makes carry the real bound address and port,
 *   unless `<name>.PublishedEndpoints` says otherwise.
 * - `deactivate()` / `destroy()` on the adapter, and so `communicator.destroy()`,
 *   first stop listening and close the incoming connections; dispatches in
 *   progress finish.
 * - Incoming connections are limited (connection_limits.ts): a cap per
 *   adapter and per remote host, a deadline for the first message, idle ones
 *   closed; accept errors are logged once per burst and retried.
 * - With `<name>.AdapterId` (and `<name>.ReplicaGroupId`) and a default
 *   locator (`Ice.Default.Locator`, e.g. IceGrid's), activation registers the
 *   endpoints with the locator registry and deactivation withdraws them (see
 *   {@linkcode locatorRegistration}).
 *
 * The adapter is returned not yet activated, as by `createObjectAdapter`.
 */
export async function createObjectAdapter(
  communicator: Ice.Communicator,
  name: string,
): Promise<Ice.ObjectAdapter> {
  const properties = communicator.getProperties();
  const endpointsText = properties.getProperty(`${name}.Endpoints`).trim();
  if (endpointsText === "") {
    throw new Error(`property ${name}.Endpoints is not set: the adapter would not be reachable`);
  }
  const instance = (communicator as unknown as { _instance: CommunicatorInstance })._instance;
  const endpoints = splitEndpoints(endpointsText).map((text) => {
    const endpoint = instance.endpointFactoryManager().create(text, true);
    if (endpoint.protocol() !== "tcp") {
      throw new Error(`${name}.Endpoints: only tcp endpoints can be served, not \`${text}'`);
    }
    return endpoint;
  });

  const listeners: Listener[] = [];
  try {
    for (const endpoint of endpoints) {
      listeners.push({ server: await listen(endpoint), endpoint });
    }
  } catch (error) {
    listeners.forEach((listener) => listener.server.close());
    throw error;
  }

  // Ice for JavaScript refuses to create an adapter that has Endpoints, so that
  // property is hidden while the adapter is created. Unless the configuration
  // publishes endpoints of its own, PublishedEndpoints is set meanwhile to the
  // real bound addresses: the adapter reads it once, for the proxies it makes.
  const publishedText = properties.getProperty(`${name}.PublishedEndpoints`);
  const bound = listeners.flatMap(({ server, endpoint }) => publishedEndpoints(server, endpoint));
  properties.setProperty(`${name}.Endpoints`, "");
  if (publishedText === "") {
    properties.setProperty(`${name}.PublishedEndpoints`, bound.map(String).join(":"));
  }
  let adapter: Ice.ObjectAdapter;
  try {
    adapter = await communicator.createObjectAdapter(name);
  } catch (error) {
    listeners.forEach((listener) => listener.server.close());
    throw error;
  } finally {
    properties.setProperty(`${name}.Endpoints`, endpointsText);
    properties.setProperty(`${name}.PublishedEndpoints`, publishedText);
  }

  // Active Connection Management for the server side, configured as in C++ (Ice.ACM.Server.* over Ice.ACM.*), but
  // closing idle connections by default, gracefully, at half the gate's idle limit: Ice peers are told and
  // reconnect when they need to; the gate destroys what ignores the close (connection_limits.ts).
  const { properties: props, logger } = instance.initializationData();
  const limits = connectionLimits(props);
  // The gate logs as the adapter, on stderr with the services' own lines (Ice's default logger writes on stdout).
  const gate = new ConnectionGate(limits, createLogger(name, props));
  const serverDefaults = new internals.ACMConfig();
  serverDefaults.close = internals.ACMClose.CloseOnIdle;
  serverDefaults.timeout = limits.idle / 2;
  const acm = new internals.ACMConfig(
    props,
    logger,
    "Ice.ACM.Server",
    new internals.ACMConfig(props, logger, "Ice.ACM", serverDefaults),
  );
  const monitor = new internals.FactoryACMMonitor(instance, acm);

  const adapterConnections = new Set<IncomingConnection>();
  const accept = (socket: net.Socket, endpoint: TcpEndpoint) => {
    const transceiver = internals.TcpTransceiver.createIncoming(endpoint._instance, socket);
    // Ice's transceiver registers these handlers itself only for the sockets it
    // connects; for an accepted socket they are ours to wire.
    socket.on("data", (data) => transceiver.socketBytesAvailable(data));
    socket.on("close", (hadError) => internals.Timer.setImmediate(() => transceiver.socketClosed(hadError)));
    socket.on("error", (error) => internals.Timer.setImmediate(() => transceiver.socketError(error)));

    const connection = new internals.ConnectionI(communicator, instance, monitor, transceiver, endpoint, true, adapter);
    adapterConnections.add(connection);
    openConnections.add(connection);
    connection.start().then(
      () => connection.activate(),
      () => {/* the failure is the connection's to report; it ends as finished */},
    );
    // The server speaks first: send the ValidateConnection message.
    connection.message(internals.SocketOperation.Write);
    connection.waitUntilFinished().then(() => {
      adapterConnections.delete(connection);
      openConnections.delete(connection);
      monitor.swapReapedConnections();
    });
  };

  const serve = (server: net.Server, endpoint: TcpEndpoint) => {
    server.removeAllListeners("error");
    server.on("error", (error) => gate.acceptFailed(error));
    server.on("connection", (socket: net.Socket) => {
      // An exception thrown here would vanish inside node:net: log it and drop the socket.
      try {
        if (gate.admit(socket)) accept(socket, endpoint);
      } catch (error) {
        logger.error(`${name}: cannot accept a connection: ${error}`);
        socket.destroy();
      }
    });
  };
  for (const { server, endpoint } of listeners) serve(server, endpoint);
  // Out of descriptors, Deno's node:net listener stops accepting for good: logged, and opened again on the same
  // address and port once descriptors are free (connection_limits.ts).
  const stopWatching = watchDescriptors({
    exhausted: (error) => gate.acceptFailed(error),
    recovered: () => {
      for (const listener of listeners) {
        const { port } = listener.server.address() as net.AddressInfo;
        listener.server.close();
        listenAgain(listener.endpoint, port).then((server) => {
          listener.server = server;
          serve(server, listener.endpoint);
        }, (error) => gate.acceptFailed(error));
      }
    },
  });

  const registration = locatorRegistration(communicator, name, adapter);
  if (registration !== undefined) {
    const activate = adapter.activate.bind(adapter);
    adapter.activate = () => registration.register().then(() => activate()) as unknown as Ice.AsyncResultBase<void>;
  }

  // Deactivation closes the listeners and the incoming connections before
  // Ice's own deactivation. communicator.destroy() deactivates every adapter
  // and waits for it before it stops the timer these connections rely on.
  const deactivate = adapter.deactivate.bind(adapter);
  let closing: Promise<void> | undefined;
  adapter.deactivate = () => {
    closing ??= (async () => {
      // Withdrawn first, as C++ does, so the locator stops sending clients here while we close.
      await registration?.withdraw();
      // node:net reports a server closed only once its sockets are gone too.
      const closed = listeners.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve())));
      await Promise.all([...adapterConnections].map((connection) => {
        connection.destroy(internals.ConnectionI.ObjectAdapterDeactivated);
        return connection.waitUntilFinished();
      }));
      await Promise.all(closed);
      stopWatching();
      monitor.destroy();
      await deactivate();
    })();
    return closing as unknown as Ice.AsyncResultBase<void>;
  };
  return adapter;
}

/** Splits `tcp -p 1:tcp -h x` at the colons that separate endpoints. */
function splitEndpoints(text: string): string[] {
  return text.split(":").map((part) => part.trim()).filter((part) => part !== "");
}

/** Binds a listening socket for `endpoint` at `port` (by default the endpoint's; 0 lets the system choose). */
function listen(endpoint: TcpEndpoint, port = endpoint._port): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer({ noDelay: true });
    server.once("error", (error: NodeJS.ErrnoException) => {
      reject(new Error(`cannot listen on ${endpoint._host || "*"}:${endpoint._port}: ${error.message}`));
    });
    server.listen({ host: endpoint._host || undefined, port, exclusive: true }, () => {
      server.removeAllListeners("error");
      server.on("error", (error) => console.error(`listener error: ${error}`));
      resolve(server);
    });
  });
}

/** {@linkcode listen} again at the port the listener had, retried every second until it works (descriptors). */
async function listenAgain(endpoint: TcpEndpoint, port: number): Promise<net.Server> {
  for (let attempt = 1;; attempt++) {
    try {
      return await listen(endpoint, port);
    } catch (error) {
      if (attempt === 30) throw error;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

/**
 * The endpoints to publish for a bound listener: its address and real port;
 * for a wildcard address, every non-loopback address of the machine (or the
 * loopback one when there is no other), as C++ Ice does.
 */
function publishedEndpoints(server: net.Server, endpoint: TcpEndpoint): TcpEndpoint[] {
  const port = (server.address() as net.AddressInfo).port;
  if (endpoint._host !== "" && endpoint._host !== "0.0.0.0" && endpoint._host !== "::") {
    return [endpoint.createEndpoint(endpoint._host, port, "")];
  }
  const addresses = Object.values(os.networkInterfaces()).flat()
    .filter((address) => address !== undefined && address.family === "IPv4" && !address.internal)
    .map((address) => address!.address);
  const hosts = addresses.length > 0 ? addresses : ["127.0.0.1"];
  return hosts.map((host) => endpoint.createEndpoint(host, port, ""));
}

/** Bounds each call to the locator registry, so that an unreachable registry fails a start instead of hanging it. */
const LOCATOR_REGISTRY_TIMEOUT_MS = 5000;

/** An adapter's entry in the locator registry: made at activation, withdrawn at deactivation. */
interface LocatorRegistration {
  register(): Promise<void>;
  withdraw(): Promise<void>;
}

/**
 * What Ice for C++ does for an adapter with an id and Ice for JavaScript does
 * not ("setLocator not supported"): when `<name>.AdapterId` is set and the
 * communicator has a default locator, `register` tells the locator registry
 * the adapter's endpoints (`setAdapterDirectProxy`, or
 * `setReplicatedAdapterDirectProxy` with `<name>.ReplicaGroupId`), so that
 * indirect proxies (`identity@adapter-id`, well-known objects, replica groups)
 * reach it; `withdraw` clears them. Undefined when there is nothing to do.
 *
 * A refused registration (unknown adapter id, unknown replica group, id used
 * by another live adapter) or an unreachable registry fails the activation
 * with a message that says which; a failed withdrawal is only logged, since
 * the process is going away anyway and IceGrid also forgets the endpoints of
 * a server that ended.
 */
function locatorRegistration(
  communicator: Ice.Communicator,
  name: string,
  adapter: Ice.ObjectAdapter,
): LocatorRegistration | undefined {
  const properties = communicator.getProperties();
  const adapterId = properties.getProperty(`${name}.AdapterId`).trim();
  const replicaGroupId = properties.getProperty(`${name}.ReplicaGroupId`).trim();
  const locator = communicator.getDefaultLocator();
  if (adapterId === "" || locator === null) return undefined;
  const logger = communicator.getLogger();
  const what = `adapter ${name} (id ${adapterId}${replicaGroupId ? `, replica group ${replicaGroupId}` : ""})`;

  const update = async (proxy: Ice.ObjectPrx | null) => {
    const registry = await locator.ice_invocationTimeout(LOCATOR_REGISTRY_TIMEOUT_MS).getRegistry();
    if (registry === null) throw new Error(`the locator ${locator} has no registry`);
    const timed = registry.ice_invocationTimeout(LOCATOR_REGISTRY_TIMEOUT_MS);
    // The Slice allows a null proxy here (it clears the entry); the typings do not say so.
    const endpoints = proxy as Ice.ObjectPrx;
    if (replicaGroupId === "") await timed.setAdapterDirectProxy(adapterId, endpoints);
    else await timed.setReplicatedAdapterDirectProxy(adapterId, replicaGroupId, endpoints);
  };

  let registered = false;
  return {
    async register() {
      // Any identity will do: the registry keeps only the endpoints (C++ Ice registers "dummy" too).
      const proxy = adapter.createProxy(Ice.stringToIdentity("dummy"));
      try {
        await update(proxy);
      } catch (error) {
        throw new Error(`cannot register ${what} with the locator registry: ${registryRefusal(error)}`);
      }
      registered = true;
      if (properties.getPropertyAsInt("Ice.Trace.Locator") > 0) {
        logger.trace("Locator", `registered ${what} at ${proxy.ice_getEndpoints().map(String).join(":")}`);
      }
    },
    async withdraw() {
      if (!registered) return;
      try {
        await update(null);
      } catch (error) {
        logger.warning(`cannot withdraw ${what} from the locator registry: ${registryRefusal(error)}`);
      }
    },
  };
}

/** Says why the locator registry refused a registration, in words. */
function registryRefusal(error: unknown): string {
  if (error instanceof Ice.AdapterNotFoundException) return "the registry does not know this adapter id";
  if (error instanceof Ice.InvalidReplicaGroupIdException) return "the registry does not know this replica group";
  if (error instanceof Ice.AdapterAlreadyActiveException) return "another live adapter holds this id";
  return error instanceof Ice.Exception ? error.ice_id() : String(error);
}
