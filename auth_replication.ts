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
// @ts-types="./slice/auth_replication.d.ts"
import { IceFlixAuthReplication } from "./slice/auth_replication.js";
import { type Discovery, isUnreachable } from "./discovery.ts";
import { ReplicaRegistry } from "./replica_registry.ts";
import { describeError, type ServiceContext } from "./service.ts";
import { type ExpiredToken, type Grant, TokenTable } from "./token_table.ts";

/**
 * The facet of each Authenticator object where its peers reach its replica servant, and the identity category of
 * its entry in the registry (topic `AuthenticatorReplicas`).
 */
const REPLICA_FACET = "TokenReplica";

/** The topic whose subscribers are the running replicas. Nothing is ever published there. */
const REPLICAS_TOPIC = "AuthenticatorReplicas";

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

/** AES-GCM's recommended nonce, in bytes. */
const NONCE_BYTES = 12;

/**
 * Reads the replication key file: any non-empty text (./setup writes 32
 * random bytes in hex), hashed into a 256-bit AES key. Every replica of an
 * installation must read the same file.
 */
export async function readReplicationKey(path: string): Promise<CryptoKey> {
  let text: string;
  try {
    text = (await Deno.readTextFile(path)).trim();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new Error(`replication key file ${path} not found: ./setup makes one (all replicas need the same file)`);
  }
  if (text === "") throw new Error(`replication key file ${path} is empty`);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return crypto.subtle.importKey("raw", digest, "AES-GCM", false, ["encrypt", "decrypt"]);
}

/** `message` encrypted and authenticated under `key`: the nonce, then the ciphertext and its tag. */
async function seal(key: CryptoKey, message: Message): Promise<Uint8Array> {
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const body = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce },
    key,
    new TextEncoder().encode(JSON.stringify(message)),
  );
  const sealed = new Uint8Array(NONCE_BYTES + body.byteLength);
  sealed.set(nonce);
  sealed.set(new Uint8Array(body), NONCE_BYTES);
  return sealed;
}

/**
 * The message sealed in `sealed`, which must be of `kind`.
 *
 * @throws IceFlixAuthReplication.Unreadable if it was not sealed with `key` (or altered since), or is another kind
 */
async function open<K extends Message["kind"]>(
  key: CryptoKey,
  sealed: Uint8Array,
  kind: K,
): Promise<Extract<Message, { kind: K }>> {
  try {
    const text = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: sealed.slice(0, NONCE_BYTES) },
      key,
      sealed.slice(NONCE_BYTES),
    );
    const message = JSON.parse(new TextDecoder().decode(text));
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
  context: ServiceContext;
  /** This replica's Authenticator object: the replica servant is added as its facet `TokenReplica`. */
  authenticator: Ice.ObjectPrx;
  /** Its id is this replica's id; it finds the peers. */
  discovery: Discovery;
  /** From {@linkcode readReplicationKey}. */
  key: CryptoKey;
  /** How long a token issued here lives (ms). */
  lifetime: number;
  /** Publishes `revoke` for these expired tokens; across all the replicas, each token is given to one of them. */
  revoke(tokens: string[]): Promise<unknown>;
}

/** The tokens of one Authenticator replica, kept in agreement with its peers. */
export class ReplicatedTokens {
  readonly #options: ReplicationOptions;
  readonly #registry: ReplicaRegistry;
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
    this.#registry = new ReplicaRegistry(options.context, REPLICAS_TOPIC, REPLICA_FACET, options.authenticator);
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
    const { context: { adapter, callTimeout }, authenticator, discovery } = this.#options;
    const servant = new TokenReplicaServant(this.#options.key, this.id, {
      join: async (newcomer, from) => {
        const peer = newcomer.ice_invocationTimeout(callTimeout);
        // In the same turn as the snapshot: every token issued from now on reaches the newcomer too.
        this.#peers.set(from, peer);
        for (const sealed of await this.#sealGrants(this.#table.grants())) await peer.share(sealed);
      },
      share: (grants) => grants.forEach((grant) => this.#table.add(grant)),
      revoked: (tokens) => tokens.forEach((token) => this.#table.remove(token)),
    });
    // A facet: another servant of the same Ice object, reached with the same proxy plus the facet's name.
    this.#self = IceFlixAuthReplication.TokenReplicaPrx.uncheckedCast(
      adapter.addFacet(servant, authenticator.ice_getIdentity(), REPLICA_FACET),
    );
    // The registry entry: the same servant, under an identity that carries what a new replica needs to reach it.
    this.#registry.add(servant);
    discovery.onServiceAdded((kind, id, proxy) => {
      if (kind === "auth") this.#met(id, replicaOf(proxy, callTimeout));
    });
    this.#caughtUp = this.#catchUp();
  }

