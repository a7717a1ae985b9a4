/**
 * The client's connection to Main (spec 3.1): verifying that a proxy is a
 * Main, retrying while it is unreachable or has nothing to hand out, watching
 * it every second so the state line tells the truth, and the Authenticator
 * and MediaCatalog it hands out.
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
import { isUnreachable } from "./discovery.ts";
import type { ClientSettings } from "./client_settings.ts";
import { CancelledError, describeFailure, explain, isNotThere, UserError } from "./client_text.ts";

/** How long any remote call may take before the client gives up on it (ms). */
export const CALL_TIMEOUT = 5000;

/** How long Main may take to answer a watch ping (ms): the state line must not lag behind. */
const WATCH_TIMEOUT = 2000;

/** Where the connection stands, as the state line says it. */
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "not connected";

/** The services Main hands out. */
export interface MainServices {
  auth: IceFlix.AuthenticatorPrx;
  catalog: IceFlix.MediaCatalogPrx;
}

/** What to call each service in messages. */
export const SERVICE_NAMES: { [K in keyof MainServices]: string } = {
  auth: "the authentication service",
  catalog: "the catalog service",
};

/** How to ask Main for each service. */
const FROM_MAIN: { [K in keyof MainServices]: (main: IceFlix.MainPrx) => PromiseLike<MainServices[K] | null> } = {
  auth: (main) => main.getAuthenticator(),
  catalog: (main) => main.getCatalogService(),
};

/**
 * `promise`, or CancelledError as soon as `signal` aborts. A remote call
 * cannot be taken back: its late answer is ignored.
 */
