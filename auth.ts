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
// @ts-types="./slice/streams.d.ts"
import { IceFlixStreams } from "./slice/streams.js";
import { Discovery } from "./discovery.ts";
import { TOPICS } from "./events.ts";
import { describeError, type Logger, runService, secondsProperty } from "./service.ts";
import { reloadOnSignal } from "./reload_signal.ts";
import { loadUsersFile } from "./users.ts";
import { LoginGuard } from "./login_guard.ts";
import { connectionAddresses } from "./peer_address.ts";
import { ReplicatedTokens } from "./auth_replication.ts";
import { TOKEN_OWNER_FACET } from "./authorization.ts";

/** The servant: the two operations of `IceFlix.Authenticator`. */
class Authenticator extends IceFlix.Authenticator {
  /** The users file's current content (replaced as a whole on reload) and the check of credentials. */
  readonly guard: LoginGuard;
  readonly #tokens: ReplicatedTokens;
  readonly #logger: Logger;

  constructor(users: ReadonlyMap<string, string>, tokens: ReplicatedTokens, logger: Logger) {
    super();
    this.guard = new LoginGuard(users, logger);
    this.#tokens = tokens;
    this.#logger = logger;
  }

  async refreshAuthorization(user: string, passwordHash: string, current: Ice.Current): Promise<string> {
    // The guard logs refusals, once per burst.
    if (!await this.guard.check(user, passwordHash, connectionAddresses(current.con).remote)) {
      throw new IceFlix.Unauthorized();
    }
    // Every replica accepts it at once (it proves itself): the client may ask any of them.
    const token = this.#tokens.issue(user);
    // Tokens are secrets: the log says whose, never which.
    this.#logger.debug(`new token for ${user} (${this.#tokens.size} live)`);
    return token;
  }

  isAuthorized(authentication: string): boolean {
    return this.#tokens.isLive(authentication);
  }
}

/** Facet `TokenOwner` (slice/streams.ice): whose a live token is, for the streaming service's per-user limit. */
class TokenOwner extends IceFlixStreams.TokenOwner {
  readonly #tokens: ReplicatedTokens;

  constructor(tokens: ReplicatedTokens) {
    super();
    this.#tokens = tokens;
  }

  userOf(authentication: string): string {
    const user = this.#tokens.userOf(authentication);
    if (user === undefined) throw new IceFlix.Unauthorized();
    return user;
  }
}

/**
 * Reads the users file (users.ts's loadUsersFile: a missing one is created
 * empty, SHA-256 entries are converted to stored passwords); a corrupt one
 * throws, naming the file.
 */
async function loadUsers(path: string, logger: Logger): Promise<ReadonlyMap<string, string>> {
  const { users, created, converted } = await loadUsersFile(path);
  if (created) {
    logger.warn(`users file ${path} created empty (mode 0600): nobody can log in until ./add_user adds a user`);
  }
  if (converted > 0) logger.info(`${path}: ${converted} password(s) stored as SHA-256 converted to salted PBKDF2`);
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
    adapter.addFacet(new TokenOwner(tokens), identity, TOKEN_OWNER_FACET);

    // ./add_user sends the reload signal: read the users file again.
    onShutdown(reloadOnSignal(async () => {
      try {
        authenticator.guard.users = await loadUsers(usersFile, logger);
      } catch (error) {
        logger.error(
          `cannot reload: ${describeError(error)}; keeping the ${authenticator.guard.users.size} user(s) loaded`,
        );
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
