/**
 * MediaCatalog replicas that agree (issue 7): an edit accepted by one catalog
 * reaches every other, a catalog that starts late catches up before it
 * answers, and concurrent edits end the same everywhere.
 *
 * **What converges.** Every title is versioned (catalog_database.ts): the name
 * is a last-writer-wins register and each tag, by its search key, another
 * one, present or removed, where a version is a Lamport counter plus the id of
 * the replica that made the edit, compared in that order. Merging keeps the
 * greater version of each, so it is idempotent and commutative: replicas that
 * have seen the same edits hold the same titles, whatever the order they saw
 * them in. Concurrent `addTags` of different tags both survive; of a rename
 * and a rename, or an add and a remove of the same tag, the later Lamport
 * version wins (the greater replica id on a tie). Edits from one replica keep
 * their order, since each has a greater version than the one before.
 *
 * **How changes travel.** Replicas pull, they are never pushed data: each
 * numbers its changes (edits and merges), and a peer asks for the titles
 * changed after the last change it has from it (`CatalogReplica.changesSince`,
 * in pages). An edit is acknowledged to the client once it is on disk here and
 * every live peer has pulled it and stored it: the editing catalog calls
 * `changed` on each (a bounded call; a peer that fails it is skipped and
 * catches up later). Every announce interval each replica also pulls from
 * every peer, which repairs whatever a failure made it miss.
 *
 * **Who the peers are.** Each replica subscribes to IceStorm topic
 * `CatalogReplicas` under the identity `CatalogReplica/<its MediaCatalog
 * proxy>`, and reads the topic's subscribers to find the others. IceStorm
 * answers that before this catalog's adapter dispatches anything, so a
 * catalog starting up pulls from every listed replica before it answers a
 * single request; then it subscribes, and calls `join` on each so that they
 * count it at once (they read the topic again). Every interval each replica
 * reads the topic again. A listed replica that does not answer is
 * unsubscribed (it subscribes itself again when it is back).
 *
 * **Trust.** Anyone can call `changed` or subscribe to a topic; a call only
 * makes this replica pull from a replica listed on the topic, the same trust
 * that discovery gives to announced services.
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/catalog_replication.d.ts"
import { IceFlixCatalogReplication as Replication } from "./slice/catalog_replication.js";
import type { CatalogDatabase, Version, VersionedTitle } from "./catalog_database.ts";
import { isUnreachable } from "./discovery.ts";
import { ReplicaRegistry } from "./replica_registry.ts";
import { describeError, type ServiceContext } from "./service.ts";

/** The topic whose subscribers are the catalog replicas. */
export const REPLICAS_TOPIC = "CatalogReplicas";

/** The identity category of replicas on topic `CatalogReplicas`; the name is the replica's MediaCatalog proxy. */
const REPLICA_CATEGORY = "CatalogReplica";