  /** A new token issued here, returned once every live peer has it. */
  async issue(): Promise<string> {
    const grant = this.#table.issue(this.id, this.#options.lifetime);
    await this.#broadcast(await this.#sealGrants([grant]));
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
  async #catchUp(): Promise<void> {
    const { context: { logger }, key } = this.#options;
    await this.#registry.subscribe();
    let listed: Map<string, Ice.ObjectPrx>;
    try {
      listed = await this.#registry.list();
    } catch (error) {
      logger.warn(
        `cannot list the running replicas (${describeError(error)}); their tokens come when they find this one`,
      );
      return;
    }
    const hello = await seal(key, { kind: "join", from: this.id });
    const joined = (await Promise.all([...listed].map(([name, entry]) => this.#join(name, entry, hello))))
      .filter(Boolean);
    logger.info(`caught up: ${this.#table.size} live token(s) from ${joined.length} replica(s)`);
  }

  /** Joins the replica of registry entry `entry` (it shares its tokens meanwhile); returns whether it did. */
  async #join(name: string, entry: Ice.ObjectPrx, hello: Uint8Array): Promise<boolean> {
    const { context: { callTimeout, logger }, key } = this.#options;
    const peer = IceFlixAuthReplication.TokenReplicaPrx.uncheckedCast(entry).ice_invocationTimeout(callTimeout);
    try {
      const { from } = await open(key, await peer.join(this.#self!, hello), "welcome");
      this.#peers.set(from, peer);
      return true;
    } catch (error) {
      if (error instanceof IceFlixAuthReplication.Unreadable) {
        logger.warn(`replica ${name} uses another replication key: no tokens shared with it`);
      } else {
        // Gone (its entry outlived it), or not a replica: off the list. A live one subscribes again at its next tick.
        logger.info(`replica ${name} does not answer (${describeError(error)}); removed from the registry`);
        void this.#registry.remove(entry);
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
      for (const sealed of await messages) await replica.share(sealed);
    });
  }

  /** `grants` sealed into `share` messages. */
  #sealGrants(grants: Grant[]): Promise<Uint8Array[]> {
    return Promise.all(
      batches(grants).map((batch) => seal(this.#options.key, { kind: "grants", from: this.id, grants: batch })),
    );
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
    const { discovery, context: { logger } } = this.#options;
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
    this.#options.context.logger.debug(`${expired.length} token(s) expired; revoking ${tokens.length}`);
    if (tokens.length === 0) return;
    const { key } = this.#options;
    await this.#broadcast(
      await Promise.all(batches(tokens).map((batch) => seal(key, { kind: "revoked", from: this.id, tokens: batch }))),
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
    this.#options.context.logger.info(
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
  readonly #key: CryptoKey;
  /** The id of the replica it serves. */
  readonly #id: string;
  readonly #handlers: ReplicaHandlers;

  constructor(key: CryptoKey, id: string, handlers: ReplicaHandlers) {
    super();
    this.#key = key;
    this.#id = id;
    this.#handlers = handlers;
  }

  async join(newcomer: IceFlixAuthReplication.TokenReplicaPrx | null, hello: Uint8Array): Promise<Uint8Array> {
    const { from } = await open(this.#key, hello, "join");
    if (newcomer) await this.#handlers.join(newcomer, from);
    return seal(this.#key, { kind: "welcome", from: this.#id });
  }

  async share(grants: Uint8Array): Promise<void> {
    this.#handlers.share((await open(this.#key, grants, "grants")).grants);
  }

  async revoked(tokens: Uint8Array): Promise<void> {
    this.#handlers.revoked((await open(this.#key, tokens, "revoked")).tokens);
  }
}
