/**
 * The Authenticator (spec 1.2, 2.2): trades a user's credentials for a
 * temporary token, and tells whether a token is still valid.
 *
 * Users come from the users file (`IceFlix.Auth.UsersFile`, see users.ts),
 * reloaded on SIGUSR2 (reload_signal.ts says why not the spec's SIGUSR1).
 * Every token expires `IceFlix.Auth.TokenLifetime` seconds after it was
 * issued; at that moment `revoke(token)` is published on topic
 * `AuthenticationStatus`, so the other services and the clients learn it.
 * The service announces itself through discovery as kind "auth".
 *
 * Several Authenticators may run: they share their tokens (auth_replication.ts,
 * sealed under the installation secret), so a token from any one is accepted
 * by every one, and each expiry is published once.
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
import { TOPICS } from "./events.ts";
import { describeError, type Logger, runService, secondsProperty } from "./service.ts";
import { reloadOnSignal } from "./reload_signal.ts";
import { readUsersFile, sha256Hex } from "./users.ts";
import { ReplicatedTokens } from "./auth_replication.ts";

/**
 * The SHA-256 digest of `text`, to compare secrets of any length in constant time. node:crypto rather than Web
 * Crypto: it answers at once, where Web Crypto's promise costs every login a trip through a thread pool.
 */
function digest(text: string): Uint8Array {
  return createHash("sha256").update(text).digest();
}

/** Compared against when the user is unknown, so that an unknown user takes as long as a wrong password. */
const NO_SUCH_USER = await sha256Hex(crypto.randomUUID());

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
  readonly #tokens: ReplicatedTokens;
  readonly #logger: Logger;

  constructor(users: ReadonlyMap<string, string>, tokens: ReplicatedTokens, logger: Logger) {
    super();
    this.users = users;
    this.#tokens = tokens;
    this.#logger = logger;
  }

  async refreshAuthorization(user: string, passwordHash: string): Promise<string> {
    if (!credentialsMatch(this.users, user, passwordHash)) {
      this.#logger.info(`refused the credentials of user ${JSON.stringify(user)}`);
      throw new IceFlix.Unauthorized();
    }
    // Returned once every live replica has it: the client may ask any of them.
    const token = await this.#tokens.issue();
    // Tokens are secrets: the log says whose, never which.
    this.#logger.debug(`new token for ${user} (${this.#tokens.size} live)`);
    return token;
  }

  isAuthorized(authentication: string): Promise<boolean> {
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
  async setup(context) {
    const { adapter, properties, events, logger, onShutdown } = context;
    const usersFile = properties.getPropertyWithDefault("IceFlix.Auth.UsersFile", "users.json");
    const lifetime = secondsProperty(properties, "IceFlix.Auth.TokenLifetime", 30);
    // A corrupt file at start stops the service here: runService reports it and exits 1.
    const users = await loadUsers(usersFile, logger);

    // The servant's identity is fixed, so its proxy is known before the servant is added.
    const identity = Ice.stringToIdentity("Authenticator");
    const self = adapter.createProxy(identity);
    const discovery = new Discovery(context, { kind: "auth", proxy: self });
    // The tokens, shared with the other Authenticators (auth_replication.ts): the replica that must publish a
    // token's expiry (one replica per token) does it here.
    const tokens = new ReplicatedTokens({
      context,
      authenticator: self,
      discovery,
      lifetime: lifetime * 1000,
      // The topic's publisher forwards each call to every subscriber; publish() never rejects and logs an outage.
      revoke: (expired) =>
        events.publish(TOPICS.authenticationStatus, (publisher) => {
          // Batched oneway calls: the revocations that fall due together reach IceStorm as one message, in order,
          // without a reply each. Thousands at once (a burst of logins 30 s ago) would pile up as twoway calls.
          const revocations = IceFlix.TokenRevocationPrx.uncheckedCast(publisher.ice_batchOneway());
          for (const token of expired) revocations.revoke(token);
          return revocations.ice_flushBatchRequests();
        }),
    });
    onShutdown(() => tokens.stop());
    const authenticator = new Authenticator(users, tokens, logger);
    const proxy = adapter.add(authenticator, identity);

    // ./add_user sends the reload signal: read the users file again.
    onShutdown(reloadOnSignal(async () => {
      try {
        authenticator.users = await loadUsers(usersFile, logger);
      } catch (error) {
        logger.error(`cannot reload: ${describeError(error)}; keeping the ${authenticator.users.size} user(s) loaded`);
      }
    }));

    // Before discovery starts: the peers it finds get this replica's tokens.
    await tokens.start();
    await discovery.start();
    onShutdown(() => discovery.stop());
    logger.info(
      `replica ${tokens.id}: tokens live ${lifetime} s; expiries are published on topic ${TOPICS.authenticationStatus}`,
    );
    return proxy;
  },
});
