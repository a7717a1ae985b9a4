/**
 * The Authenticator (spec 1.2, 2.2): trades a user's credentials for a
 * temporary token, and tells whether a token is still valid.
 *
 * Users come from the users file (`IceFlix.Auth.UsersFile`, see users.ts),
 * reloaded on SIGUSR2 (spec 3.5 names SIGUSR1,
 * but Deno opens its V8 debugger on SIGUSR1: anyone on the machine could then run code in the service). Every token expires `IceFlix.Auth.TokenLifetime`
 * seconds after it was issued; at that moment `revoke(token)` is published on
 * topic `AuthenticationStatus`, so the other services and the clients learn it.
 * The service announces itself through discovery as kind "auth".
 *
 *   ./run_service auth [--Name=value ...]
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
import { createHash, timingSafeEqual } from "node:crypto";
import { Discovery } from "./discovery.ts";
import { describeError, type Logger, runService, secondsProperty } from "./service.ts";
import { readUsersFile, sha256Hex } from "./users.ts";

/** The topic where expired tokens are announced, as `TokenRevocation.revoke(token)` events. */
const REVOCATION_TOPIC = "AuthenticationStatus";

/** Random bytes in a token: 128 bits from the platform's CSPRNG. */
const TOKEN_BYTES = 16;

/**
 * The live tokens and their expiry. Every token lives the same time, so tokens
 * expire in the order they were issued: a FIFO queue plus one timer, armed for
 * the oldest token, is the whole scheduler — O(1) per token however many are
 * live, instead of one timer per token.
 */
class Tokens {
  readonly #lifetime: number;
  readonly #onExpired: (tokens: string[]) => void;
  /** token -> the moment it expires, on the monotonic clock (`performance.now()`, ms). */
  readonly #expiries = new Map<string, number>();
  /** Tokens in issue order, hence in expiry order; those before `#head` have expired. */
  #queue: string[] = [];
  #head = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** @param lifetime milliseconds a token stays valid; `onExpired` gets the tokens that expire, oldest first */
  constructor(lifetime: number, onExpired: (tokens: string[]) => void) {
    this.#lifetime = lifetime;
    this.#onExpired = onExpired;
  }

  /** How many tokens are live. */
  get size(): number {
    return this.#expiries.size;
  }

