/**
 * MediaCatalog replicas that agree (issue 7): an edit accepted by one catalog
 * reaches every other before the client's reply, a catalog that starts late
 * catches up before it answers, and concurrent edits end the same everywhere.
 * README, "Catalog replicas", tells the rules; in short, every title is
 * versioned (catalog_database.ts: last-writer-wins per name and per tag, with
 * Lamport versions), and replicas pull each other's changes in pages
 * (`changesSince`) when told (`changed`) and every announce interval.
 *
 * Anyone can subscribe to the registry topic or call a replica, so: a listed
 * replica is a peer only once it has proven the installation secret
 * (trust.ts); every request and every page is signed for its sender, its
 * recipient and its time, so a replayed one is refused; and what a peer sends
 * is checked (versions below {@linkcode MAX_COUNTER}, bounded strings and
 * pages, a paging loop that must advance) before it reaches the database.
 * Garbage is logged with the peer's name and dropped; the catalog serves on.
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/catalog_replication.d.ts"
import { IceFlixCatalogReplication as Replication } from "./slice/catalog_replication.js";
import type { CatalogDatabase, Version, VersionedTitle } from "./catalog_database.ts";
import { isUnreachable } from "./discovery.ts";
import { nameRefusal, tagRefusal, type TitleLimits } from "./catalog_limits.ts";
import { ReplicaRegistry } from "./replica_registry.ts";
import { OncePerBurst } from "./log.ts";
import { describeError, type ServiceContext } from "./service.ts";

/** The topic whose subscribers are the catalog replicas. */
export const REPLICAS_TOPIC = "CatalogReplicas";

/** The identity category of replicas on topic `CatalogReplicas`; the name is the replica's MediaCatalog proxy. */
const REPLICA_CATEGORY = "CatalogReplica";

/** How much a page of changes holds (bytes, roughly): well under Ice's 1 MB message limit. */
const PAGE_BYTES = 256 * 1024;

/**
 * The greatest version counter taken from a peer: 2^50 edits is more than any catalog makes, and far enough below
 * 2^53 (where the Lamport clock would stop counting exactly) that local edits never run out of it.
 */
export const MAX_COUNTER = 2 ** 50;

/** Pages in one pull at most; a catalog bigger than this × PAGE_BYTES goes on at the next pull. */
const MAX_PAGES_PER_PULL = 400;

/** Limits on a peer's title beyond the catalog's own (catalog_limits.ts): its id and its replica ids. */
const PEER_LIMITS = { idLength: 256, replicaLength: 256 };

/**
 * A peer's title may hold this many times the tags a title may have: concurrent edits on several replicas may
 * together pass the limit that each one keeps (and a title also remembers its removed tags).
 */
const PEER_TAGS_FACTOR = 20;

/** Listed replicas challenged in one listing at most, and how long one that failed is not challenged again (ms). */
const CHALLENGES = { perListing: 16, refusedFor: 60_000 };

/** What this replica knows of a peer: how to reach it, and up to which of its changes it has merged. */
interface Peer {
  proxy: Replication.CatalogReplicaPrx;
  /** The peer's run that `last` counts in ("" before the first pull). */
  epoch: string;
  last: number;
}

/**
 * This catalog as one replica among others: finds its peers, catches up
 * with them, spreads its edits and pulls theirs.
 */
export class CatalogReplication {
  readonly #database: CatalogDatabase;
  /** Its IceStorm link, its announce interval (between two pulls from every peer) and its call timeout. */
  readonly #context: ServiceContext;
  readonly #registry: ReplicaRegistry;
  /** Peer name (its MediaCatalog proxy) -> what is known of it. */
  readonly #peers = new Map<string, Peer>();
  /** Listed replicas that failed their proof, with when. */
  readonly #refused = new Map<string, number>();
  /** Their refusals, logged once per burst: anyone can list forged replicas by the thousand. */
  readonly #refusals: OncePerBurst;
  /** Per peer, the pull that has not started yet: requests arriving meanwhile share it. */
  readonly #queued = new Map<string, Promise<number>>();
  /** Per peer, the pull under way. */
  readonly #running = new Map<string, Promise<number>>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  /** @param catalog this catalog's MediaCatalog proxy: it names the replica on the topic */
  constructor(database: CatalogDatabase, catalog: Ice.ObjectPrx, context: ServiceContext) {
    this.#database = database;
    this.#context = context;
    this.#registry = new ReplicaRegistry(context, REPLICAS_TOPIC, REPLICA_CATEGORY, catalog);
    this.#refusals = new OncePerBurst((message) => context.logger.warn(message));
  }

