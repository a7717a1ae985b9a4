/**
 * Authenticator replicas that agree (issue 7): a token issued by any replica
 * is accepted by every one, and its expiry is published once.
 *
 * - **Sharing.** `refreshAuthorization` returns a token only after the
 *   issuer has pushed it, in parallel, to every live peer (`share`, facet
 *   `TokenReplica` of each Authenticator object): when the client gets its
 *   token, every replica accepts it. A peer that does not answer within the
 *   call timeout is dropped, and gets the whole table again when discovery
 *   finds it back. Tokens never go through IceStorm, where anyone may
 *   subscribe: only these direct calls carry them, sealed (AES-256-GCM) with
 *   the key all replicas of an installation share, so only a replica can read
 *   them and nobody without the key can inject or withdraw one.
 * - **Catch-up.** A replica that starts lists the running ones (the
 *   subscribers of topic `AuthenticatorReplicas`), and `join`s each: the peer
 *   shares its live tokens with it and, from then on, every new one too.
 *   Until that is done, a token it does not know waits for the catch-up
 *   before the answer is "no". Discovery completes the picture: whenever a
 *   replica finds one it did not know, it shares its whole table with it.
 * - **Revocation, once.** Every replica expires every token at the same
 *   moment (the expiry travels with the token). The issuer publishes the
 *   `revoke`. A peer whose timer fires pings the issuer: if it answers, the
 *   issuer does it; if it is gone, the live replica with the smallest
 *   discovery id does (each replica pings those with smaller ids than its own;
 *   only one finds none alive). Before publishing, the publisher tells its
 *   peers (`revoked`), so no replica still accepts a token once its `revoke`
 *   event is out, whatever their clocks say.
 *
 * @module
 */
import { Ice } from "ice";
import { Buffer } from "node:buffer";
import { createCipheriv, createDecipheriv, createHash } from "node:crypto";
// @ts-types="./slice/auth_replication.d.ts"
import { IceFlixAuthReplication } from "./slice/auth_replication.js";
import { type Discovery, isUnreachable } from "./discovery.ts";
import { describeError, type Logger } from "./service.ts";
import { type ExpiredToken, type Grant, TokenTable } from "./token_table.ts";

/** The facet of each Authenticator object where its peers reach its replica servant. */
const REPLICA_FACET = "TokenReplica";

/** The topic whose subscribers are the running replicas. Nothing is ever published there. */
const REPLICAS_TOPIC = "AuthenticatorReplicas";

/** The identity category of a registry entry: its name is the replica's Authenticator proxy. */
const REGISTRY_CATEGORY = "TokenReplica";

/** What replicas tell each other, always sealed. */
type Message =
  | { kind: "join" | "welcome"; from: string }
  | { kind: "grants"; from: string; grants: Grant[] }
  | { kind: "revoked"; from: string; tokens: string[] };

/**
 * Tokens per message: about 100 bytes each as JSON, so a message stays far below Ice's default limit of 1 MB
 * (`Ice.MessageSizeMax`) however many tokens are live.
 */
const BATCH = 2000;

/** `items` in consecutive slices of at most `size`. */
function batches<T>(items: T[], size = BATCH): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));
}

/** AES-GCM's recommended nonce and its authentication tag, in bytes. */
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Reads the replication key file: any non-empty text (./setup writes 32
 * random bytes in hex), hashed into a 256-bit AES key. Every replica of an
 * installation must read the same file.
 */
export async function readReplicationKey(path: string): Promise<Uint8Array> {
  let text: string;
  try {
    text = (await Deno.readTextFile(path)).trim();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new Error(`replication key file ${path} not found: ./setup makes one (all replicas need the same file)`);
  }
  if (text === "") throw new Error(`replication key file ${path} is empty`);
  return createHash("sha256").update(text).digest();
}

/** `message` encrypted and authenticated under `key`: nonce, tag, ciphertext. */
function seal(key: Uint8Array, message: Message): Uint8Array {
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  const body = Buffer.concat([cipher.update(JSON.stringify(message), "utf8"), cipher.final()]);
  return new Uint8Array(Buffer.concat([nonce, cipher.getAuthTag(), body]));
}

/**
 * The message sealed in `sealed`, which must be of `kind`.
 *
 * @throws IceFlixAuthReplication.Unreadable if it was not sealed with `key` (or altered since), or is another kind
 */
