/**
 * Authenticator replicas that agree (issue 7): a token issued by any replica
 * is accepted by every one at once, and each expiry is published once
 * (README, "Authenticator replicas", tells how).
 *
 * A token proves itself (token_table.ts, TokenMint: a MAC under a key derived
 * from the installation secret), so checking one takes no table and no call,
 * and a login waits for no peer. The replicas still share every token, after
 * the login's answer and in batches, and a new replica learns the live ones:
 * so that if its issuer dies, the live replica with the smallest id publishes
 * its expiry.
 *
 * Only replicas that proved the installation secret (trust.ts) take part, and
 * every message between them is sealed (AES-256-GCM, under a key derived from
 * that secret) with its sender, its recipient, its time and a nonce inside: a
 * message read from the wire or replayed to another replica, or later, is
 * refused.
 *
 * @module
 */
import { Ice } from "ice";
import { Buffer } from "node:buffer";
import { createCipheriv, createDecipheriv } from "node:crypto";
// @ts-types="./slice/auth_replication.d.ts"
import { IceFlixAuthReplication } from "./slice/auth_replication.js";
import { type Discovery, isUnreachable } from "./discovery.ts";
import { ReplicaRegistry } from "./replica_registry.ts";
import { OncePerBurst } from "./log.ts";
import { describeError, type ServiceContext } from "./service.ts";
import { type ExpiredToken, type Grant, TOKEN_MAX_LENGTH, TokenMint, TokenTable } from "./token_table.ts";
import { bindingOf, ownConnection, Trust } from "./trust.ts";

/**
 * The facet of each Authenticator object where its peers reach its replica servant, and the identity category of
 * its entry in the registry (topic `AuthenticatorReplicas`).
 */
const REPLICA_FACET = "TokenReplica";

/** The topic whose subscribers are the running replicas. Nothing is ever published there. */
const REPLICAS_TOPIC = "AuthenticatorReplicas";

/**
 * What replicas tell each other, always sealed. `from` is the sender's replica id; a `join` carries the binding of
 * the newcomer's Authenticator proxy (trust.ts), where the peer will send its tokens.
 */
type Message =
  | { kind: "join"; from: string; newcomer: string }
  | { kind: "welcome"; from: string; tokens: number }
  | { kind: "grants"; from: string; grants: Grant[] }
  | { kind: "revoked"; from: string; tokens: string[] };

/**
 * What every sealed message also holds: its recipients (the bindings of their Authenticator proxies: a message
 * every peer gets is sealed once), its time and its nonce.
 */
interface Envelope {
  to: string[];
  at: number;
  nonce: string;
}

/**
 * Tokens per message: about 100 bytes each as JSON (at most 200 with a long user name), so a message stays far below Ice's default limit of 1 MB
 * (`Ice.MessageSizeMax`) however many tokens are live.
 */
const BATCH = 2000;

/**
 * The shortest time between the starts of two shares of new tokens (ms): while logins keep coming, their tokens
 * gather this long and leave in one message per peer. It is also how long a token may stay known to its issuer
 * alone: should the issuer die then, nobody publishes its expiry (it is still accepted until then, and refused
 * after, everywhere).
 */
const SHARE_SPACING = 20;

/** `items` in consecutive slices of at most `size`. */
function batches<T>(items: T[], size = BATCH): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));
}

/**
 * Seals and opens the messages of one replica, whose Authenticator proxy has
 * binding `self` (exported for the tests, which hold the secret and play a replica).
 */
export class Sealer {
  readonly #key: Uint8Array;
  readonly #trust: Trust;
  /** This replica's Authenticator binding: what the messages for it carry as `to`. */
  readonly self: string;

  private constructor(key: Uint8Array, trust: Trust, self: string) {
    this.#key = key;
    this.#trust = trust;
    this.self = self;
  }

  /** The sealer of the replica at `authenticator`, with its key derived from the installation secret. */
  static async create(trust: Trust, authenticator: Ice.ObjectPrx): Promise<Sealer> {
    return new Sealer(await trust.derive("Authenticator replication"), trust, bindingOf(authenticator));
  }

  /**
   * `message` for the replica whose Authenticator binding is `to`, encrypted and authenticated: nonce, tag, body.
   * node:crypto rather than Web Crypto: every login seals once per peer, and Web Crypto's promise would cost each
   * one a trip through a thread pool.
   */
  seal(to: string[], message: Message): Uint8Array {
    const envelope: Envelope = { to, at: Date.now(), nonce: Trust.nonce() };
    const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    const body = Buffer.concat([cipher.update(JSON.stringify({ ...message, ...envelope }), "utf8"), cipher.final()]);
    return new Uint8Array(Buffer.concat([iv, cipher.getAuthTag(), body]));
  }

