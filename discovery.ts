/**
 * Service discovery, shared by every IceFlix service (spec 1.1).
 *
 * Each service instance has a unique id. It announces itself on topic
 * `ServiceAvailability` at start and every `IceFlix.Discovery.AnnounceInterval`
 * seconds, listens to the same topic, and keeps the live services of each kind
 * (authenticators, catalogs, media providers). Anyone can publish there, so
 * an announced service counts only once it has proven that it holds the
 * installation secret (trust.ts), or is admitted by the operator; the first
 * proxy proven for an id keeps it, and a proxy keeps its first id. A service
 * that stops answering a ping, or fails a call, is dropped;
 * {@linkcode Discovery.callAny} tries every known candidate in turn and fails
 * only when none is left.
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
import { TOPICS } from "./events.ts";
import { OncePerBurst } from "./log.ts";
import { describeError, type ServiceContext } from "./service.ts";
import { bindingOf, hostAndPort, ownConnection } from "./trust.ts";

/**
 * Announcements checked at once, at most: a flood of forged ones costs bounded work and connections, and the ones
 * left over are heard again at their next announcement.
 */
const MAX_PENDING_CHECKS = 32;

/**
 * Checks at once, beside those, of announcements whose every endpoint is on a host known to run IceFlix services
 * (this one, or one where a service proved the secret): a flood of forged announcements at tarpits elsewhere fills
 * the 32 and would leave a new service unfound, but a tarpit on one of these hosts would need a process there.
 */
const MAX_KNOWN_HOST_CHECKS = 8;

/** How long an announcement that failed its check is ignored without a new check (ms), and how many are kept. */
const REFUSAL_MEMORY = { ms: 60_000, entries: 4096 };

/**
 * Endpoints an announced proxy may have, at most: Ice tries them one after the other, each for up to the connect
 * timeout, even after the call that asked has timed out; a proxy with more is refused without a call. (A service
 * listening on every interface publishes one endpoint per address of its host.)
 */
const MAX_ENDPOINTS = 16;

/** The kinds of service that announce themselves, with their proxy types. */
export interface ServiceKinds {
  auth: IceFlix.AuthenticatorPrx;
  catalog: IceFlix.MediaCatalogPrx;
  media: IceFlix.StreamProviderPrx;
}

/** One kind of announced service: `auth`, `catalog` or `media`. */
export type ServiceKind = keyof ServiceKinds;

/** The Slice type id that an announced proxy of each kind must implement. */
const TYPE_IDS: Record<ServiceKind, string> = {
  auth: IceFlix.Authenticator.ice_staticId(),
  catalog: IceFlix.MediaCatalog.ice_staticId(),
  media: IceFlix.StreamProvider.ice_staticId(),
};

const CASTS: { [K in ServiceKind]: (proxy: Ice.ObjectPrx) => ServiceKinds[K] } = {
  auth: (proxy) => IceFlix.AuthenticatorPrx.uncheckedCast(proxy),
  catalog: (proxy) => IceFlix.MediaCatalogPrx.uncheckedCast(proxy),
  media: (proxy) => IceFlix.StreamProviderPrx.uncheckedCast(proxy),
};

/** What this service announces about itself, if it is one of the three kinds. */
export interface SelfAnnouncement {
  kind: ServiceKind;
  proxy: Ice.ObjectPrx;
}

/** Called with each service discovery finds. */
export type ServiceListener = (kind: ServiceKind, id: string, proxy: Ice.ObjectPrx) => void;

/** Whether `error` says the remote service is gone or hung, rather than that the request was refused. */
export function isUnreachable(error: unknown): boolean {
  return error instanceof Ice.LocalException && !(error instanceof Ice.CommunicatorDestroyedException);
}

/**
 * The live services this process knows, kept up to date from topic
 * `ServiceAvailability`.
 */
export class Discovery {
  /** This service instance's unique id, sent with every announcement. */
  readonly id: string = crypto.randomUUID();