function open<K extends Message["kind"]>(key: Uint8Array, sealed: Uint8Array, kind: K): Extract<Message, { kind: K }> {
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, NONCE_BYTES));
    decipher.setAuthTag(sealed.subarray(NONCE_BYTES, NONCE_BYTES + TAG_BYTES));
    const text = Buffer.concat([decipher.update(sealed.subarray(NONCE_BYTES + TAG_BYTES)), decipher.final()]);
    const message = JSON.parse(text.toString("utf8"));
    if (message.kind === kind) return message;
  } catch {
    // Falls through: wrong key, altered bytes, or not ours at all.
  }
  throw new IceFlixAuthReplication.Unreadable();
}

/** The replica servant of `authenticator` (any Authenticator proxy), with a bounded timeout (ms) on every call. */
function replicaOf(authenticator: Ice.ObjectPrx, timeout: number): IceFlixAuthReplication.TokenReplicaPrx {
  return IceFlixAuthReplication.TokenReplicaPrx.uncheckedCast(authenticator, REPLICA_FACET)
    .ice_invocationTimeout(timeout);
}

/** How {@linkcode ReplicatedTokens} is built. */
export interface ReplicationOptions {
  adapter: Ice.ObjectAdapter;
  /** This replica's Authenticator object: the replica servant is added as its facet `TokenReplica`. */
  authenticator: Ice.ObjectPrx;
  /** Its id is this replica's id; it finds the peers and holds the IceStorm link. */
  discovery: Discovery;
  logger: Logger;
  /** From {@linkcode readReplicationKey}. */
  key: Uint8Array;
  /** How long a token issued here lives (ms). */
  lifetime: number;
  /** Publishes `revoke` for these expired tokens; across all the replicas, each token is given to one of them. */
  revoke(tokens: string[]): Promise<unknown>;
}

/** The tokens of one Authenticator replica, kept in agreement with its peers. */
export class ReplicatedTokens {
  readonly #options: ReplicationOptions;
  readonly #table: TokenTable;
  /** Live replicas as far as this one knows: discovery id -> replica servant. */
  readonly #peers = new Map<string, IceFlixAuthReplication.TokenReplicaPrx>();
  /** Authenticators that are not replicas of this installation (other implementations, other keys). */
  readonly #strangers = new Set<string>();
  #self: IceFlixAuthReplication.TokenReplicaPrx | undefined;
  /** Resolves once the catch-up from the running replicas is over. */
  #caughtUp: Promise<void> = Promise.resolve();

  constructor(options: ReplicationOptions) {
    this.#options = options;
    this.#table = new TokenTable((expired) => void this.#expire(expired));
  }

  /** This replica's id: its discovery id. */
  get id(): string {
    return this.#options.discovery.id;
  }

  /** How many tokens are live. */
  get size(): number {
    return this.#table.size;
  }