  /** This replica's name among its peers: its MediaCatalog proxy. */
  get name(): string {
    return this.#registry.name;
  }

  /**
   * Joins the replicas: pulls every change from every listed replica that
   * proves itself and answers, subscribes to the topic, and tells them to
   * count this replica. Resolves once their changes are all stored; from
   * then on pulls again every interval. Call it before the adapter is
   * activated.
   */
  async start(): Promise<void> {
    this.#registry.add(new ReplicaServant(this, this.#database, this.#context));
    const before = this.#database.lastChange;
    // A replica subscribes once it has caught up, moments before it is ready: pulling from the listed ones never
    // waits for one that is itself catching up (two catalogs started together find each other at their first tick).
    await this.#listPeers();
    await this.#pullFromAll();
    await this.#registry.subscribe();
    // The peers count this replica from now on: their next edits are spread to it too. What they changed since the
    // first pull comes with a second one, short.
    await this.#forEachPeer(async (peer, name) => peer.join(this.name, await this.#sign("join", name, [])));
    await this.#pullFromAll();
    const merged = this.#database.lastChange - before;
    this.#context.logger.info(`caught up with ${this.#peers.size} other replica(s): ${merged} change(s) merged`);
    this.#timer = setTimeout(() => this.#tick(), this.#context.announceInterval * 1000);
  }

  /** Stops pulling (the subscription ends with the event channel). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /**
   * Tells every known peer that this replica has new changes, and resolves
   * once each has stored them, or failed to (bounded by the call timeout).
   */
  async spread(): Promise<void> {
    await this.#forEachPeer(async (peer, name) => peer.changed(this.name, await this.#sign("changed", name, [])));
  }