  readonly #context: ServiceContext;
  readonly #self: SelfAnnouncement | undefined;
  /** Per kind, id -> proxy, each proxy already cast to its kind's type. */
  readonly #services: Record<ServiceKind, Map<string, Ice.ObjectPrx>> = {
    auth: new Map(),
    catalog: new Map(),
    media: new Map(),
  };
  readonly #next: Record<ServiceKind, number> = { auth: 0, catalog: 0, media: 0 };
  readonly #listeners: ServiceListener[] = [];
  /** Per kind, the requests waiting for a first service of that kind ({@linkcode someFound}). */
  readonly #waiting: Record<ServiceKind, (() => void)[]> = { auth: [], catalog: [], media: [] };
  /** Announcements being checked, by kind, id and proxy. */
  readonly #checking = new Map<string, Promise<void>>();
  /** How many of those have all their endpoints on {@linkcode #knownHosts}. */
  #checkingOnKnownHosts = 0;
  /** The hosts of this service's own endpoints, and of every service that proved the secret. */
  readonly #knownHosts = new Set<string>();
  /** Announcements that failed their check (kind, id and proxy), with when. */
  readonly #refused = new Map<string, number>();
  /** Per kind, the ids admitted without proof (spec-only services the operator let in). */
  readonly #admitted = new Set<string>();
  /** Refused announcements, logged once per burst: a flood of forged ones costs a line a minute. */
  readonly #refusals: OncePerBurst;
  #subscriber: Ice.ObjectPrx | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  /**
   * @param context the service's context: the announcement listener is added to its adapter
   * @param self what to announce, for an Authenticator, MediaCatalog or StreamProvider; nothing for Main or a client
   */
  constructor(context: ServiceContext, self?: SelfAnnouncement) {
    this.#context = context;
    this.#self = self;
    this.#refusals = new OncePerBurst((message) => context.logger.warn(message));
    this.#addHosts(context.adapter.createProxy(Ice.stringToIdentity("endpoints")));
    if (self) context.trust.serveProofs(context.adapter, { kind: self.kind, id: this.id }, self.proxy);
  }

  /**
   * Subscribes to `ServiceAvailability`, announces this service, and from now
   * on repeats the announcement, checks the known services and renews the
   * IceStorm subscriptions every announce interval.
   */
  async start(): Promise<void> {
    // The other services' logs name this one by its id ("auth service <id> gone"): say which process it is.
    if (this.#self) this.#context.logger.info(`announcing itself as ${this.#self.kind} service ${this.id}`);
    this.#subscriber = this.#context.adapter.addWithUUID(new AvailabilityListener(this));
    await this.#context.events.subscribe(TOPICS.serviceAvailability, this.#subscriber);
    await this.#tick();
  }

  /** Stops announcing and listening to announcements. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    if (this.#subscriber) await this.#context.events.unsubscribe(TOPICS.serviceAvailability, this.#subscriber);
  }

  /** Calls `listener` for every service found from now on (those known already are in {@linkcode services}). */
  onServiceAdded(listener: ServiceListener): void {
    this.#listeners.push(listener);
  }

  /**
   * Resolves once a service of `kind` is known, or after the call timeout. A
   * service that has just started knows nobody until the first announcements
   * it hears are proven: a request that needs another service waits for that
   * rather than fail in those first instants.
   */
  async someFound(kind: ServiceKind): Promise<void> {
    if (this.#services[kind].size > 0) return;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#waiting[kind].push(resolve);
    const timer = setTimeout(resolve, this.#context.callTimeout);
    await promise;
    clearTimeout(timer);
    this.#waiting[kind] = this.#waiting[kind].filter((waiting) => waiting !== resolve);
  }

  /** Whether service `id` of `kind` is known and proved the secret (rather than being admitted without proof). */
  isProven(kind: ServiceKind, id: string): boolean {
    return this.#services[kind].has(id) && !this.#admitted.has(`${kind} ${id}`);
  }

  /** The live services of `kind`, as id -> proxy. */
  services<K extends ServiceKind>(kind: K): ReadonlyMap<string, ServiceKinds[K]> {
    return this.#services[kind] as ReadonlyMap<string, Ice.ObjectPrx> as ReadonlyMap<string, ServiceKinds[K]>;
  }

  /** Forgets service `id` of `kind` (it failed a call), and closes its connection. */
  forget(kind: ServiceKind, id: string): void {
    this.#admitted.delete(`${kind} ${id}`);
    const proxy = this.#services[kind].get(id);
    if (!proxy) return;
    this.#services[kind].delete(id);
    this.#closeConnection(proxy);
    this.#context.logger.info(`${kind} service ${id} gone`);
  }

  /**
   * Calls `call` on a live service of `kind`: round-robin over the known
   * ones, moving on to the next when one is unreachable (and forgetting it),
   * so the call fails only when no candidate is left. Each candidate's proxy
   * carries a bounded invocation timeout. A user exception from the service
   * (e.g. `Unauthorized`) is its answer and is returned as it is.
   *
   * @throws IceFlix.TemporaryUnavailable when no service of `kind` answers
   */
  async callAny<K extends ServiceKind, T>(kind: K, call: (service: ServiceKinds[K]) => PromiseLike<T>): Promise<T> {
    const candidates = [...this.#services[kind]];
    const start = this.#next[kind]++ % Math.max(candidates.length, 1);
    for (let i = 0; i < candidates.length; i++) {
      const [id, proxy] = candidates[(start + i) % candidates.length];
      try {
        return await call(CASTS[kind](proxy.ice_invocationTimeout(this.#context.callTimeout)) as ServiceKinds[K]);
      } catch (error) {
        if (!isUnreachable(error)) throw error;
        this.#context.logger.warn(`${kind} service ${id} failed (${describeError(error)}); trying another`);
        this.forget(kind, id);
      }
    }
    throw new IceFlix.TemporaryUnavailable();
  }

  /**
   * An announcement arrived: check it and remember the service. Another
   * announcement of the same service arriving during the check shares it, so
   * a service is found once.
   */
  learn(kind: ServiceKind, id: string, proxy: Ice.ObjectPrx | null): Promise<void> {
    if (id === this.id || !proxy) return Promise.resolve();
    const key = JSON.stringify([kind, id, bindingOf(proxy)]);
    let check = this.#checking.get(key);
    if (check) return check;
    if (this.#isKnownOrRefused(kind, id, proxy, key)) return Promise.resolve();
    const onKnownHosts = this.#onKnownHosts(proxy);
    const others = this.#checking.size - this.#checkingOnKnownHosts;
    if (onKnownHosts ? this.#checkingOnKnownHosts >= MAX_KNOWN_HOST_CHECKS : others >= MAX_PENDING_CHECKS) {
      this.#context.logger.debug(`ignoring ${kind} announcement ${id} for now: the checks are all under way`);
      return Promise.resolve();
    }
    if (onKnownHosts) this.#checkingOnKnownHosts++;
    check = this.#check(kind, id, proxy, key).finally(() => {
      this.#checking.delete(key);
      if (onKnownHosts) this.#checkingOnKnownHosts--;
    });
    this.#checking.set(key, check);
    return check;
  }

  /** Whether `proxy` has endpoints, and all of them are on known hosts. */
  #onKnownHosts(proxy: Ice.ObjectPrx): boolean {
    const endpoints = proxy.ice_getEndpoints();
    return endpoints.length > 0 && endpoints.every((endpoint) => this.#knownHosts.has(hostAndPort(endpoint).host));
  }

  #addHosts(proxy: Ice.ObjectPrx): void {
    for (const endpoint of proxy.ice_getEndpoints()) {
      const { host } = hostAndPort(endpoint);
      if (host !== "") this.#knownHosts.add(host);
    }
  }

  /**
   * Whether the announcement needs no check: its service is known already;
   * or it names a known id with another proxy, or a known proxy with another
   * id (an impostor, or an alias: the known one stays until it is gone); or
   * it failed its check a moment ago.
   */
  #isKnownOrRefused(kind: ServiceKind, id: string, proxy: Ice.ObjectPrx, key: string): boolean {
    const known = this.#services[kind].get(id);
    const binding = bindingOf(proxy);
    if (known) {
      if (bindingOf(known) !== binding) {
        this.#context.logger.debug(`ignoring ${kind} announcement ${id}: another proxy`);
      }
      return true;
    }
    if ([...this.#services[kind].values()].some((other) => bindingOf(other) === binding)) {
      this.#context.logger.debug(`ignoring ${kind} announcement ${id}: its proxy is known under another id`);
      return true;
    }
    const refusedAt = this.#refused.get(key);
    if (refusedAt !== undefined && Date.now() - refusedAt < REFUSAL_MEMORY.ms) return true;
    this.#refused.delete(key);
    return false;
  }

  /**
   * Checks the announcement over a connection of its own ({@linkcode ownConnection}), every call bounded by the call
   * timeout: kept as the service's connection if it proves itself, else closed.
   */
  async #check(kind: ServiceKind, id: string, announced: Ice.ObjectPrx, key: string): Promise<void> {
    const { callTimeout, logger, trust } = this.#context;
    const admission = trust.admission(announced);
    let refusal: string | undefined;
    let own: { proxy: Ice.ObjectPrx; close(): void } | undefined;
    const close = () => own?.close();
    try {
      const endpoints = announced.ice_getEndpoints().length;
      if (endpoints > MAX_ENDPOINTS) {
        refusal = `its proxy has ${endpoints} endpoints (at most ${MAX_ENDPOINTS} are tried)`;
      } else {
        own = await ownConnection(announced, callTimeout);
        if (!(await own.proxy.ice_invocationTimeout(callTimeout).ice_isA(TYPE_IDS[kind]))) {
          refusal = `its proxy is not a ${TYPE_IDS[kind]}`;
        } else if (!admission) {
          const proof = await trust.challengeOver(kind, own.proxy, callTimeout, id);
          if (typeof proof === "string") refusal = proof;
        }
      }
    } catch (error) {
      // Not remembered as refused: it may be a service that is starting.
      logger.debug(`ignoring ${kind} announcement ${id}: unreachable (${describeError(error)})`);
      close();
      return;
    }
    if (refusal) {
      this.#refusals.note(`ignoring ${kind} announcement ${id} at ${announced}: ${refusal}`);
      this.#rememberRefused(key);
      close();
      return;
    }
    // Checked while another announcement of the same id or proxy was: the first one proven stays.
    if (this.#isKnownOrRefused(kind, id, announced, key)) {
      close();
      return;
    }
    const proxy = own!.proxy;
    this.#services[kind].set(id, CASTS[kind](proxy));
    if (admission) {
      this.#admitted.add(`${kind} ${id}`);
      logger.warn(`${kind} service ${id} at ${proxy} admitted without proof (${admission})`);
    } else {
      logger.info(`${kind} service ${id} found`);
      this.#addHosts(proxy);
    }
    for (const listener of this.#listeners) listener(kind, id, proxy);
    this.#waiting[kind].splice(0).forEach((wake) => wake());
    // A newcomer missed our earlier announcements: announce now, not at the next tick, so it can use us at once.
    this.#announce();
  }

  /**
   * Closes the connection of a service dropped (`proxy`, on one of {@linkcode ownConnection}'s) at once: one that hangs
   * would otherwise keep it until Ice finds it idle. One still being established is closed when it is (or fails
   * within the connect timeout, service.ts); if none is open any more, the one made to close is closed too.
   */
  #closeConnection(proxy: Ice.ObjectPrx): void {
    proxy.ice_invocationTimeout(this.#context.callTimeout).ice_getConnection().then(
      (connection) => connection.close(Ice.ConnectionClose.Forcefully),
      () => {/* none could be made: nothing is open */},
    );
  }

  #rememberRefused(key: string): void {
    if (this.#refused.size >= REFUSAL_MEMORY.entries) this.#refused.delete(this.#refused.keys().next().value!);
    this.#refused.set(key, Date.now());
  }

  async #tick(): Promise<void> {
    await Promise.all([this.#announce(), this.#pruneDead(), this.#context.events.maintain()]);
    if (this.#stopped) return;
    this.#timer = setTimeout(() => this.#tick(), this.#context.announceInterval * 1000);
  }

  async #announce(): Promise<void> {
    const self = this.#self;
    if (!self) return;
    await this.#context.events.publish(TOPICS.serviceAvailability, (publisher) => {
      const topic = IceFlix.ServiceAvailabilityPrx.uncheckedCast(publisher);
      switch (self.kind) {
        case "auth":
          return topic.authenticationService(IceFlix.AuthenticatorPrx.uncheckedCast(self.proxy), this.id);
        case "catalog":
          return topic.catalogService(IceFlix.MediaCatalogPrx.uncheckedCast(self.proxy), this.id);
        case "media":
          return topic.mediaService(IceFlix.StreamProviderPrx.uncheckedCast(self.proxy), this.id);
      }
    });
  }

  /** Pings every known service; those that do not answer in time are forgotten. */
  async #pruneDead(): Promise<void> {
    const checks = (Object.keys(this.#services) as ServiceKind[]).flatMap((kind) =>
      [...this.#services[kind]].map(async ([id, proxy]) => {
        try {
          await proxy.ice_invocationTimeout(this.#context.callTimeout).ice_ping();
        } catch (error) {
          if (isUnreachable(error)) this.forget(kind, id);
        }
      })
    );
    await Promise.all(checks);
  }
}

/**
 * The servant that receives `ServiceAvailability` events. It answers IceStorm at once and checks in the background:
 * IceStorm sends a subscriber its next events as the last ones are answered, so a reply held for a check (up to the
 * call timeout for one at a tarpit) let a flood of forged announcements queue in IceStorm ahead of the real ones.
 */
class AvailabilityListener extends IceFlix.ServiceAvailability {
  readonly #discovery: Discovery;

  constructor(discovery: Discovery) {
    super();
    this.#discovery = discovery;
  }

  catalogService(service: IceFlix.MediaCatalogPrx | null, id: string): void {
    void this.#discovery.learn("catalog", id, service);
  }

  authenticationService(service: IceFlix.AuthenticatorPrx | null, id: string): void {
    void this.#discovery.learn("auth", id, service);
  }

  mediaService(service: IceFlix.StreamProviderPrx | null, id: string): void {
    void this.#discovery.learn("media", id, service);
  }
}