  /**
   * Adds the replica servant, listens for replicas that discovery finds, and
   * starts the catch-up from the running replicas (in the background: see
   * {@linkcode isLive}). Call it before `discovery.start()`.
   */
  start(): void {
    const { adapter, authenticator, discovery } = this.#options;
    const servant = new TokenReplicaServant(this.#options.key, this.id, {
      join: async (newcomer, from) => {
        const peer = newcomer.ice_invocationTimeout(discovery.callTimeout);
        // In the same turn as the snapshot: every token issued from now on reaches the newcomer too.
        this.#peers.set(from, peer);
        for (const sealed of this.#sealGrants(this.#table.grants())) await peer.share(sealed);
      },
      share: (grants) => grants.forEach((grant) => this.#table.add(grant)),
      revoked: (tokens) => tokens.forEach((token) => this.#table.remove(token)),
    });
    // A facet: another servant of the same Ice object, reached with the same proxy plus the facet's name.
    this.#self = IceFlixAuthReplication.TokenReplicaPrx.uncheckedCast(
      adapter.addFacet(servant, authenticator.ice_getIdentity(), REPLICA_FACET),
    );
    // The registry entry: its identity carries what a new replica needs to reach this one.
    const entry = adapter.add(
      servant,
      new Ice.Identity(adapter.getCommunicator().proxyToString(authenticator), REGISTRY_CATEGORY),
    );
    discovery.onServiceAdded((kind, id, proxy) => {
      if (kind === "auth") this.#met(id, replicaOf(proxy, discovery.callTimeout));
    });
    this.#caughtUp = this.#catchUp(entry);
  }

  /** A new token issued here, returned once every live peer has it. */
  async issue(): Promise<string> {
    const grant = this.#table.issue(this.id, this.#options.lifetime);
    await this.#broadcast(this.#sealGrants([grant]));
    return grant.token;
  }

  /** Whether `token` is live; a token unknown here while the catch-up runs waits for it before the answer. */
  async isLive(token: string): Promise<boolean> {
    if (this.#table.isLive(token)) return true;
    await this.#caughtUp;
    return this.#table.isLive(token);
  }

  /** Stops the expiry timer (at shutdown; the registry entry goes with the discovery's subscriptions). */
  stop(): void {
    this.#table.stop();
  }

  /** Registers in the registry, then joins every replica listed there. */
  async #catchUp(entry: Ice.ObjectPrx): Promise<void> {
    const { discovery, logger, key } = this.#options;
    await discovery.events.subscribe(REPLICAS_TOPIC, entry);
    let registry: Ice.Identity[];
    try {
      registry = await (await discovery.events.topic(REPLICAS_TOPIC)).getSubscribers();
    } catch (error) {
      logger.warn(
        `cannot list the running replicas (${describeError(error)}); their tokens come when they find this one`,
      );
      return;
    }
    const hello = seal(key, { kind: "join", from: this.id });
    const others = registry.filter(({ category, name }) =>
      category === REGISTRY_CATEGORY && name !== entry.ice_getIdentity().name
    );
    const joined = (await Promise.all(others.map((identity) => this.#join(identity, hello)))).filter(Boolean);
    logger.info(`caught up: ${this.#table.size} live token(s) from ${joined.length} replica(s)`);
  }

  /** Joins the replica of registry entry `identity` (it shares its tokens meanwhile); returns whether it did. */
  async #join(identity: Ice.Identity, hello: Uint8Array): Promise<boolean> {
    const { adapter, discovery, logger, key } = this.#options;
    let peer: IceFlixAuthReplication.TokenReplicaPrx;
    try {
      peer = replicaOf(adapter.getCommunicator().stringToProxy(identity.name), discovery.callTimeout);
    } catch {
      return false; // Not an entry of ours.
    }
    try {
      const { from } = open(key, await peer.join(this.#self!, hello), "welcome");
      this.#peers.set(from, peer);
      return true;
    } catch (error) {
      if (error instanceof IceFlixAuthReplication.Unreadable) {
        logger.warn(`replica ${identity.name} uses another replication key: no tokens shared with it`);
      } else {
        // Gone (its entry outlived it), or not a replica: off the list. A live one subscribes again at its next tick.
        logger.info(`replica ${identity.name} does not answer (${describeError(error)}); removed from the registry`);
        discovery.events.topic(REPLICAS_TOPIC).then((topic) => topic.unsubscribe(peer.ice_identity(identity)))
          .catch(() => {});
      }
      return false;
    }
  }

  /** Discovery found Authenticator `id`: a replica of ours gets this one's whole table. */
  #met(id: string, peer: IceFlixAuthReplication.TokenReplicaPrx): void {
    if (this.#strangers.has(id)) return;
    this.#peers.set(id, peer);
    const messages = this.#sealGrants(this.#table.grants());
    void this.#call(id, peer, async (replica) => {
      for (const sealed of messages) await replica.share(sealed);
    });
  }

  /** `grants` sealed into `share` messages. */
  #sealGrants(grants: Grant[]): Uint8Array[] {
    return batches(grants).map((batch) => seal(this.#options.key, { kind: "grants", from: this.id, grants: batch }));
  }

  /**
   * Sends `messages` to every known peer (all of them to each one in turn, peers in parallel) as `share` calls, or
   * as `revoked` calls; resolves when each peer has taken them or failed.
   */
  async #broadcast(messages: Uint8Array[], operation: "share" | "revoked" = "share"): Promise<void> {
    await Promise.all(
      [...this.#peers].map(([id, peer]) =>
        this.#call(id, peer, async (replica) => {
          for (const sealed of messages) await replica[operation](sealed);
        })
      ),
    );
  }

  /**
   * Calls peer `id`; a peer that fails is dropped. One that is not a replica
   * of ours is never called again; one that is unreachable is also forgotten
   * by discovery, which finds it again when it announces itself (and then it
   * gets this replica's whole table). Resolves to the call's result, or
   * undefined if it failed.
   */
  async #call<T>(
    id: string,
    peer: IceFlixAuthReplication.TokenReplicaPrx,
    call: (replica: IceFlixAuthReplication.TokenReplicaPrx) => PromiseLike<T>,
  ): Promise<T | undefined> {
    const { discovery, logger } = this.#options;
    try {
      return await call(peer);
    } catch (error) {
      if (this.#peers.get(id) === peer) this.#peers.delete(id);
      if (error instanceof IceFlixAuthReplication.Unreadable) {
        this.#strangers.add(id);
        logger.warn(`replica ${id} uses another replication key: no tokens shared with it`);
      } else if (error instanceof Ice.RequestFailedException) {
        // No such facet or operation: another implementation of the Authenticator.
        this.#strangers.add(id);
        logger.info(`auth service ${id} shares no tokens (${describeError(error)})`);
      } else if (isUnreachable(error)) {
        discovery.forget("auth", id);
        logger.warn(`replica ${id} unreachable (${describeError(error)})`);
      } else {
        logger.warn(`replica ${id} failed (${describeError(error)})`);
      }
      return undefined;
    }
  }

  /** Tokens expired here: publish the revocations that are this replica's to publish (see the module's doc). */
  async #expire(expired: ExpiredToken[]): Promise<void> {
    const byIssuer = Map.groupBy(expired, ({ issuer }) => issuer);
    const ours = await Promise.all(
      [...byIssuer].map(async ([issuer, tokens]) => (await this.#revokes(issuer, tokens.length)) ? tokens : []),
    );
    const tokens = ours.flat().map(({ token }) => token);
    this.#options.logger.debug(`${expired.length} token(s) expired; revoking ${tokens.length}`);
    if (tokens.length === 0) return;
    const { key } = this.#options;
    await this.#broadcast(
      batches(tokens).map((batch) => seal(key, { kind: "revoked", from: this.id, tokens: batch })),
      "revoked",
    );
    await this.#options.revoke(tokens);
  }

  /**
   * Whether this replica publishes the revocation of tokens issued by
   * `issuer`: its own, always; another's, only if the issuer is gone and no
   * live replica has a smaller id.
   */
  async #revokes(issuer: string, count: number): Promise<boolean> {
    if (issuer === this.id) return true;
    if (await this.#answers(issuer)) return false;
    const smaller = [...this.#peers.keys()].filter((id) => id !== issuer && id < this.id);
    if ((await Promise.all(smaller.map((id) => this.#answers(id)))).includes(true)) return false;
    this.#options.logger.info(
      `replica ${issuer} is gone: this one, the live replica with the smallest id, revokes its ${count} token(s)`,
    );
    return true;
  }

  /** Whether peer `id` is known and answers a ping. */
  async #answers(id: string): Promise<boolean> {
    const peer = this.#peers.get(id);
    return peer !== undefined &&
      (await this.#call(id, peer, (replica) => replica.ice_ping().then(() => true)) ?? false);
  }
}

/** What the replica servant does with the messages it opens. */
interface ReplicaHandlers {
  join(newcomer: IceFlixAuthReplication.TokenReplicaPrx, from: string): Promise<void>;
  share(grants: Grant[]): void;
  revoked(tokens: string[]): void;
}

/** The `TokenReplica` servant: opens what peers send, seals what it answers. */
class TokenReplicaServant extends IceFlixAuthReplication.TokenReplica {
  readonly #key: Uint8Array;
  /** The id of the replica it serves. */
  readonly #id: string;
  readonly #handlers: ReplicaHandlers;

  constructor(key: Uint8Array, id: string, handlers: ReplicaHandlers) {
    super();
    this.#key = key;
    this.#id = id;
    this.#handlers = handlers;
  }

  async join(newcomer: IceFlixAuthReplication.TokenReplicaPrx | null, hello: Uint8Array): Promise<Uint8Array> {
    const { from } = open(this.#key, hello, "join");
    if (newcomer) await this.#handlers.join(newcomer, from);
    return seal(this.#key, { kind: "welcome", from: this.#id });
  }

  share(grants: Uint8Array): void {
    this.#handlers.share(open(this.#key, grants, "grants").grants);
  }

  revoked(tokens: Uint8Array): void {
    this.#handlers.revoked(open(this.#key, tokens, "revoked").tokens);
  }
}