export function cancellable<T>(promise: PromiseLike<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return Promise.resolve(promise);
  if (signal.aborted) return Promise.reject(new CancelledError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new CancelledError());
    signal.addEventListener("abort", onAbort, { once: true });
    Promise.resolve(promise).then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/**
 * `promise`, bounded by `ms` on our side too: a watch must never stay stuck
 * on one call, whatever the Ice invocation timeout does.
 */
export function bounded<T>(promise: PromiseLike<T>, ms: number): Promise<T> {
  return cancellable(promise, AbortSignal.timeout(ms)).catch((error) => {
    throw error instanceof CancelledError ? new Ice.InvocationTimeoutException() : error;
  });
}

/** Waits `ms`, or rejects with CancelledError when `signal` aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return cancellable(new Promise<void>((resolve) => timer = setTimeout(resolve, ms)), signal)
    .finally(() => clearTimeout(timer));
}

/** What the connection tells the rest of the client. */
export interface ConnectionEvents {
  /** A message for the user. */
  print(text: string): void;
  /** The state changed: redraw the state line. */
  changed(): void;
  /** Main answers again after it was lost (the platform may have restarted). */
  back(): void;
}

/** The connection to Main, the services it handed out, and its watch. */
export class MainConnection {
  readonly #communicator: Ice.Communicator;
  readonly #settings: ClientSettings;
  readonly #events: ConnectionEvents;
  #state: ConnectionState = "not connected";
  /** The Main in use: the one given at start until `connect PROXY` verifies another. */
  #proxyText: string;
  #main: IceFlix.MainPrx | undefined;
  /** Set when the target answers but is not a Main: watching it again is pointless. */
  #notAMain = false;
  #services: Partial<MainServices> = {};
  #watching = false;

  constructor(communicator: Ice.Communicator, settings: ClientSettings, events: ConnectionEvents) {
    this.#communicator = communicator;
    this.#settings = settings;
    this.#events = events;
    this.#proxyText = settings.mainProxy;
  }

  /** Where the connection stands. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** The proxy of the Main in use. */
  get proxyText(): string {
    return this.#proxyText;
  }

  /** Changes the state; Main answering again after it was lost is announced, and the cached services dropped. */
  #setState(state: ConnectionState): void {
    const before = this.#state;
    if (before === state) return;
    this.#state = state;
    this.#events.changed();
    if (state === "connected" && before === "reconnecting") {
      this.#services = {};
      this.#events.print(`Main at ${this.#proxyText} answers again`);
      this.#events.back();
    }
  }

  /**
   * Connects to Main at `proxyText` (default: the one given at start),
   * verifying that it is a Main, with the retries of spec 3.1. If it fails,
   * the Main in use stays the one before.
   */
  async connect(proxyText = this.#settings.mainProxy, signal?: AbortSignal): Promise<void> {
    let proxy: Ice.ObjectPrx;
    try {
      proxy = this.#communicator.stringToProxy(proxyText).ice_invocationTimeout(CALL_TIMEOUT);
    } catch {
      throw new UserError(`"${proxyText}" is not a proxy (e.g. Main:tcp -h 127.0.0.1 -p 10010)`);
    }
    // Trying another Main while this one answers: the state stays "connected" (to this one) meanwhile.
    const switching = proxyText !== this.#proxyText && this.#state === "connected";
    if (!switching) this.#setState("connecting");
    this.#events.print(`connecting to Main at ${proxyText}`);
    try {
      const main = await this.#retrying(proxyText, "", () => this.#verify(proxy, proxyText), signal);
      this.#proxyText = proxyText;
      this.#main = main;
      this.#notAMain = false;
      this.#services = {};
      this.#setState("connected");
      this.#events.print(`connected to Main at ${proxyText}`);
      // Maybe another platform, or the same one restarted: the session is renewed there.
      this.#events.back();
    } catch (error) {
      if (switching) {
        if (error instanceof CancelledError) throw error;
        throw new UserError(`${explain(error)}; still using Main at ${this.#proxyText}`);
      }
      this.#setState("not connected");
      if (error instanceof UserError && /is not an IceFlix Main/.test(error.message)) {
        this.#notAMain = proxyText === this.#proxyText;
      }
      throw error;
    }
  }

  /** `proxy` as a Main, if the object there says it is one (checkedCast asks it). */
  async #verify(proxy: Ice.ObjectPrx, proxyText: string): Promise<IceFlix.MainPrx> {
    let main: IceFlix.MainPrx | null;
    try {
      main = await IceFlix.MainPrx.checkedCast(proxy);
    } catch (error) {
      if (!isNotThere(error)) throw error;
      main = null;
    }
    if (!main) throw new UserError(`${proxyText} answers, but it is not an IceFlix Main (wrong port or identity?)`);
    return main;
  }

  /**
   * Runs `call`, again up to `attempts` in all with `retryPause` seconds
   * between them, while Main is unreachable or answers TemporaryUnavailable
   * (spec 3.1), telling the user about each attempt. Ctrl-C (`signal`) ends it.
   */
  async #retrying<T>(
    proxyText: string,
    service: string,
    call: () => PromiseLike<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    const { attempts, retryPause } = this.#settings;
    for (let attempt = 1;; attempt++) {
      try {
        const result = await cancellable(call(), signal);
        // Only the Main in use makes the state; one being tried does not.
        if (proxyText === this.#proxyText && this.#state !== "connecting") this.#setState("connected");
        return result;
      } catch (error) {
        const unavailable = error instanceof IceFlix.TemporaryUnavailable;
        if (!unavailable && !isUnreachable(error)) throw error;
        if (!unavailable && proxyText === this.#proxyText && this.#state === "connected") {
          this.#setState("reconnecting");
        }
        const problem = unavailable
          ? `Main has no ${service} available yet`
          : `Main at ${proxyText} is unreachable (${describeFailure(error)})`;
        if (attempt >= attempts) {
          throw new UserError(`${problem}; gave up after ${attempt} attempt${attempt === 1 ? "" : "s"}`);
        }
        this.#events.print(`${problem}; attempt ${attempt} of ${attempts}, retrying in ${retryPause} s`);
        await pause(retryPause * 1000, signal);
      }
    }
  }

  /** The Main in use, connecting first (with retries) if it does not answer now. */
  async #currentMain(signal?: AbortSignal): Promise<IceFlix.MainPrx> {
    if (this.#main && this.#state === "connected") return this.#main;
    const proxy = this.#communicator.stringToProxy(this.#proxyText).ice_invocationTimeout(CALL_TIMEOUT);
    const main = await this.#retrying(this.#proxyText, "", () => this.#verify(proxy, this.#proxyText), signal);
    this.#main = main;
    this.#setState("connected");
    return main;
  }

  /** The Authenticator or MediaCatalog Main hands out, asked once and kept while it answers. */
  async service<K extends keyof MainServices>(kind: K, signal?: AbortSignal): Promise<MainServices[K]> {
    const known = this.#services[kind];
    if (known && this.#state === "connected") return known;
    const main = await this.#currentMain(signal);
    const name = SERVICE_NAMES[kind].replace(/^the /, "");
    const service = await this.#retrying(this.#proxyText, name, () => FROM_MAIN[kind](main), signal);
    if (!service) throw new UserError(`Main handed out no ${name}`);
    const bounded = service.ice_invocationTimeout(CALL_TIMEOUT) as MainServices[K];
    this.#services[kind] = bounded;
    return bounded;
  }

  /** Calls a service Main hands out; if that one is gone, asks Main for another live one and calls it. */
  async use<K extends keyof MainServices, T>(
    kind: K,
    call: (service: MainServices[K]) => PromiseLike<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    try {
      return await cancellable(call(await this.service(kind, signal)), signal);
    } catch (error) {
      if (!isUnreachable(error)) throw error;
      delete this.#services[kind];
      try {
        return await cancellable(call(await this.service(kind, signal)), signal);
      } catch (again) {
        if (!isUnreachable(again)) throw again;
        throw new UserError(explain(again, SERVICE_NAMES[kind]));
      }
    }
  }

  /**
   * Pings the Main in use (called every second): the state line turns to
   * "reconnecting" as soon as Main stops answering, and back when it
   * answers again, without waiting for a command to fail.
   */
  async watch(): Promise<void> {
    if (this.#watching || this.#state === "connecting" || this.#notAMain) return;
    this.#watching = true;
    const before = this.#state;
    try {
      const proxy = this.#communicator.stringToProxy(this.#proxyText).ice_invocationTimeout(WATCH_TIMEOUT);
      if (this.#main) await bounded(proxy.ice_ping(), WATCH_TIMEOUT);
      else this.#main = await bounded(this.#verify(proxy, this.#proxyText), WATCH_TIMEOUT);
      // A connect may have begun meanwhile: it decides.
      if ((this.#state as ConnectionState) === "connecting") return;
      if (before === "not connected") this.#events.print(`connected to Main at ${this.#proxyText}`);
      this.#setState("connected");
    } catch (error) {
      if (this.#state !== "connected") {
        if (error instanceof UserError) this.#notAMain = true;
        return;
      }
      this.#setState("reconnecting");
      this.#events.print(
        `Main at ${this.#proxyText} stopped answering (${describeFailure(error)}); reconnecting by itself`,
      );
    } finally {
      this.#watching = false;
    }
  }
}
