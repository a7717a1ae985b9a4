/**
 * Limits on the incoming connections of an object adapter (acceptor.ts), so
 * that no service dies of load: a cap per adapter and per remote host, a
 * deadline for the first complete message, idle connections closed, and
 * accept errors (out of descriptors) logged once per burst while the listener
 * keeps retrying.
 *
 * The defaults are sized from the process's descriptor limit (`ulimit -n`):
 * together the connections leave a quarter of it for the service's own files,
 * outgoing connections and senders.
 *
 * @module
 */
import type { Ice } from "ice";
import type net from "node:net";
import { type Logger, OncePerBurst } from "./log.ts";
import { plainAddress } from "./peer_address.ts";

/** What {@linkcode ConnectionGate} enforces; read by {@linkcode connectionLimits}. */
export interface ConnectionLimits {
  /** Incoming connections open at once per adapter (`IceFlix.Connections.Max`). */
  max: number;
  /** ... of them from one remote host (`IceFlix.Connections.MaxPerHost`). */
  maxPerHost: number;
  /** ms a new connection has to send its first complete Ice message (`IceFlix.Connections.FirstMessageTimeout`). */
  firstMessage: number;
  /** ms without a byte either way after which a connection is closed (`IceFlix.Connections.IdleTimeout`). */
  idle: number;
}

/** Whether this program holds `permission` (without asking anyone). */
function granted(permission: Deno.PermissionDescriptor): boolean {
  return Deno.permissions.querySync(permission).state === "granted";
}

/** The descriptor limit assumed when /proc/self/limits cannot be read (a common `ulimit -n`). */
const DEFAULT_DESCRIPTORS = 1024;

/**
 * The soft limit of open files of this process (`ulimit -n`): from
 * `ICEFLIX_DESCRIPTOR_LIMIT`, which ./run_service sets (Deno lets only a
 * program with every permission read /proc/self), else /proc/self/limits.
 */
export function descriptorLimit(): number {
  // Asked first: a missing permission must not become a prompt on the client's terminal.
  if (granted({ name: "env", variable: "ICEFLIX_DESCRIPTOR_LIMIT" })) {
    const given = Number(Deno.env.get("ICEFLIX_DESCRIPTOR_LIMIT"));
    if (Number.isInteger(given) && given > 0) return given;
  }
  if (!granted({ name: "read", path: "/proc/self/limits" })) return DEFAULT_DESCRIPTORS;
  try {
    const limits = Deno.readTextFileSync("/proc/self/limits");
    const soft = /^Max open files\s+(\d+)/m.exec(limits)?.[1];
    return soft === undefined ? DEFAULT_DESCRIPTORS : Number(soft);
  } catch {
    return DEFAULT_DESCRIPTORS;
  }
}

/**
 * The limits of `properties`, the defaults sized from `descriptors`: three
 * quarters of them for incoming connections (at least 16), a quarter of those
 * per host (at least 8, so that one host, or one machine's own services,
 * cannot take them all); a first message within 10 s; 60 s idle.
 */
export function connectionLimits(properties: Ice.Properties, descriptors = descriptorLimit()): ConnectionLimits {
  const max = properties.getPropertyAsIntWithDefault("IceFlix.Connections.Max", Math.max(16, (descriptors * 3) >> 2));
  const perHost = properties.getPropertyAsIntWithDefault("IceFlix.Connections.MaxPerHost", Math.max(8, max >> 2));
  const seconds = (name: string, fallback: number) => {
    const value = Number(properties.getPropertyWithDefault(name, String(fallback)));
    return Number.isFinite(value) && value > 0 ? value * 1000 : fallback * 1000;
  };
  return {
    max: Math.max(1, max),
    maxPerHost: Math.max(1, Math.min(perHost, max)),
    firstMessage: seconds("IceFlix.Connections.FirstMessageTimeout", 10),
    idle: seconds("IceFlix.Connections.IdleTimeout", 60),
  };
}

/** The Ice protocol header: magic (4), versions (4), type, compression, message size (int32 LE, header included). */
const HEADER_SIZE = 14;
const SIZE_OFFSET = 10;

/**
 * The gate of one adapter's listeners: {@linkcode admit} says whether an
 * accepted socket may become an Ice connection, and watches the ones it
 * admits (first message, idleness) until they close.
 */
export class ConnectionGate {
  readonly #limits: ConnectionLimits;
  readonly #perHost = new Map<string, number>();
  #open = 0;
  readonly #refused: OncePerBurst;
  readonly #slow: OncePerBurst;
  readonly #idle: OncePerBurst;
  readonly #acceptErrors: OncePerBurst;