  /** A signature of this replica's message `purpose` about `body` to peer `to`. */
  #sign(purpose: string, to: string, body: unknown): Promise<Uint8Array> {
    return this.#context.trust.sign(purpose, this.name, to, body);
  }

  /** Why a `purpose` message from `from` to this replica is refused, or undefined (trust.ts). */
  refusal(purpose: string, from: string, body: unknown, signature: Uint8Array): Promise<string | undefined> {
    return this.#context.trust.refusal(purpose, from, this.name, body, signature);
  }

  /** Calls `call` on every peer at once (with a bounded timeout); a peer that does not answer is dropped. */
  async #forEachPeer(call: (peer: Replication.CatalogReplicaPrx, name: string) => PromiseLike<void>): Promise<void> {
    await Promise.all(
      [...this.#peers].map(async ([name, peer]) => {
        try {
          await call(peer.proxy.ice_invocationTimeout(this.#context.callTimeout), name);
        } catch (error) {
          await this.#failed(name, error);
        }
      }),
    );
  }

  /**
   * Peer `name` has new changes (its signed `changed` call): pulls them. A
   * name that is not a proven replica on the topic is ignored; a failed
   * pull is logged (the next one repairs it).
   */
  async changedAt(name: string): Promise<void> {
    if (!this.#peers.has(name)) await this.#listPeers();
    if (!this.#peers.has(name)) {
      this.#context.logger.info(`ignoring changes announced by ${name}: not a proven replica on ${REPLICAS_TOPIC}`);
      return;
    }
    await this.#pull(name).then(
      (changed) => this.#context.logger.debug(`${changed} title(s) changed by replica ${name}`),
      (error) => this.#context.logger.warn(`cannot pull from replica ${name} (${describeError(error)})`),
    );
  }

  /** Replica `name` has just subscribed to the topic (its signed `join` call): reads the topic again. */
  async joined(name: string): Promise<void> {
    await this.#listPeers();
    if (!this.#peers.has(name)) {
      this.#context.logger.info(`ignoring join of ${name}: not a proven replica on ${REPLICAS_TOPIC}`);
    }
  }

  /** Every interval: the topic is read again, and every peer pulled from. */
  async #tick(): Promise<void> {
    await this.#listPeers();
    await this.#pullFromAll();
    if (!this.#stopped) this.#timer = setTimeout(() => this.#tick(), this.#context.announceInterval * 1000);
  }

  /**
   * Adds the replicas subscribed to the topic that are not peers yet and
   * prove the secret. Peers leave only by failing a call: a listing that
   * crossed a newer one on the way cannot remove a replica that has just
   * joined. A subscriber that failed its proof is not challenged again for a
   * while, and a listing challenges a bounded number: forged entries cost
   * bounded work.
   */
  async #listPeers(): Promise<void> {
    const { callTimeout, logger, trust } = this.#context;
    let listed: Awaited<ReturnType<ReplicaRegistry["list"]>>;
    try {
      listed = await this.#registry.list();
    } catch (error) {
      logger.debug(`cannot list the replicas on ${REPLICAS_TOPIC}: ${describeError(error)}`);
      return;
    }
    const now = Date.now();
    const candidates = [...listed].filter(([name]) =>
      !this.#peers.has(name) && !(now - (this.#refused.get(name) ?? -Infinity) < CHALLENGES.refusedFor)
    ).slice(0, CHALLENGES.perListing);
    await Promise.all(candidates.map(async ([name, { service, entry }]) => {
      const proof = await trust.challenge("catalog", service, callTimeout).catch((error) => {
        // Not remembered: a replica that is starting answers at the next listing.
        logger.debug(`replica ${name} listed on ${REPLICAS_TOPIC} does not answer (${describeError(error)})`);
      });
      if (proof === undefined) return;
      if (typeof proof === "string") {
        this.#refusals.note(`ignoring replica ${name} listed on ${REPLICAS_TOPIC}: ${proof}`);
        this.#refused.set(name, Date.now());
        return;
      }
      this.#refused.delete(name);
      if (this.#peers.has(name)) return;
      this.#peers.set(name, { proxy: Replication.CatalogReplicaPrx.uncheckedCast(entry), epoch: "", last: 0 });
      logger.info(`replica ${name} found`);
    }));
  }

  /** Pulls from every peer at once; a peer that does not answer is dropped. */
  async #pullFromAll(): Promise<void> {
    await Promise.all(
      [...this.#peers.keys()].map(async (name) => {
        try {
          const changed = await this.#pull(name);
          if (changed > 0) this.#context.logger.info(`${changed} title(s) changed by replica ${name}`);
        } catch (error) {
          await this.#failed(name, error);
        }
      }),
    );
  }

  /**
   * Pulls peer `name`'s changes until this replica has its latest one. Calls
   * made while a pull is under way share the next one, which sees their
   * changes: a burst of `changed` calls costs two pulls, not one per call.
   * Resolves to how many titles changed here.
   */
  #pull(name: string): Promise<number> {
    const queued = this.#queued.get(name);
    if (queued) return queued;
    const next = (this.#running.get(name) ?? Promise.resolve(0)).catch(() => 0).then(() => {
      this.#queued.delete(name);
      const running = this.#pullPages(name).finally(() => {
        if (this.#running.get(name) === running) this.#running.delete(name);
      });
      this.#running.set(name, running);
      return running;
    });
    this.#queued.set(name, next);
    return next;
  }

  /**
   * Pulls pages from peer `name` until one is complete, each page signed by
   * the peer for this request; at most {@linkcode MAX_PAGES_PER_PULL} pages,
   * and each must move on, so a peer answering `complete: false` forever
   * only makes this pull end.
   */
  async #pullPages(name: string): Promise<number> {
    const peer = this.#peers.get(name);
    if (!peer) return 0;
    const { callTimeout, logger, trust } = this.#context;
    let merged = 0;
    for (let page = 0; page < MAX_PAGES_PER_PULL; page++) {
      const request = [peer.epoch, longText(new Ice.Long(peer.last)), PAGE_BYTES];
      const signature = await this.#sign("changesSince", name, request);
      const changes = await peer.proxy.ice_invocationTimeout(callTimeout)
        .changesSince(peer.epoch, new Ice.Long(peer.last), PAGE_BYTES, this.name, signature);
      const refusal = await trust.refusal("changes", name, this.name, pageBody(signature, changes), changes.signature);
      if (refusal) throw new Error(`its page of changes is refused: ${refusal}`);
      const last = changes.last.toNumber();
      if (!Number.isSafeInteger(last) || last < 0 || typeof changes.epoch !== "string") {
        throw new Error(`its page of changes ends at a change number out of range`);
      }
      for (const title of changes.titles) {
        const versioned = fromSlice(title, this.#database.limits);
        if (typeof versioned === "string") {
          logger.warn(`replica ${name} sent title ${JSON.stringify(String(title.id).slice(0, 80))}: ${versioned}`);
          continue;
        }
        try {
          // Stored before the peer's position moves on: a crash here means pulling the page again, not losing it.
          if (await this.#database.merge(title.id, versioned)) merged++;
        } catch (error) {
          logger.warn(`replica ${name} sent title ${title.id} that cannot be merged: ${describeError(error)}`);
        }
      }
      const movedOn = changes.epoch !== peer.epoch || last > peer.last;
      [peer.epoch, peer.last] = [changes.epoch, last];
      if (changes.complete) return merged;
      if (!movedOn) throw new Error("its pages do not move on (complete: false, same position)");
    }
    logger.warn(`replica ${name}: ${MAX_PAGES_PER_PULL} pages in one pull; the rest comes with the next pull`);
    return merged;
  }

  /**
   * A call to peer `name` failed. If the peer is unreachable (gone, or hung
   * past the timeout) it is forgotten and taken off the topic; it subscribes
   * again by itself once it is back.
   */
  async #failed(name: string, error: unknown): Promise<void> {
    const peer = this.#peers.get(name);
    if (!isUnreachable(error) || !peer) {
      this.#context.logger.warn(`replica ${name} failed a call (${describeError(error)})`);
      return;
    }
    this.#context.logger.info(`replica ${name} gone (${describeError(error)})`);
    this.#peers.delete(name);
    await this.#registry.remove(peer.proxy);
  }
}

