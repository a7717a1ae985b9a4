/**
 * StreamController (spec 2.4.1): one client's stream of one video.
 *
 * The StreamProvider creates a controller per `getStream()` call, bound to one
 * video for good. The controller:
 *
 * - creates its own IceStorm topic (a UUID, `getSyncTopic()`), where it asks
 *   the client for a new token with `StreamerSync.requestAuthentication()`;
 * - `getSDP(token, port)` starts a `gst-launch-1.0` sender towards the
 *   caller's address and that UDP port, and returns the SDP to play it; a new
 *   call moves the stream to the new port;
 * - watches topic `AuthenticationStatus`: when its token is revoked (and an
 *   Authenticator confirms it: anyone can publish there) it asks for a new one
 *   (again every quarter of the grace period, since a request published
 *   while IceStorm restarts reaches nobody) and waits
 *   `IceFlix.Controller.GracePeriod` seconds; a valid
 *   `refreshAuthentication(token)` in time keeps the stream, otherwise the
 *   controller closes; when IceStorm had lost that subscription, a revoke may
 *   have been lost with it, so the token is checked then;
 * - is idle while it sends nothing (before the first `getSDP`, or once the
 *   video has ended) and nobody calls it: after `IceFlix.Controller.IdleTimeout`
 *   seconds of that it closes, so a forgotten controller does not hold its
 *   user's stream, its topic and its subscription for ever;
 * - `stop()`, or the grace period running out, or idleness, or the provider
 *   shutting down, close it: the sender process ends, the servant is removed
 *   (later calls get `Ice.ObjectNotExistException`) and the topic destroyed.
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
import { isTokenValid, requireValidToken, RevocationListener } from "./authorization.ts";
import type { Discovery } from "./discovery.ts";
import { connectionAddresses } from "./peer_address.ts";
import { RtpSender, senderArguments, sessionDescription, type VideoFormat } from "./gstreamer.ts";
import { TOPICS } from "./events.ts";
import { describeError, type ServiceContext } from "./service.ts";

/** The UDP ports a client may ask the stream to be sent to. */
const PORTS = { first: 1024, last: 65535 };

/** A video a controller can stream. */
export interface StreamMedia {
  id: string;
  /** Shown by players as the session name. */
  name: string;
  path: string;
  format: VideoFormat;
}

/** What every controller of a provider shares: the provider's context and discovery. */
export interface StreamContext extends ServiceContext {
  discovery: Discovery;
  /** Seconds a client has to send a new token after its token was revoked. */
  gracePeriod: number;
  /** Seconds a controller that sends nothing and gets no call stays open. */
  idleTimeout: number;
}

/** The servant of one stream. Create it with {@linkcode StreamController.open}. */
export class StreamController extends IceFlix.StreamController {
  /** The name of the stream's own topic, for `StreamerSync` events to the client. */
  readonly topicName = crypto.randomUUID();
  /** Resolves once the controller is closed and everything it held is released, IceStorm included. */
  readonly released: Promise<void>;

  readonly #media: StreamMedia;
  readonly #context: StreamContext;
  /** The Ice connection of the `getStream` call that created this stream (null: from this very process). */
  readonly #origin: Ice.Connection | null;
  readonly #onClosed: () => void;
  readonly #identity: Ice.Identity = Ice.stringToIdentity(crypto.randomUUID());
  readonly #description: string;
  readonly #sessionId = crypto.getRandomValues(new Uint32Array(1))[0];
  readonly #release = Promise.withResolvers<void>();
  #revocationListener: Ice.ObjectPrx | undefined;
  /** The token whose revocation ends the stream (unless renewed): the last valid one the client presented. */
  #token: string;
  #sender: RtpSender | undefined;
  #sdpVersion = 0;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  /** Armed during a grace period: publishes the request for a new token again. */
  #requestTimer: ReturnType<typeof setTimeout> | undefined;
  /** Armed while no sender runs: closes the controller when it has been idle for the idle timeout. */
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** Sender changes (getSDP, close) run one after the other, in call order. */
  #senderChanges: Promise<unknown> = Promise.resolve();

  private constructor(
    media: StreamMedia,
    token: string,
    origin: Ice.Connection | null,
    context: StreamContext,
    onClosed: () => void,
  ) {
    super();
    this.#media = media;
    this.#origin = origin;
    this.#token = token;
    this.#context = context;
    this.#onClosed = onClosed;
    this.#description = `stream ${this.#identity.name.slice(0, 8)} of "${media.name}"`;
    this.released = this.#release.promise;
  }