  constructor(limits: ConnectionLimits, logger: Logger) {
    this.#limits = limits;
    this.#refused = new OncePerBurst((message) => logger.warn(message));
    this.#slow = new OncePerBurst((message) => logger.warn(message));
    this.#idle = new OncePerBurst((message) => logger.info(message));
    this.#acceptErrors = new OncePerBurst((message) => logger.error(message));
  }

  /** Incoming connections open now. */
  get open(): number {
    return this.#open;
  }

  /**
   * Whether `socket` may become a connection: refused (closed at once, the
   * refusal logged once per burst) past the cap of the adapter or of its
   * host. An admitted socket is counted until it closes, closed if its first
   * complete message is late, and closed after a time without traffic.
   */
  admit(socket: net.Socket): boolean {
    const host = plainAddress(socket.remoteAddress ?? "?");
    const fromHost = this.#perHost.get(host) ?? 0;
    if (this.#open >= this.#limits.max || fromHost >= this.#limits.maxPerHost) {
      const which = this.#open >= this.#limits.max
        ? `${this.#limits.max} open (IceFlix.Connections.Max)`
        : `${this.#limits.maxPerHost} open from ${host} (IceFlix.Connections.MaxPerHost)`;
      this.#refused.note(`refused connections from ${host}: ${which}`);
      socket.destroy();
      return false;
    }
    this.#open++;
    this.#perHost.set(host, fromHost + 1);
    socket.once("close", () => {
      this.#open--;
      const left = this.#perHost.get(host)! - 1;
      if (left === 0) this.#perHost.delete(host);
      else this.#perHost.set(host, left);
    });
    this.#watchFirstMessage(socket, host);
    socket.setTimeout(this.#limits.idle, () => {
      this.#idle.note(`closed connections idle for ${this.#limits.idle / 1000} s (from ${host}, ...)`);
      socket.destroy();
    });
    return true;
  }

  /** Accepting failed (out of descriptors: EMFILE, ENFILE); the listener is to be opened again after a back-off. */
  acceptFailed(error: unknown): void {
    this.#acceptErrors.note(`cannot accept connections (${error}); listening again once descriptors are free`);
  }

  /** Closes `socket` unless a whole Ice message has arrived on it within the limit. */
  #watchFirstMessage(socket: net.Socket, host: string): void {
    const header = new Uint8Array(HEADER_SIZE);
    let received = 0;
    const timer = setTimeout(() => {
      this.#slow.note(
        `closed connections from ${host} with no complete message within ` +
          `${this.#limits.firstMessage / 1000} s (IceFlix.Connections.FirstMessageTimeout)`,
      );
      socket.destroy();
    }, this.#limits.firstMessage);
    const onData = (chunk: Uint8Array) => {
      if (received < HEADER_SIZE) header.set(chunk.subarray(0, HEADER_SIZE - received), received);
      received += chunk.length;
      if (received < HEADER_SIZE) return;
      const size = new DataView(header.buffer).getInt32(SIZE_OFFSET, true);
      // A size below the header's is garbage: Ice itself closes such a connection.
      if (received >= size) done();
    };
    const done = () => {
      clearTimeout(timer);
      socket.off("data", onData);
    };
    socket.on("data", onData);
    socket.once("close", done);
  }
}

/** How often the descriptors in use are counted (ms); the first back-off of a listener out of descriptors. */
const DESCRIPTOR_CHECK = 1000;

/** A file this process may always read: opening it tells whether a descriptor is left. */
const PROBE_FILE = new URL(import.meta.url).pathname;

/**
 * Calls `listener.exhausted()` while this process is out of descriptors and
 * `listener.recovered()` once some are free again, checking every second
 * (the timer does not keep the process alive); returns the way to stop.
 *
 * Why: Deno's node:net listener stops accepting for good after an accept()
 * that failed for want of a descriptor, and says nothing. Opening a file
 * every second tells when that may have happened (Deno lets only a program
 * with every permission count /proc/self/fd), so the acceptor can log it and
 * listen again. A shortage shorter than a second can go unseen: the caps
 * (three quarters of the limit) keep incoming connections from causing one.
 */
export function watchDescriptors(listener: { exhausted(error: unknown): void; recovered(): void }): () => void {
  const limit = descriptorLimit();
  if (!granted({ name: "read", path: PROBE_FILE })) return () => {};
  let out = false;
  const timer = setInterval(() => {
    let error: unknown;
    try {
      Deno.openSync(PROBE_FILE).close();
    } catch (failure) {
      // EMFILE (os error 24) or ENFILE (23); anything else is not a shortage.
      if (/os error 2[34]\b/.test(String(failure))) error = `out of descriptors, ulimit -n ${limit}`;
    }
    if (error !== undefined) {
      out = true;
      listener.exhausted(error);
    } else if (out) {
      out = false;
      listener.recovered();
    }
  }, DESCRIPTOR_CHECK);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}