/** The servant peers call: it hands out this replica's changes and takes notice of theirs, once signed. */
class ReplicaServant extends Replication.CatalogReplica {
  readonly #replication: CatalogReplication;
  readonly #database: CatalogDatabase;
  readonly #context: ServiceContext;
  /** Refused requests: anyone can send them, so they are logged once per burst, each burst naming the last sender. */
  readonly #refusals: OncePerBurst;

  constructor(replication: CatalogReplication, database: CatalogDatabase, context: ServiceContext) {
    super();
    this.#replication = replication;
    this.#database = database;
    this.#context = context;
    this.#refusals = new OncePerBurst((message) => context.logger.warn(message));
  }

  async changesSince(
    epoch: string,
    after: Ice.Long,
    maxBytes: number,
    replica: string,
    signature: Uint8Array,
    current: Ice.Current,
  ): Promise<Replication.Changes> {
    await this.#require("changesSince", replica, [epoch, longText(after), maxBytes], signature, current);
    // Change numbers start again at every run: a caller that counted in another run gets everything.
    const from = epoch === this.#database.replica ? after.toNumber() : 0;
    const { last, titles, complete } = this.#database.changesSince(from, Math.min(Math.max(maxBytes, 1), PAGE_BYTES));
    const changes = new Replication.Changes(
      this.#database.replica,
      new Ice.Long(last),
      titles.map(([id, title]) => toSlice(id, title)),
      complete,
    );
    changes.signature = await this.#context.trust.sign(
      "changes",
      this.#replication.name,
      replica,
      pageBody(signature, changes),
    );
    return changes;
  }

  async changed(replica: string, signature: Uint8Array, current: Ice.Current): Promise<void> {
    await this.#require("changed", replica, [], signature, current);
    await this.#replication.changedAt(replica);
  }

  async join(replica: string, signature: Uint8Array, current: Ice.Current): Promise<void> {
    await this.#require("join", replica, [], signature, current);
    await this.#replication.joined(replica);
  }

  /** Refuses (logged with where it came from) a request that is not signed by a replica of this installation. */
  async #require(purpose: string, from: string, body: unknown, signature: Uint8Array, current: Ice.Current) {
    const refusal = await this.#replication.refusal(purpose, from, body, signature);
    if (!refusal) return;
    const origin = current.con?.toString().replace(/\s+/g, " ") ?? "this process";
    this.#refusals.note(`refused ${purpose} from ${from.slice(0, 200)} (${origin}): ${refusal}`);
    throw new Replication.Refused(refusal);
  }
}

