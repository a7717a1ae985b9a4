/**
 * The MediaCatalog (spec 1.3, 2.3): what titles exist, their names and tags,
 * and which streaming service holds each one.
 *
 * Names and tags live in a persistent database (`IceFlix.Catalog.DatabaseFile`,
 * see catalog_database.ts). Streaming services announce their media on topic
 * `MediaAnnouncements`; an announcement counts only if it comes from a
 * provider that discovery knows and that confirms it holds the media (anyone
 * can publish on IceStorm). A new id gets an entry named as announced, a known
 * id keeps its (possibly edited) name. Which providers hold which media is
 * kept in memory only: it changes as providers start and stop. Anyone may
 * search and read tiles; renaming and tagging need a token that a live
 * Authenticator accepts. The service announces itself through discovery as
 * kind "catalog".
 *
 * Several catalogs may run: they are replicas that agree (catalog_replication.ts).
 * A catalog catches up with the others before it is ready, and acknowledges
 * an edit once every live replica has stored it.
 *
 *   ./run_service catalog [--Name=value ...]
 *
 * @module
 */
import { Ice } from "ice";
import { Buffer } from "node:buffer";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
import { CatalogDatabase } from "./catalog_database.ts";
import { LimitError, titleLimits } from "./catalog_limits.ts";
import { requireValidToken } from "./authorization.ts";
import { CatalogReplication } from "./catalog_replication.ts";
import { Discovery, isUnreachable } from "./discovery.ts";
import { TOPICS } from "./events.ts";
import { AvailabilityChecks } from "./media_holdings.ts";
import { describeError, type Logger, runService, type ServiceContext } from "./service.ts";

/**
 * Which providers announced each media id, most recent last. A provider is
 * known by the id it announces itself with on `ServiceAvailability`; its
 * proxy comes from discovery when a tile is asked for, so an announcement may
 * arrive before its provider is discovered and still count once it is.
 */
class Providers {
  readonly #discovery: Discovery;
  readonly #callTimeout: number;
  readonly #logger: Logger;
  /** Media id -> ids of the providers that announced it, the latest last. */
  readonly #announcers = new Map<string, string[]>();

  constructor(discovery: Discovery, { callTimeout, logger }: ServiceContext) {
    this.#discovery = discovery;
    this.#callTimeout = callTimeout;
    this.#logger = logger;
  }

  /** Provider `providerId` announced media `mediaId`: it becomes the first one to try. */
  announced(mediaId: string, providerId: string): void {
    const announcers = this.#announcers.get(mediaId) ?? [];
    this.#announcers.set(mediaId, [...announcers.filter((id) => id !== providerId), providerId]);
  }