  /**
   * Creates a controller for `media`, authorised by `token` (already checked):
   * adds its servant, creates its topic, subscribes it to revocations.
   *
   * @param origin the connection `getStream` came on: the only one `getSDP` is taken from
   * @param onClosed called once the controller is closed and its sender gone
   */
  static async open(
    media: StreamMedia,
    token: string,
    origin: Ice.Connection | null,
    context: StreamContext,
    onClosed: () => void,
  ): Promise<{ controller: StreamController; proxy: IceFlix.StreamControllerPrx }> {
    const controller = new StreamController(media, token, origin, context, onClosed);
    const { adapter, events, logger } = context;
    // A UUID identity: the proxy is the client's handle on this stream, and nobody can guess another's.
    const proxy = IceFlix.StreamControllerPrx.uncheckedCast(adapter.add(controller, controller.#identity));
    // The revocation listener is an IceStorm subscriber: IceStorm calls its revoke() for every expired token.
    controller.#revocationListener = adapter.addWithUUID(
      new RevocationListener((revoked) => controller.#onRevoked(revoked)),
    );
    const subscribed = events.subscribe(
      TOPICS.authenticationStatus,
      controller.#revocationListener,
      () => controller.#onRevocationsMissed(),
    );
    try {
      // Created now, so the client can subscribe to it before anything is published there.
      await events.topic(controller.topicName);
    } catch (error) {
      logger.warn(
        `${controller.#description}: cannot create its topic yet (${describeError(error)}); it is created when used`,
      );
    }
    await subscribed;
    controller.touch();
    logger.info(`${controller.#description}: opened`);
    return { controller, proxy };
  }

  async getSDP(authentication: string, port: number, current: Ice.Current): Promise<string> {
    this.touch();
    // Anyone holding the proxy could otherwise point the video elsewhere: through IceStorm (subscribe the
    // controller to a topic, publish getSDP there) at IceStorm's host, or from any other host at its own.
    if ((current.con ?? null) !== this.#origin) {
      this.#context.logger.warn(
        `${this.#description}: getSDP refused from ${
          connectionAddresses(current.con).remote
        }: not the connection that ` +
          "created the stream",
      );
      throw new IceFlix.Unauthorized();
    }
    await this.#authorize(authentication);
    if (!Number.isInteger(port) || port < PORTS.first || port > PORTS.last) {
      // The Slice leaves getSDP only Unauthorized: a refused port is a run-time error with the reason as its text.
      throw new Ice.UnknownException(`UDP port ${port} refused: use a port from ${PORTS.first} to ${PORTS.last}`);
    }
    const { local, remote } = connectionAddresses(current.con);
    const destination = { host: remote, port };
    return await this.#changeSender(async () => {
      this.#ensureOpen();
      await this.#sender?.stop();
      this.#sender = undefined;
      const description = `${this.#description} to ${remote}:${port}`;
      const sender = new RtpSender(
        this.#media.path,
        senderArguments(this.#media.format, destination),
        description,
        this.#context.logger,
        () => {
          if (this.#sender !== sender) return;
          // The video has ended (or the sender failed): from now on the controller is idle.
          this.#sender = undefined;
          this.touch();
        },
      );
      this.#sender = sender;
      this.touch();
      const mode = this.#media.format.copy ? "copy" : "re-encode";
      this.#context.logger.info(`${description}: sending (${mode}, gst-launch-1.0 pid ${sender.pid})`);
      return sessionDescription({
        sessionId: this.#sessionId,
        version: ++this.#sdpVersion,
        origin: local,
        title: this.#media.name,
        destination,
      });
    });
  }

  getSyncTopic(): string {
    this.touch();
    return this.topicName;
  }

  async refreshAuthentication(authentication: string): Promise<void> {
    this.touch();
    await this.#authorize(authentication);
  }

  /**
   * Notes activity (a call, or a transfer of the stream over HTTP): the idle
   * timeout starts again, unless a sender runs (then there is none).
   */
  touch(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    if (this.#closed || this.#sender) return;
    const { idleTimeout } = this.#context;
    this.#idleTimer = setTimeout(
      () => this.close(`idle: no video sent and no call for ${idleTimeout} s`),
      idleTimeout * 1000,
    );
  }

  async stop(): Promise<void> {
    await this.close("stopped by the client");
  }

  /**
   * Closes the controller for good: removes the servant, ends the sender and
   * waits until its process is gone. The topic and the revocation
   * subscription are then released in the background (see `released`), so a
   * slow IceStorm does not delay the caller.
   */
  async close(reason: string): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#graceTimer);
    clearTimeout(this.#requestTimer);
    clearTimeout(this.#idleTimer);
    const { adapter, events, logger } = this.#context;
    // From now on a call to this controller gets Ice.ObjectNotExistException.
    adapter.remove(this.#identity);
    await this.#changeSender(() => this.#sender?.stop());
    this.#onClosed();
    logger.info(`${this.#description}: closed (${reason})`);
    const listener = this.#revocationListener!;
    Promise.allSettled([
      events.unsubscribe(TOPICS.authenticationStatus, listener).then(() => adapter.remove(listener.ice_getIdentity())),
      events.destroyTopic(this.topicName),
    ]).then(() => this.#release.resolve());
  }

  /** Checks `token`; a valid one becomes the watched token and ends a grace period in progress. */
  async #authorize(token: string): Promise<void> {
    await requireValidToken(this.#context.discovery, this.#context.logger, token, this.#description);
    this.#ensureOpen();
    this.#token = token;
    if (this.#graceTimer !== undefined) {
      clearTimeout(this.#graceTimer);
      clearTimeout(this.#requestTimer);
      this.#graceTimer = undefined;
      this.#context.logger.info(`${this.#description}: authorised again; the stream goes on`);
    }
  }

  /**
   * The token was revoked: ask the client for a new one and give it the
   * grace period. Anyone can publish on IceStorm, so the revocation is
   * believed only if an Authenticator no longer accepts the token (or none
   * answers, and then nobody can vouch for it either).
   */
  async #onRevoked(token: string): Promise<void> {
    if (!this.#concerns(token)) return;
    const { discovery, logger } = this.#context;
    try {
      if (await isTokenValid(discovery, token)) {
        logger.warn(`${this.#description}: ignoring a revocation of its token that no Authenticator confirms`);
        return;
      }
    } catch (error) {
      // Without an Authenticator the client could not renew its token either: the revocation stands.
      logger.warn(
        `${this.#description}: no Authenticator to confirm a revocation (${describeError(error)}); it stands`,
      );
    }
    this.#startGracePeriod(token, "its token was revoked");
  }

  /**
   * IceStorm had lost the revocation subscription (a restart without its
   * database), so a revocation of the token may have been missed: the token
   * is checked, and the stream goes on only if an Authenticator still accepts
   * it (or none answers: then nothing says it was revoked).
   */
  async #onRevocationsMissed(): Promise<void> {
    const token = this.#token;
    if (!this.#concerns(token)) return;
    try {
      if (await isTokenValid(this.#context.discovery, token)) return;
    } catch {
      return;
    }
    this.#startGracePeriod(token, "its token expired while IceStorm had lost the revocations");
  }

  /** Asks the client for a new token, and closes the stream unless one comes within the grace period. */
  #startGracePeriod(token: string, why: string): void {
    const { gracePeriod, logger } = this.#context;
    // The token may have been renewed, or the stream closed, while the Authenticator answered.
    if (!this.#concerns(token)) return;
    logger.info(`${this.#description}: ${why}; asking the client for a new one (${gracePeriod} s)`);
    this.#graceTimer = setTimeout(
      () => this.close(`no new token within ${gracePeriod} s of the revocation`),
      gracePeriod * 1000,
    );
    this.#requestToken();
  }

  /**
   * Publishes `requestAuthentication` on the stream's topic, and again every
   * quarter of the grace period until a valid token comes: a request published
   * while IceStorm restarts, or before the client has subscribed again after
   * a restart, reaches nobody, and the stream would end for it.
   */
  #requestToken(): void {
    const { gracePeriod, events } = this.#context;
    events.publish(
      this.topicName,
      (publisher) => IceFlix.StreamerSyncPrx.uncheckedCast(publisher).requestAuthentication(),
    );
    this.#requestTimer = setTimeout(() => this.#requestToken(), gracePeriod * 250);
  }

  /** Whether a revocation of `token` ends this stream unless renewed: the watched token, no grace period running. */
  #concerns(token: string): boolean {
    return !this.#closed && token === this.#token && this.#graceTimer === undefined;
  }

  /** A call that raced with close() ends as calls after it do (Ice fills in the operation). */
  #ensureOpen(): void {
    if (this.#closed) throw new Ice.ObjectNotExistException(this.#identity);
  }

  #changeSender<T>(change: () => T | Promise<T>): Promise<T> {
    const changed = this.#senderChanges.then(change);
    this.#senderChanges = changed.catch(() => {});
    return changed;
  }
}
