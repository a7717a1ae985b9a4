/**
 * The client's session (spec 3.1): logging in with the SHA-256 of the
 * password, renewing the token when topic AuthenticationStatus says it
 * expired, and by itself when the platform comes back or IceStorm cannot
 * tell it (a restarted Authenticator never revokes the old token).
 *
 * @module
 */
import type { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
// @ts-types="./slice/streams.d.ts"
import { IceFlixStreams } from "./slice/streams.js";
import { RevocationListener } from "./authorization.ts";
import { bounded, CALL_TIMEOUT, cancellable, type MainConnection } from "./client_connection.ts";
import { describeFailure, explain, UserError } from "./client_text.ts";
import { DEFAULT_TOPIC_MANAGER, type EventChannel, TOPICS } from "./events.ts";
import { describeError, type Logger } from "./log.ts";
import { sha256Hex } from "./users.ts";

/** How long IceStorm may take to answer the client's check (ms). */
const ICESTORM_CHECK_TIMEOUT = 2000;

/** A logged-in user. The password itself is never kept: only its hash, to renew the token. */
interface Credentials {
  user: string;
  passwordHash: string;
  /** The current token; undefined while it is being renewed. */
  token: string | undefined;
  renewal: Promise<string> | undefined;
}

/** What the session tells the rest of the client. */
export interface SessionEvents {
  print(text: string): void;
  /** The credentials were refused at a renewal: the session has ended (stop what plays). */
  ended(): Promise<void>;
}

/** The session, if any, and its token. */
export class ClientSession {
  readonly #connection: MainConnection;
  readonly #events: EventChannel;
  readonly #communicator: Ice.Communicator;
  readonly #logger: Logger;
  readonly #notify: SessionEvents;
  readonly #revocations: Ice.ObjectPrx;
  #credentials: Credentials | undefined;
  /** Whether IceStorm answered the last check: only then do revocations reach us. */
  #iceStormAnswers = true;

  constructor(
    connection: MainConnection,
    events: EventChannel,
    adapter: Ice.ObjectAdapter,
    logger: Logger,
    notify: SessionEvents,
  ) {
    this.#connection = connection;
    this.#events = events;
    this.#communicator = adapter.getCommunicator();
    this.#logger = logger;
    this.#notify = notify;
    this.#revocations = adapter.addWithUUID(new RevocationListener((token) => this.#onRevoke(token)));
  }

  /** Who is logged in. */
  get user(): string | undefined {
    return this.#credentials?.user;
  }

  /** Whether token expiries can reach the client (IceStorm answered its last check). */
  get iceStormAnswers(): boolean {
    return this.#iceStormAnswers;
  }

  /** Logs `user` in; another user's session ends first (`endPrevious`). */
  async login(user: string, password: string, endPrevious: () => Promise<void>, signal?: AbortSignal): Promise<void> {
    // Only the SHA-256 of the password leaves the client (spec 3.1); the password itself is not kept.
    const passwordHash = await sha256Hex(password);
    let token: string;
    try {
      token = await this.#connection.use("auth", (auth) => auth.refreshAuthorization(user, passwordHash), signal);
    } catch (error) {
      if (error instanceof IceFlix.Unauthorized) throw new UserError("wrong user name or password");
      throw error;
    }
    if (this.#credentials) await endPrevious();
    this.#credentials = { user, passwordHash, token, renewal: undefined };
    // IceStorm calls our listener for every revoked token; ours is renewed as it expires.
    await this.#events.subscribe(TOPICS.authenticationStatus, this.#revocations);
    this.#notify.print(`logged in as ${user}`);
    this.#iceStormAnswers = true;
    this.checkIceStorm();
  }

  /** Ends the session: stops renewing the token, forgets the credentials. */
  async logout(): Promise<void> {
    const credentials = this.#credentials;
    if (!credentials) throw new UserError("not logged in");
    this.#credentials = undefined;
    await this.#events.unsubscribe(TOPICS.authenticationStatus, this.#revocations);
    this.#notify.print(`logged out ${credentials.user}`);
  }

  #onRevoke(token: string): void {
    const credentials = this.#credentials;
    if (!credentials || credentials.token !== token) return;
    this.#renewToken(credentials).then(
      () => this.#logger.info("session token expired; renewed"),
      (error) => this.#notify.print(`the session token expired and could not be renewed: ${explain(error)}`),
    );
  }

  /**
   * Renews the token now (Main came back: the Authenticator may be a new
   * one that never heard of our token, and would never revoke it).
   */
  renewNow(why: string): void {
    const credentials = this.#credentials;
    if (!credentials) return;
    this.#renewToken(credentials).then(
      () => this.#notify.print(`session of ${credentials.user} renewed (${why})`),
      (error) => this.#notify.print(`the session could not be renewed (${why}): ${explain(error)}`),
    );
  }

  /** Gets a new token with the stored hash; one renewal at a time. Ends the session if the credentials are refused. */
  #renewToken(credentials: Credentials): Promise<string> {
    credentials.token = undefined;
    credentials.renewal ??= this.#connection
      .use("auth", (auth) => auth.refreshAuthorization(credentials.user, credentials.passwordHash))
      .then((token) => credentials.token = token)
      .catch(async (error) => {
        if (error instanceof IceFlix.Unauthorized && this.#credentials === credentials) {
          this.#credentials = undefined;
          await this.#events.unsubscribe(TOPICS.authenticationStatus, this.#revocations);
          await this.#notify.ended();
          throw new UserError(`the credentials of ${credentials.user} are no longer accepted; logged out`);
        }
        throw error;
      })
      .finally(() => credentials.renewal = undefined);
    return credentials.renewal;
  }

  /**
   * Runs `call` with the session's token. A refused token may have expired
   * without our hearing of it (an event lost, or not arrived yet): then the
   * token is renewed and the call made once more. A stream limit is no token
   * problem: a new token would be refused the same.
   */
  async withToken<T>(call: (token: string) => PromiseLike<T>, signal?: AbortSignal): Promise<T> {
    const credentials = this.#credentials;
    if (!credentials) throw new UserError("not logged in (use login)");
    try {
      const token = credentials.token ?? await (credentials.renewal ?? this.#renewToken(credentials));
      return await cancellable(call(token), signal);
    } catch (error) {
      if (!(error instanceof IceFlix.Unauthorized) || error instanceof IceFlixStreams.StreamLimitReached) throw error;
      return await cancellable(call(await this.#renewToken(credentials)), signal);
    }
  }

  /** The IceStorm the client subscribes at (`IceStorm.TopicManager.Proxy`). */
  get iceStormProxy(): string {
    return this.#communicator.getProperties()
      .getPropertyWithDefault("IceStorm.TopicManager.Proxy", DEFAULT_TOPIC_MANAGER);
  }

  /**
   * While logged in, checks that IceStorm answers (every few seconds). When
   * it does not, revocations cannot arrive: the user is told where the
   * client looks for IceStorm and how to change it, and the token is checked
   * with the Authenticator instead, and renewed when it is no longer valid.
   */
  async checkIceStorm(): Promise<void> {
    const credentials = this.#credentials;
    if (!credentials) return;
    let answers = true;
    let failure = "";
    try {
      const iceStorm = this.#communicator.stringToProxy(this.iceStormProxy);
      await bounded(iceStorm.ice_invocationTimeout(ICESTORM_CHECK_TIMEOUT).ice_ping(), ICESTORM_CHECK_TIMEOUT);
    } catch (error) {
      answers = false;
      failure = describeFailure(error);
    }
    if (answers !== this.#iceStormAnswers) {
      this.#iceStormAnswers = answers;
      this.#notify.print(
        answers
          ? `IceStorm at ${this.iceStormProxy} answers again: token expiries arrive as events`
          : `IceStorm at ${this.iceStormProxy} does not answer (${failure}): token expiries cannot arrive, so ` +
            "the client checks its token itself.\nStart IceStorm, or give its proxy: " +
            "./run_client --IceStorm.TopicManager.Proxy=...",
      );
    }
    if (answers || credentials.token === undefined || this.#connection.state !== "connected") return;
    try {
      const token = credentials.token;
      const valid = await bounded(this.#connection.use("auth", (auth) => auth.isAuthorized(token)), CALL_TIMEOUT);
      if (!valid && this.#credentials === credentials && credentials.token === token) {
        await this.#renewToken(credentials);
        this.#logger.info("session token expired; renewed");
      }
    } catch (error) {
      this.#logger.debug(`cannot check the token: ${describeError(error)}`);
    }
  }
}