/** How much a page of changes holds (bytes, roughly): well under Ice's 1 MB message limit. */
const PAGE_BYTES = 256 * 1024;

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
  }

  /** This replica's name among its peers: its MediaCatalog proxy. */
  get name(): string {
    return this.#registry.name;
  }

  /**
   * Joins the replicas: pulls every change from every replica listed on the
   * topic that answers, subscribes to the topic, and tells them to count
   * this replica. Resolves once their changes are all stored; from then on
   * pulls again every interval. Call it before the adapter is activated.
   */
  async start(): Promise<void> {
    this.#registry.add(new ReplicaServant(this, this.#database));
    const before = this.#database.lastChange;
    // A replica subscribes once it has caught up, moments before it is ready: pulling from the listed ones never
    // waits for one that is itself catching up (two catalogs started together find each other at their first tick).
    await this.#listPeers();
    await this.#pullFromAll();
    await this.#registry.subscribe();
    // The peers count this replica from now on: their next edits are spread to it too. What they changed since the
    // first pull comes with a second one, short.
    await this.#forEachPeer((peer) => peer.join(this.name));
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
    await this.#forEachPeer((peer) => peer.changed(this.name));
  }

  /** Calls `call` on every peer at once (with a bounded timeout); a peer that does not answer is dropped. */
  async #forEachPeer(call: (peer: Replication.CatalogReplicaPrx) => PromiseLike<void>): Promise<void> {
    await Promise.all(
      [...this.#peers].map(async ([name, peer]) => {
        try {
          await call(peer.proxy.ice_invocationTimeout(this.#context.callTimeout));
        } catch (error) {
          await this.#failed(name, error);
        }
      }),
    );
  }

  /**
   * Peer `name` has new changes (its `changed` call): pulls them. A name not
   * on the topic is ignored; a failed pull is logged (the next one repairs it).
   */
  async changedAt(name: string): Promise<void> {
    if (!this.#peers.has(name)) await this.#listPeers();
    if (!this.#peers.has(name)) {
      this.#context.logger.info(`ignoring changes announced by ${name}: not a replica on topic ${REPLICAS_TOPIC}`);
      return;
    }
    await this.#pull(name).then(
      (changed) => this.#context.logger.debug(`${changed} title(s) changed by replica ${name}`),
      (error) => this.#context.logger.warn(`cannot pull from replica ${name} (${describeError(error)})`),
    );
  }

  /** Replica `name` has just subscribed to the topic (its `join` call): reads the topic again. */
  async joined(name: string): Promise<void> {
    await this.#listPeers();
    if (!this.#peers.has(name)) {
      this.#context.logger.info(`ignoring join of ${name}: not a replica on topic ${REPLICAS_TOPIC}`);
    }
  }

  /** Every interval: the topic is read again, and every peer pulled from. */
  async #tick(): Promise<void> {
    await this.#listPeers();
    await this.#pullFromAll();
    if (!this.#stopped) this.#timer = setTimeout(() => this.#tick(), this.#context.announceInterval * 1000);
  }

  /**
   * Adds the replicas subscribed to the topic that are not peers yet. Peers
   * leave only by failing a call: a listing that crossed a newer one on the
   * way cannot remove a replica that has just joined.
   */
  async #listPeers(): Promise<void> {
    let listed: Map<string, Ice.ObjectPrx>;
    try {
      listed = await this.#registry.list();
    } catch (error) {
      this.#context.logger.debug(`cannot list the replicas on ${REPLICAS_TOPIC}: ${describeError(error)}`);
      return;
    }
    for (const [name, entry] of listed) {
      if (this.#peers.has(name)) continue;
      this.#peers.set(name, { proxy: Replication.CatalogReplicaPrx.uncheckedCast(entry), epoch: "", last: 0 });
      this.#context.logger.info(`replica ${name} found`);
    }
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

  async #pullPages(name: string): Promise<number> {
    const peer = this.#peers.get(name);
    if (!peer) return 0;
    let merged = 0;
    for (let complete = false; !complete;) {
      const changes = await peer.proxy.ice_invocationTimeout(this.#context.callTimeout)
        .changesSince(peer.epoch, new Ice.Long(peer.last), PAGE_BYTES);
      const titles = changes.titles.flatMap((title) => {
        const versioned = fromSlice(title);
        if (versioned) return [[title.id, versioned] as const];
        this.#context.logger.warn(`replica ${name} sent title ${JSON.stringify(title.id)} with a version out of range`);
        return [];
      });
      // Stored before the peer's position moves on: a crash here means pulling the page again, not losing it.
      const changed = await Promise.all(titles.map(([id, title]) => this.#database.merge(id, title)));
      merged += changed.filter(Boolean).length;
      [peer.epoch, peer.last, complete] = [changes.epoch, changes.last.toNumber(), changes.complete];
    }
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

/** The servant peers call: it hands out this replica's changes and takes notice of theirs. */
class ReplicaServant extends Replication.CatalogReplica {
  readonly #replication: CatalogReplication;
  readonly #database: CatalogDatabase;

  constructor(replication: CatalogReplication, database: CatalogDatabase) {
    super();
    this.#replication = replication;
    this.#database = database;
  }

  changesSince(epoch: string, after: Ice.Long, maxBytes: number): Replication.Changes {
    // Change numbers start again at every run: a caller that counted in another run gets everything.
    const from = epoch === this.#database.replica ? after.toNumber() : 0;
    const { last, titles, complete } = this.#database.changesSince(from, Math.min(Math.max(maxBytes, 1), PAGE_BYTES));
    return new Replication.Changes(
      this.#database.replica,
      new Ice.Long(last),
      titles.map(([id, title]) => toSlice(id, title)),
      complete,
    );
  }

  changed(replica: string): Promise<void> {
    return this.#replication.changedAt(replica);
  }

  join(replica: string): Promise<void> {
    return this.#replication.joined(replica);
  }
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

/** A title as a replica sent it, or `undefined` if one of its versions is not a counter this side can hold. */
function fromSlice(title: Replication.Title): VersionedTitle | undefined {
  const version = ({ counter, replica }: Replication.Version) => ({ counter: counter.toNumber(), replica });
  const versioned = {
    name: title.name,
    nameVersion: version(title.nameVersion),
    tags: title.tags.map(({ tag, present, version: tagVersion }) => ({ tag, present, version: version(tagVersion) })),
  };
  const valid = [versioned.nameVersion, ...versioned.tags.map(({ version }) => version)]
    .every(({ counter }) => Number.isSafeInteger(counter) && counter >= 0);
  return valid ? versioned : undefined;
}