  /**
   * The message sealed in `sealed`, which must be of `kind`, for this replica, fresh and never seen before.
   *
   * @throws IceFlixAuthReplication.Unreadable saying why not
   */
  open<K extends Message["kind"]>(sealed: Uint8Array, kind: K): Extract<Message, { kind: K }> {
    let message: Message & Envelope;
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.#key, sealed.subarray(0, IV_BYTES));
      decipher.setAuthTag(sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      const text = Buffer.concat([decipher.update(sealed.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
      message = JSON.parse(text.toString("utf8"));
    } catch {
      throw new IceFlixAuthReplication.Unreadable("not sealed with this installation's secret");
    }
    if (message.kind !== kind) throw new IceFlixAuthReplication.Unreadable(`a ${message.kind} message, not ${kind}`);
    if (!Array.isArray(message.to) || !message.to.includes(this.self)) {
      throw new IceFlixAuthReplication.Unreadable("meant for another replica");
    }
    const replay = this.#trust.replayRefusal(message.at, message.nonce);
    if (replay) throw new IceFlixAuthReplication.Unreadable(replay);
    return message as unknown as Extract<Message, { kind: K }>;
  }
}

/** AES-GCM's recommended nonce and its authentication tag, in bytes. */
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Whether `grant` is one, as a peer must send it: a token, its user, its issuer, a time. */
function isGrant(grant: Grant): boolean {
  return typeof grant?.token === "string" && grant.token.length <= TOKEN_MAX_LENGTH &&
    typeof grant.issuer === "string" &&
    grant.issuer.length <= 256 && typeof grant.user === "string" && grant.user.length <= 256 &&
    Number.isFinite(grant.expiresAt);
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
  /** How long a token issued here lives (ms). */
  lifetime: number;
  /** Publishes `revoke` for these expired tokens; across all the replicas, each token is given to one of them. */
  revoke(tokens: string[]): Promise<unknown>;
}

/**
 * A peer as this replica knows it: its replica servant, the binding its messages are sealed for, and how to close
 * the connection it is called on, when it is dropped.
 */
interface Peer {
  replica: IceFlixAuthReplication.TokenReplicaPrx;
  binding: string;
  close(): void;
}

/**
 * A peer reached at `replica` over a connection of its own (trust.ts, ownConnection), closed when it is dropped:
 * Ice would otherwise keep a connection to a peer that hangs until it has been idle for a minute.
 *
 * @throws Ice.LocalException when the connection cannot be made within `timeout` ms
 */
async function peerAt(
  replica: IceFlixAuthReplication.TokenReplicaPrx,
  binding: string,
  timeout: number,
): Promise<Peer> {
  const own = await ownConnection(replica, timeout);
  return { replica: own.proxy.ice_invocationTimeout(timeout), binding, close: own.close };
}

/** The tokens of one Authenticator replica, kept in agreement with its peers. */
export class ReplicatedTokens {
  readonly #options: ReplicationOptions;
  readonly #registry: ReplicaRegistry;
  readonly #table: TokenTable;
  /** Live replicas as far as this one knows: discovery id -> how to reach it. */
  readonly #peers = new Map<string, Peer>();
  /** Peers whose table is on its way here after their welcome: id -> what to tell when a part of it arrives. */
  readonly #transfers = new Map<string, (tokens: number) => void>();
  /** Listed replicas that failed their proof, logged once per burst: anyone can list forged ones by the thousand. */
  readonly #refusals: OncePerBurst;
  #sealer: Sealer | undefined;
  #mint: TokenMint | undefined;
  #self: IceFlixAuthReplication.TokenReplicaPrx | undefined;
  /** Tokens issued here that wait for the share under way to end: they leave together in the next one. */
  readonly #outbox: Grant[] = [];
  /** Whether a share is scheduled for the outbox. */
  #shareScheduled = false;
  /** When the last share started (performance.now()). */
  #lastShareStart = -Infinity;
  /** The share last scheduled (at first, the catch-up: tokens issued meanwhile go to the peers it finds). */
  #lastShare: Promise<void> = Promise.resolve();

  constructor(options: ReplicationOptions) {
    this.#options = options;
    this.#registry = new ReplicaRegistry(options.context, REPLICAS_TOPIC, REPLICA_FACET, options.authenticator);
    this.#table = new TokenTable((expired) => void this.#expire(expired));
    this.#refusals = new OncePerBurst((message) => options.context.logger.warn(message));
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
  async start(): Promise<void> {
    const { context: { adapter, callTimeout, logger, trust }, authenticator, discovery } = this.#options;
    const sealer = this.#sealer = await Sealer.create(trust, authenticator);
    this.#mint = new TokenMint(
      await trust.derive("Authenticator tokens: MAC"),
      await trust.derive("Authenticator tokens: cipher"),
    );
    const servant = new TokenReplicaServant(sealer, this.id, {
      join: async (newcomer, { from, newcomer: binding }) => {
        const peer = await peerAt(newcomer, binding, callTimeout);
        // In the same turn as the snapshot: every token issued from now on reaches the newcomer too.
        this.#setPeer(from, peer);
        // After the answer, in parts, each read from the table, sealed and sent in a call of its own when the one
        // before has been taken, within the call timeout: the whole table inside the join's one call timed out under
        // load (44,000 tokens), and the newcomer then took this live replica for dead.
        const parts = this.#table.grantParts(BATCH);
        setTimeout(() =>
          void this.#call(from, peer, async (replica) => {
            for (const part of parts) await replica.share(this.#sealGrants([peer], part)[0]);
          })
        );
        return this.#table.size;
      },
      share: (from, grants) => {
        this.#transfers.get(from)?.(grants.length);
        const added = Map.groupBy(grants.filter((grant) => isGrant(grant) && this.#table.add(grant)), (g) => g.issuer);
        for (const [issuer, tokens] of added) {
          logger.debug(`holds ${tokens.length} more token(s) of replica ${issuer} (${this.#table.size} live)`);
        }
      },
      revoked: (tokens) => tokens.forEach((token) => this.#table.remove(String(token))),
    });
    // A facet: another servant of the same Ice object, reached with the same proxy plus the facet's name.
    this.#self = IceFlixAuthReplication.TokenReplicaPrx.uncheckedCast(
      adapter.addFacet(servant, authenticator.ice_getIdentity(), REPLICA_FACET),
    );
    // The registry entry: the same servant, under an identity that carries what a new replica needs to reach it.
    this.#registry.add(servant);
    discovery.onServiceAdded((kind, id, proxy) => {
      // An Authenticator admitted without proof (another implementation) is no replica of ours.
      if (kind === "auth" && discovery.isProven(kind, id)) this.#met(id, proxy);
    });
    this.#lastShare = this.#catchUp();
  }

  /**
   * A new token for `user` issued here. Every replica accepts it at once (it proves itself); it reaches the peers
   * after this returns (see #share).
   */
  issue(user: string): string {
    const expiresAt = Date.now() + this.#options.lifetime;
    const grant = { token: this.#mint!.mint(user, expiresAt), user, issuer: this.id, expiresAt };
    this.#table.add(grant);
    this.#share(grant);
    return grant.token;
  }

  /**
   * Sends `grant` to every live peer, in the background; a login waits for none. What a peer needs a token for is
   * only its expiry, should the issuer die first. A share starts at once if none is under way and none started in
   * the last SHARE_SPACING ms; otherwise the token waits, and the tokens issued meanwhile leave together, sealed once
   * in one message for every peer. So a lone login's token is on its way before the login returns, and logins in a
   * stream cost a few messages a second per peer between them, not one each.
   */
  #share(grant: Grant): void {
    this.#outbox.push(grant);
    if (this.#shareScheduled) return;
    this.#shareScheduled = true;
    // #broadcast settles every call, and so never rejects: a failed share cannot stop the next ones.
    this.#lastShare = this.#lastShare.then(async () => {
      const wait = this.#lastShareStart + SHARE_SPACING - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      this.#shareScheduled = false;
      this.#lastShareStart = performance.now();
      const grants = this.#outbox.splice(0);
      return this.#broadcast((peers) => this.#sealGrants(peers, grants));
    });
  }

  /**
   * Whether `token` is one of this installation's and has not expired, with no call: the table knows the tokens
   * issued here and those shared already, the token itself tells the others.
   */
  isLive(token: string): boolean {
    return this.#table.userOf(token) !== undefined || this.#mint!.isLive(token);
  }

  /** The user of `token` if it is live, as isLive finds it. */
  userOf(token: string): string | undefined {
    return this.#table.userOf(token) ?? this.#mint!.userOf(token);
  }

  /** Stops the expiry timer (at shutdown; the registry entry goes with the event channel's subscriptions). */
  stop(): void {
    this.#table.stop();
  }

  /** Registers in the registry, then joins every replica listed there that proves the secret. */
  async #catchUp(): Promise<void> {
    const { context: { logger } } = this.#options;
    await this.#registry.subscribe();
    let listed: Awaited<ReturnType<ReplicaRegistry["list"]>>;
    try {
      listed = await this.#registry.list();
    } catch (error) {
      logger.warn(
        `cannot list the running replicas (${describeError(error)}); their tokens come when they find this one`,
      );
      return;
    }
    const joined = (await Promise.all([...listed].map(([name, listing]) => this.#join(name, listing))))
      .filter(Boolean);
    logger.info(`caught up: ${this.#table.size} live token(s) from ${joined.length} replica(s)`);
  }

  /** Joins the replica listed as `name`, once it has proven itself (it shares its tokens meanwhile). */
  async #join(name: string, { service, entry }: { service: Ice.ObjectPrx; entry: Ice.ObjectPrx }): Promise<boolean> {
    const { context: { callTimeout, logger, trust } } = this.#options;
    const sealer = this.#sealer!;
    let peer: Peer | undefined;
    let proven: string | undefined;
    try {
      const proof = await trust.challenge("auth", service, callTimeout);
      if (typeof proof === "string") {
        this.#refusals.note(`ignoring replica ${name} listed on ${REPLICAS_TOPIC}: ${proof}`);
        return false;
      }
      peer = await peerAt(IceFlixAuthReplication.TokenReplicaPrx.uncheckedCast(entry), bindingOf(service), callTimeout);
      // Counted from now: its first parts may come before its welcome.
      const table = this.#receiving(proven = proof.id);
      const hello = sealer.seal([peer.binding], { kind: "join", from: this.id, newcomer: sealer.self });
      const { from, tokens } = sealer.open(await peer.replica.join(this.#self!, hello), "welcome");
      if (from !== proof.id) throw new IceFlixAuthReplication.Unreadable(`welcome from ${from}, not ${proof.id}`);
      this.#setPeer(from, peer);
      const received = await table.until(Number(tokens) || 0);
      if (received < tokens) {
        logger.warn(`replica ${name} sent ${received} of its ${tokens} token(s), then nothing for the call timeout`);
      }
      return true;
    } catch (error) {
      peer?.close();
      if (proven !== undefined) this.#transfers.delete(proven);
      if (error instanceof IceFlixAuthReplication.Unreadable) {
        logger.warn(`replica ${name} refused or sent an unreadable message: ${error.reason}`);
      } else {
        // Gone (its entry outlived it): off the list. A live one subscribes again at its next tick.
        logger.info(`replica ${name} does not answer (${describeError(error)}); removed from the registry`);
        void this.#registry.remove(entry);
      }
      return false;
    }
  }

  /**
   * Counts the tokens that peer `id` shares from now on (its table, and any it issues meanwhile): `until(expected)`
   * resolves to how many came, once `expected` have, or once none has come for the call timeout (each part is a call
   * of its own, bounded by it).
   */
  #receiving(id: string): { until(expected: number): Promise<number> } {
    let received = 0;
    let progress = () => {};
    this.#transfers.set(id, (tokens) => {
      received += tokens;
      progress();
    });
    return {
      until: (expected) =>
        new Promise((resolve) => {
          let timer: ReturnType<typeof setTimeout> | undefined;
          progress = () => {
            clearTimeout(timer);
            if (received < expected) {
              timer = setTimeout(() => finish(), this.#options.context.callTimeout);
              return;
            }
            finish();
          };
          const finish = () => {
            clearTimeout(timer);
            this.#transfers.delete(id);
            resolve(received);
          };
          progress();
        }),
    };
  }

  /**
   * Discovery found (and the secret proved) Authenticator `id` at `authenticator`: it gets this one's whole table,
   * unless it is a peer already (a join, either way, just sent it; one dropped after a failure is not).
   */
  #met(id: string, authenticator: Ice.ObjectPrx): void {
    const peer = {
      replica: replicaOf(authenticator, this.#options.context.callTimeout),
      binding: bindingOf(authenticator),
      // Discovery's own connection to it: discovery closes it when it drops the service.
      close: () => {},
    };
    if (this.#peers.get(id)?.binding === peer.binding) return;
    this.#setPeer(id, peer);
    const messages = this.#sealGrants([peer], this.#table.grants());
    void this.#call(id, peer, async (replica) => {
      for (const sealed of messages) await replica.share(sealed);
    });
  }

  /** Makes `peer` the way to reach peer `id`; the connection of the one it replaces (if another) is closed. */
  #setPeer(id: string, peer: Peer): void {
    const previous = this.#peers.get(id);
    this.#peers.set(id, peer);
    if (previous !== undefined && previous !== peer) previous.close();
  }

  /** `grants` sealed into `share` messages for `peer`. */
  #sealGrants(peers: Peer[], grants: Grant[]): Uint8Array[] {
    return batches(grants).map((batch) =>
      this.#sealer!.seal(peers.map(({ binding }) => binding), { kind: "grants", from: this.id, grants: batch })
    );
  }

  /**
   * Sends to every known peer the messages `seal` makes for them all (in turn, peers in parallel) as `share` calls,
   * or as `revoked` calls; resolves when each peer has taken them or failed.
   */
  async #broadcast(
    seal: (peers: Peer[]) => Uint8Array[],
    operation: "share" | "revoked" = "share",
  ): Promise<void> {
    const peers = [...this.#peers];
    if (peers.length === 0) return;
    const messages = seal(peers.map(([, peer]) => peer));
    await Promise.all(
      peers.map(([id, peer]) =>
        this.#call(id, peer, async (replica) => {
          for (const sealed of messages) await replica[operation](sealed);
        })
      ),
    );
  }

  /**
   * Calls peer `id`; a peer that fails is dropped. One that is unreachable
   * is also forgotten by discovery, which finds it again when it announces
   * itself (and then it gets this replica's whole table). Resolves to the
   * call's result, or undefined if it failed.
   */
  async #call<T>(
    id: string,
    peer: Peer,
    call: (replica: IceFlixAuthReplication.TokenReplicaPrx) => PromiseLike<T>,
  ): Promise<T | undefined> {
    const { discovery, context: { logger } } = this.#options;
    try {
      return await call(peer.replica);
    } catch (error) {
      if (this.#peers.get(id) === peer) {
        this.#peers.delete(id);
        peer.close();
      }
      if (error instanceof IceFlixAuthReplication.Unreadable) {
        logger.warn(`replica ${id} refused a message: ${error.reason}`);
      } else if (isUnreachable(error)) {
        discovery.forget("auth", id);
        logger.warn(`replica ${id} unreachable (${describeError(error)})`);
      } else {
        logger.warn(`replica ${id} failed (${describeError(error)})`);
      }
      return undefined;
    }
  }

  /** Tokens expired here: publish the revocations that are this replica's to publish (README: "One revoke"). */
  async #expire(expired: ExpiredToken[]): Promise<void> {
    const byIssuer = Map.groupBy(expired, ({ issuer }) => issuer);
    const ours = await Promise.all(
      [...byIssuer].map(async ([issuer, tokens]) => (await this.#revokes(issuer, tokens.length)) ? tokens : []),
    );
    const tokens = ours.flat().map(({ token }) => token);
    this.#options.context.logger.debug(`${expired.length} token(s) expired; revoking ${tokens.length}`);
    if (tokens.length === 0) return;
    await this.#broadcast(
      (peers) =>
        batches(tokens).map((batch) =>
          this.#sealer!.seal(peers.map(({ binding }) => binding), { kind: "revoked", from: this.id, tokens: batch })
        ),
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
  /** Registers the newcomer; resolves to how many tokens it is about to be sent. */
  join(newcomer: IceFlixAuthReplication.TokenReplicaPrx, hello: Extract<Message, { kind: "join" }>): Promise<number>;
  /** Tokens that peer `from` shares. */
  share(from: string, grants: Grant[]): void;
  revoked(tokens: string[]): void;
}

/** The `TokenReplica` servant: opens what peers send, seals what it answers. */
class TokenReplicaServant extends IceFlixAuthReplication.TokenReplica {
  readonly #sealer: Sealer;
  /** The id of the replica it serves. */
  readonly #id: string;
  readonly #handlers: ReplicaHandlers;

  constructor(sealer: Sealer, id: string, handlers: ReplicaHandlers) {
    super();
    this.#sealer = sealer;
    this.#id = id;
    this.#handlers = handlers;
  }

  async join(newcomer: IceFlixAuthReplication.TokenReplicaPrx | null, sealed: Uint8Array): Promise<Uint8Array> {
    const hello = this.#sealer.open(sealed, "join");
    // The tokens go where the sealed hello says, not to a proxy swapped in on the way.
    if (!newcomer || bindingOf(newcomer) !== hello.newcomer) {
      throw new IceFlixAuthReplication.Unreadable("the newcomer's proxy is not the one its message names");
    }
    const tokens = await this.#handlers.join(newcomer, hello);
    return this.#sealer.seal([hello.newcomer], { kind: "welcome", from: this.#id, tokens });
  }

  share(grants: Uint8Array): void {
    const { from, grants: shared } = this.#sealer.open(grants, "grants");
    this.#handlers.share(String(from), [shared].flat());
  }

  revoked(tokens: Uint8Array): void {
    this.#handlers.revoked([this.#sealer.open(tokens, "revoked").tokens].flat());
  }
}