  /**
   * The provider of `mediaId` to hand out: the latest announcer that is alive
   * and still has the media, else the one before, and so on. Providers that
   * fail the check are dropped; `undefined` when none is left.
   */
  async liveProvider(mediaId: string): Promise<IceFlix.StreamProviderPrx | undefined> {
    for (const providerId of [...this.#announcers.get(mediaId) ?? []].reverse()) {
      // Not discovered now: it may be back (and announce again) once discovery finds it again.
      const provider = this.#discovery.services("media").get(providerId);
      if (!provider) continue;
      try {
        // The check is a real call with a bounded timeout: it proves the provider alive and still holding the media.
        if (await provider.ice_invocationTimeout(this.#callTimeout).isAvailable(mediaId)) return provider;
        this.#logger.info(`provider ${providerId} no longer has ${mediaId}`);
      } catch (error) {
        this.#logger.warn(`provider ${providerId} of ${mediaId} failed (${describeError(error)})`);
        if (isUnreachable(error)) this.#discovery.forget("media", providerId);
      }
      this.#drop(mediaId, providerId);
    }
    return undefined;
  }

  #drop(mediaId: string, providerId: string): void {
    const remaining = (this.#announcers.get(mediaId) ?? []).filter((id) => id !== providerId);
    if (remaining.length > 0) this.#announcers.set(mediaId, remaining);
    else this.#announcers.delete(mediaId);
  }
}

/** The servant that receives `MediaAnnouncements` events from IceStorm. */
class MediaAnnouncements extends IceFlix.StreamAnnounces {
  readonly #database: CatalogDatabase;
  readonly #providers: Providers;
  readonly #discovery: Discovery;
  readonly #checks: AvailabilityChecks;
  readonly #logger: Logger;

  constructor(database: CatalogDatabase, providers: Providers, discovery: Discovery, context: ServiceContext) {
    super();
    this.#database = database;
    this.#providers = providers;
    this.#discovery = discovery;
    this.#checks = new AvailabilityChecks(context.callTimeout);
    this.#logger = context.logger;
  }

  newMedia(id: string, initialName: string, providerId: string): void {
    // Not awaited: IceStorm delivers the next event only after this one returns, and an entry lost in a crash
    // comes back when the provider reannounces its media to the restarted catalog.
    this.#accept(id, initialName, providerId).catch((error) =>
      this.#logger.warn(`cannot take newMedia ${id} from ${providerId}: ${describeError(error)}`)
    );
  }

  /**
   * Anyone can publish on IceStorm: the announced provider must be a known one, and confirm it holds the media
   * (asked together with the other announcements that arrive meanwhile).
   */
  async #accept(id: string, initialName: string, providerId: string): Promise<void> {
    const provider = this.#discovery.services("media").get(providerId);
    if (!provider) {
      // Forged, or (usually) from a provider just started and not discovered yet: once discovered, it is asked to
      // announce its media again.
      this.#logger.debug(`ignoring newMedia ${id} from ${providerId}: not a streaming service discovery knows`);
      return;
    }
    if (!await this.#checks.holds(providerId, provider, id)) {
      this.#logger.warn(`ignoring newMedia ${id} from ${providerId}: the provider says it does not have it`);
      return;
    }
    this.#providers.announced(id, providerId);
    if (await this.#database.addTitle(id, initialName)) {
      this.#logger.info(`new title ${id} ${JSON.stringify(initialName)} from ${providerId}`);
    }
  }
}

/** Answers kept marshalled at most, and the bytes they may take in all. */
const MARSHALLED_ANSWERS = { entries: 1024, bytes: 16 << 20 };

/** An answer larger than this is not kept (bytes: about 4,000 ids). */
const MAX_MARSHALLED_ANSWER = 256 << 10;

/**
 * The answers of `getTilesByName` as Ice marshals them, by query, for one
 * version of the catalog: marshalling about a hundred ids cost five times
 * the search. Any change to the catalog makes a new version; the first
 * request for a query after that marshals it again.
 */
class MarshalledAnswers {
  /** `exact` and the name asked -> the answer's bytes, the least recently used first. */
  readonly #answers = new Map<string, Uint8Array>();
  #version = -1;
  #bytes = 0;

  /** The marshalled answer of `find()` for query `key` at catalog version `version`. */
  get(version: number, key: string, find: () => string[]): Uint8Array {
    if (version !== this.#version) {
      this.#answers.clear();
      [this.#version, this.#bytes] = [version, 0];
    }
    let bytes = this.#answers.get(key);
    if (bytes) {
      this.#answers.delete(key);
    } else {
      const stream = new Ice.OutputStream();
      IceFlix.StringListHelper.write(stream, find());
      bytes = stream.finished();
      if (bytes.length > MAX_MARSHALLED_ANSWER) return bytes;
      this.#bytes += bytes.length;
      while (this.#answers.size >= MARSHALLED_ANSWERS.entries || this.#bytes > MARSHALLED_ANSWERS.bytes) {
        const [oldest, old] = this.#answers.entries().next().value!;
        this.#answers.delete(oldest);
        this.#bytes -= old.length;
      }
    }
    this.#answers.set(key, bytes);
    return bytes;
  }
}

/** What Ice for JavaScript hands a servant's dispatch for one request (not in its typings). */
interface IncomingRequest {
  startReadParams(): Ice.InputStream;
  endReadParams(): void;
  setFormat(format: Ice.FormatType): void;
  startWriteParams(): Ice.OutputStream & { writeBlob(bytes: Uint8Array): void };
  endWriteParams(): void;
}

/** The generated dispatch of every operation (not in the typings either). */
const generatedDispatch = (IceFlix.MediaCatalog.prototype as unknown as {
  _iceDispatch(this: IceFlix.MediaCatalog, request: IncomingRequest, current: Ice.Current): unknown;
})._iceDispatch;

/** The servant: the operations of `IceFlix.MediaCatalog`. */
class MediaCatalog extends IceFlix.MediaCatalog {
  readonly #database: CatalogDatabase;
  readonly #replication: CatalogReplication;
  readonly #providers: Providers;
  readonly #discovery: Discovery;
  readonly #logger: Logger;
  /** The largest message this catalog's Ice takes, in bytes (as clients are configured, config/common.config). */
  readonly #maxMessageBytes: number;
  readonly #answers = new MarshalledAnswers();