  /** A new random token, valid from now on for the lifetime. */
  issue(): string {
    const token = Array.from(crypto.getRandomValues(new Uint8Array(TOKEN_BYTES)))
      .map((byte) => byte.toString(16).padStart(2, "0")).join("");
    this.#expiries.set(token, performance.now() + this.#lifetime);
    this.#queue.push(token);
    // A newer token never expires before the ones queued already: only an idle scheduler needs arming.
    if (this.#timer === undefined) this.#arm();
    return token;
  }

  /** Whether `token` was issued here and has not expired (exact, even if the timer runs late). */
  isLive(token: string): boolean {
    const expiry = this.#expiries.get(token);
    return expiry !== undefined && performance.now() < expiry;
  }

  /** Cancels the timer (at shutdown). */
  stop(): void {
    clearTimeout(this.#timer);
  }

  #arm(): void {
    const oldest = this.#expiries.get(this.#queue[this.#head])!;
    this.#timer = setTimeout(() => this.#expireDue(), Math.max(0, oldest - performance.now()));
  }

  /** Expires every token whose time has come, then re-arms the timer for the oldest one left. */
  #expireDue(): void {
    this.#timer = undefined;
    const now = performance.now();
    const expired: string[] = [];
    while (this.#head < this.#queue.length) {
      const token = this.#queue[this.#head];
      if (this.#expiries.get(token)! > now) break;
      this.#expiries.delete(token);
      this.#head++;
      expired.push(token);
    }
    if (expired.length > 0) this.#onExpired(expired);
    // Drop the expired part of the queue once it is the larger half: amortised O(1) per token.
    if (this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    if (this.#head < this.#queue.length) this.#arm();
  }
}

/** The SHA-256 digest of `text`, to compare secrets of any length in constant time. */
function digest(text: string): Uint8Array {
  return createHash("sha256").update(text).digest();
}

/** Compared against when the user is unknown, so that an unknown user takes as long as a wrong password. */
const NO_SUCH_USER = sha256Hex(crypto.randomUUID());

/**
 * Whether `passwordHash` (hex, any case) is the one stored for `user`. The
 * comparison takes the same time wherever the two differ, and whether the
 * user exists or not: timing tells an attacker nothing.
 */
function credentialsMatch(users: ReadonlyMap<string, string>, user: string, passwordHash: string): boolean {
  const stored = users.get(user);
  // Digests of both sides have equal lengths whatever the client sent, as timingSafeEqual requires.
  const same = timingSafeEqual(digest(stored ?? NO_SUCH_USER), digest(passwordHash.toLowerCase()));
  return same && stored !== undefined;
}

/** The servant: the two operations of `IceFlix.Authenticator`. */
class Authenticator extends IceFlix.Authenticator {
  /** The users file's current content; replaced as a whole on reload. */
  users: ReadonlyMap<string, string>;
  readonly #tokens: Tokens;
  readonly #logger: Logger;

  constructor(users: ReadonlyMap<string, string>, tokens: Tokens, logger: Logger) {
    super();
    this.users = users;
    this.#tokens = tokens;
    this.#logger = logger;
  }

  refreshAuthorization(user: string, passwordHash: string): string {
    if (!credentialsMatch(this.users, user, passwordHash)) {
      this.#logger.info(`refused the credentials of user ${JSON.stringify(user)}`);
      throw new IceFlix.Unauthorized();
    }
    const token = this.#tokens.issue();
    // Tokens are secrets: the log says whose, never which.
    this.#logger.debug(`new token for ${user} (${this.#tokens.size} live)`);
    return token;
  }

  isAuthorized(authentication: string): boolean {
    return this.#tokens.isLive(authentication);
  }
}

/**
 * Reads the users file. A missing file means no users (logged);
 * a corrupt one throws, naming the file.
 */
async function loadUsers(path: string, logger: Logger): Promise<ReadonlyMap<string, string>> {
  const users = await readUsersFile(path);
  if (users === undefined) {
    logger.warn(`users file ${path} not found: nobody can log in until ./add_user creates it`);
    return new Map();
  }
  logger.info(`${users.size} user(s) loaded from ${path}`);
  return users;
}

await runService({
  name: "auth",
  adapterName: "AuthAdapter",
  async setup({ adapter, properties, logger, onShutdown }) {
    const usersFile = properties.getPropertyWithDefault("IceFlix.Auth.UsersFile", "users.json");
    const lifetime = secondsProperty(properties, "IceFlix.Auth.TokenLifetime", 30);
    // A corrupt file at start stops the service here: runService reports it and exits 1.
    const users = await loadUsers(usersFile, logger);

    // The servant's identity is fixed, so its proxy is known before the servant is added.
    const identity = Ice.stringToIdentity("Authenticator");
    const discovery = new Discovery(adapter, logger, { kind: "auth", proxy: adapter.createProxy(identity) });
    const tokens = new Tokens(lifetime * 1000, (expired) => {
      logger.debug(`${expired.length} token(s) expired`);
      // The topic's publisher forwards each call to every subscriber; publish() never rejects and logs an outage.
      void discovery.events.publish(REVOCATION_TOPIC, (publisher) => {
        // Batched oneway calls: the revocations that fall due together reach IceStorm as one message, in order,
        // without a reply each. Thousands at once (a burst of logins 30 s ago) would pile up as twoway calls.
        const revocations = IceFlix.TokenRevocationPrx.uncheckedCast(publisher.ice_batchOneway());
        for (const token of expired) revocations.revoke(token);
        return revocations.ice_flushBatchRequests();
      });
    });
    onShutdown(() => tokens.stop());
    const authenticator = new Authenticator(users, tokens, logger);
    const proxy = adapter.add(authenticator, identity);

    // SIGUSR2 (sent by ./add_user) reloads the users file; reloads run one after the other.
    // Not SIGUSR1, the spec's choice: on SIGUSR1 Deno opens its debugger to any local user.
    let reloading = Promise.resolve();
    const reload = async () => {
      try {
        authenticator.users = await loadUsers(usersFile, logger);
      } catch (error) {
        logger.error(`cannot reload: ${describeError(error)}; keeping the ${authenticator.users.size} user(s) loaded`);
      }
    };
    const onSignal = () => reloading = reloading.then(reload);
    Deno.addSignalListener("SIGUSR2", onSignal);
    onShutdown(() => Deno.removeSignalListener("SIGUSR2", onSignal));

    await discovery.start();
    onShutdown(() => discovery.stop());
    logger.info(`tokens live ${lifetime} s; expiries are published on topic ${REVOCATION_TOPIC}`);
    return proxy;
  },
});