/** An Ice long as exact text, for signatures (its number may not fit a double). */
function longText(value: Ice.Long): string {
  return `${value.high}:${value.low}`;
}

/** What the signature of a page covers: the request it answers, and everything in it. */
function pageBody(request: Uint8Array, changes: Replication.Changes): unknown {
  const version = ({ counter, replica }: Replication.Version) => [longText(counter), replica];
  return [
    Array.from(request),
    changes.epoch,
    longText(changes.last),
    changes.complete,
    changes.titles.map((title) => [
      title.id,
      title.name,
      version(title.nameVersion),
      title.tags.map((tag) => [tag.tag, tag.present, version(tag.version)]),
    ]),
  ];
}

/** Title `id` as replicas send it. */
function toSlice(id: string, title: VersionedTitle): Replication.Title {
  const version = ({ counter, replica }: Version) => new Replication.Version(new Ice.Long(counter), replica);
  return new Replication.Title(
    id,
    title.name,
    version(title.nameVersion),
    title.tags.map(({ tag, present, version: tagVersion }) =>
      new Replication.TagEntry(tag, present, version(tagVersion))
    ),
  );
}

/**
 * A title as a replica sent it, or what is wrong with it: out of the limits
 * this catalog keeps its own titles to (the same as for clients' edits), or
 * of those on ids and versions.
 */
function fromSlice(title: Replication.Title, limits: TitleLimits): VersionedTitle | string {
  const { idLength, replicaLength } = PEER_LIMITS;
  if (title.id.length === 0 || title.id.length > idLength) return "an empty or overlong id";
  const tooLong = nameRefusal(title.name, limits) ?? title.tags.map(({ tag }) => tagRefusal(tag, limits)).find(Boolean);
  if (tooLong) return tooLong;
  const maxTags = PEER_TAGS_FACTOR * limits.tagsPerTitle;
  if (title.tags.length > maxTags) return `more than ${maxTags} tags`;
  const version = ({ counter, replica }: Replication.Version) => ({ counter: counter.toNumber(), replica });
  const versioned = {
    name: title.name,
    nameVersion: version(title.nameVersion),
    tags: title.tags.map(({ tag, present, version: tagVersion }) => ({ tag, present, version: version(tagVersion) })),
  };
  const versions = [versioned.nameVersion, ...versioned.tags.map(({ version }) => version)];
  if (!versions.every(({ counter }) => Number.isSafeInteger(counter) && counter >= 0 && counter <= MAX_COUNTER)) {
    return `a version out of range (0 to 2^50)`;
  }
  if (versions.some(({ replica }) => replica.length > replicaLength)) return "an overlong replica id";
  return versioned;
}