  constructor(
    database: CatalogDatabase,
    replication: CatalogReplication,
    providers: Providers,
    discovery: Discovery,
    { logger, properties }: ServiceContext,
  ) {
    super();
    this.#database = database;
    this.#replication = replication;
    this.#providers = providers;
    this.#discovery = discovery;
    this.#logger = logger;
    // In KB, as Ice reads it; 0 means no limit.
    const kilobytes = properties.getPropertyAsIntWithDefault("Ice.MessageSizeMax", 1024);
    this.#maxMessageBytes = kilobytes > 0 ? kilobytes * 1024 : Infinity;
  }

  async getTile(id: string): Promise<IceFlix.Media> {
    const info = this.#database.info(id);
    if (!info) throw new IceFlix.WrongMediaId(id);
    const provider = await this.#providers.liveProvider(id);
    if (!provider) throw new IceFlix.TemporaryUnavailable();
    return new IceFlix.Media(id, provider, new IceFlix.MediaInfo(info.name, info.tags));
  }

  getTilesByName(name: string, exact: boolean): string[] {
    return this.#fitting(this.#database.findByName(name, exact));
  }

  /**
   * Ice's dispatch of a request, with `getTilesByName` answered from
   * {@linkcode MarshalledAnswers}: the same bytes as the generated code
   * writes (a sequence of strings is the same in both encodings), written
   * as the generated code does (Ice's Operation.js, `dispatchImpl`).
   */
  _iceDispatch(request: IncomingRequest, current: Ice.Current): unknown {
    if (current.operation !== "getTilesByName") return generatedDispatch.call(this, request, current);
    const input = request.startReadParams();
    const [name, exact] = [input.readString(), input.readBool()];
    request.endReadParams();
    request.setFormat(Ice.FormatType.DefaultFormat);
    const answer = this.#answers.get(
      this.#database.lastChange,
      `${exact} ${name}`,
      () => this.getTilesByName(name, exact),
    );
    request.startWriteParams().writeBlob(answer);
    request.endWriteParams();
    return null;
  }

  getTilesByTags(tags: string[], includeAllTags: boolean): string[] {
    return this.#fitting(this.#database.findByTags(tags, includeAllTags));
  }

  /**
   * `ids`, if they fit in one message as large as this catalog takes
   * (`Ice.MessageSizeMax`, which clients are given too). A larger answer is
   * refused in words: sent, it would make the client's Ice close the
   * connection, which a Glacier2 router shares between every page.
   */
  #fitting(ids: string[]): string[] {
    // The reply's header and the sequence's size, then each id with its size (5 bytes at most).
    let bytes = 32;
    for (const id of ids) bytes += Buffer.byteLength(id) + 5;
    if (bytes <= this.#maxMessageBytes) return ids;
    throw new Ice.UnknownException(
      `the answer holds ${ids.length} titles, more than one message takes (${Math.ceil(bytes / 1024)} KB; ` +
        `Ice.MessageSizeMax is ${this.#maxMessageBytes / 1024}); search for something narrower`,
    );
  }

  async renameTile(id: string, name: string, authentication: string): Promise<void> {
    await this.#checkEdit("renameTile", id, authentication);
    await this.#store("renameTile", id, () => this.#database.rename(id, name));
  }

  async addTags(id: string, tags: string[], authentication: string): Promise<void> {
    await this.#checkEdit("addTags", id, authentication);
    await this.#store("addTags", id, () => this.#database.addTags(id, tags));
  }

  async removeTags(id: string, tags: string[], authentication: string): Promise<void> {
    await this.#checkEdit("removeTags", id, authentication);
    await this.#store("removeTags", id, () => this.#database.removeTags(id, tags));
  }

  /**
   * Makes an edit, which resolves once it is on disk (the reply tells the
   * client it is durable), then spreads it to every live replica. An edit
   * past a limit (catalog_limits.ts), or that cannot be stored (a full
   * disk), changed nothing: the client is told why in words, as an
   * `Ice.UnknownException`, since the spec's Slice gives edits no exception
   * for it (the text client and the web page show that text).
   */
  async #store(operation: string, id: string, edit: () => Promise<void>): Promise<void> {
    try {
      await edit();
    } catch (error) {
      if (error instanceof LimitError) {
        this.#logger.info(`${operation} of ${id} refused: ${error.message}`);
        throw new Ice.UnknownException(error.message);
      }
      this.#logger.error(`${operation} of ${id} not stored: ${describeError(error)}`);
      throw new Ice.UnknownException(
        `the catalog could not store the edit (${describeError(error)}); nothing was changed, try again later`,
      );
    }
    await this.#replication.spread();
  }

  /**
   * An edit needs a token that an Authenticator accepts now (asked every time:
   * a token may have expired since), then a known title.
   */
  async #checkEdit(operation: string, id: string, authentication: string): Promise<void> {
    // The Slice gives edits no other way to say it: without an Authenticator, nobody is authorized.
    await requireValidToken(this.#discovery, this.#logger, authentication, operation);
    if (!this.#database.has(id)) throw new IceFlix.WrongMediaId(id);
  }
}

await runService({
  name: "catalog",
  adapterName: "CatalogAdapter",
  async setup(context) {
    const { adapter, properties, events, callTimeout, logger, onShutdown } = context;
    const path = properties.getPropertyWithDefault("IceFlix.Catalog.DatabaseFile", "catalog.json");
    const started = performance.now();
    // A corrupt database stops the service here: runService reports it and exits 1, the file untouched.
    const database = await CatalogDatabase.open(path, logger, undefined, titleLimits(properties));
    logger.info(`${database.size} title(s) loaded from ${path} in ${Math.round(performance.now() - started)} ms`);
    onShutdown(() => database.close());
    // The search indexes fill once the catalog is ready (until then searches scan the titles not in them yet).
    const setUp = Promise.withResolvers<void>();
    database.indexAfter(setUp.promise);

    // The servant's identity is fixed, so its proxy is known before the servant is added.
    const identity = Ice.stringToIdentity("MediaCatalog");
    const discovery = new Discovery(context, { kind: "catalog", proxy: adapter.createProxy(identity) });

    // Before this catalog answers anything, it takes every change the other replicas have.
    const replication = new CatalogReplication(database, adapter.createProxy(identity), context);
    await replication.start();
    onShutdown(() => replication.stop());

    const providers = new Providers(discovery, context);
    const proxy = adapter.add(new MediaCatalog(database, replication, providers, discovery, context), identity);

    // IceStorm calls this subscriber for every newMedia published on the topic.
    const announcements = adapter.addWithUUID(new MediaAnnouncements(database, providers, discovery, context));
    await events.subscribe(TOPICS.mediaAnnouncements, announcements);

    // A provider seen for the first time announces all its media again, so a catalog started late learns them.
    discovery.onServiceAdded((kind, id, provider) => {
      if (kind !== "media") return;
      const bounded = IceFlix.StreamProviderPrx.uncheckedCast(provider).ice_invocationTimeout(callTimeout);
      bounded.reannounceMedia().then(
        () => logger.debug(`provider ${id} reannounced its media`),
        (error) => logger.warn(`cannot ask provider ${id} to reannounce its media: ${describeError(error)}`),
      );
    });
    await discovery.start();
    onShutdown(() => discovery.stop());
    // After this turn: once runService has activated the adapter and printed the ready line.
    setTimeout(setUp.resolve, 0);
    return proxy;
  },
});
