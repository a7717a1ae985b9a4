/**
 * The IceFlix web client: the page's logic (web/index.html). It speaks Ice
 * over WebSocket to Glacier2, which forwards its calls to Main, the
 * Authenticator, the catalog and the streaming services, and IceStorm's
 * callbacks (revocations, requests for a new token) back over the same
 * connection. Video plays in a `<video>` element over HTTP, from the URL the
 * StreamProvider's `HttpStreaming` facet hands out.
 *
 * Bundled by ./setup into web/app.js (`deno bundle`, with "ice" left to the
 * page's import map: the `ice` package's browser build, loaded by index.html).
 *
 * @module
 */
import { Glacier2, Ice, IceStorm } from "ice";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
// @ts-types="../slice/web.d.ts"
import { IceFlixWeb } from "../slice/web.js";
// @ts-types="../slice/streams.d.ts"
import { IceFlixStreams } from "../slice/streams.js";
import { refusalReason } from "../service_refusal.ts";
import { sha256 } from "./sha256.ts";

/** What web.ts tells the page (GET config.json). */
interface PageConfig {
  router: string;
  main: string;
  topicManager: string;
  /** The spec's topic of token revocations. */
  revocationTopic: string;
  /** Ice.MessageSizeMax (KB), as the services have it: large answers (searches) fit. */
  messageSizeMax: string;
  /** Seconds between renewals of the page's IceStorm subscriptions (the services' announce interval). */
  resubscribeInterval: number;
}

/** A logged-in user: the token, and the password's hash to renew it when it expires. */
interface Session {
  user: string;
  passwordHash: string;
  token: string;
  /** The renewal under way, if any: callers wait for it instead of starting another. */
  renewal?: Promise<string>;
}

/** What plays: the spec's controller of the stream, and its sync-topic subscription. */
interface Playback {
  tile: IceFlix.Media;
  controller: IceFlix.StreamControllerPrx;
  url: string;
  unsubscribe: () => Promise<void>;
}

/** A message for the person in front of the page (not a bug). */
class UserError extends Error {}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const video = $<HTMLVideoElement>("video");

/** One sentence for what went wrong. */
function explain(error: unknown): string {
  if (error instanceof UserError) return error.message;
  if (error instanceof IceFlixStreams.StreamLimitReached) return error.reason;
  if (error instanceof IceFlix.Unauthorized) return "not authorized: the services refused the session (log in again)";
  if (error instanceof IceFlix.TemporaryUnavailable) return "the service is not available now; try again in a moment";
  if (error instanceof IceFlix.WrongMediaId) return `the catalog has no title with id ${error.id}`;
  if (error instanceof Ice.ObjectNotExistException) {
    return "that object is gone (a stream that ended, or a service restarted)";
  }
  // A service's refusal in words, which the Slice has no exception for (a catalog limit, a full disk).
  const refusal = refusalReason(error);
  if (refusal !== undefined) return `refused: ${refusal}`;
  if (error instanceof Ice.Exception) {
    const { reason, unknown } = error as { reason?: string; unknown?: string };
    return `${error.ice_id()}${reason || unknown ? `: ${(reason || unknown)!.split("\n")[0]}` : ""}`;
  }
  return error instanceof Error ? error.message : String(error);
}

function say(text: string, kind: "info" | "error" = "info"): void {
  const message = $("message");
  message.textContent = text;
  message.className = kind;
}

/** `bytes` in lowercase hex. */
function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** The lowercase hex SHA-256 of `text`: the only form of the password that leaves the page. */
async function sha256Hex(text: string): Promise<string> {
  const data = new TextEncoder().encode(text);
  // Web Crypto exists only in secure contexts: not for a page over plain HTTP from another host.
  const digest = crypto.subtle ? new Uint8Array(await crypto.subtle.digest("SHA-256", data)) : sha256(data);
  return hex(digest);
}

/** Comma-separated words: tags may hold spaces. */
function tagList(text: string): string[] {
  return text.split(",").map((tag) => tag.trim()).filter((tag) => tag !== "");
}

function clock(seconds: number): string {
  const whole = Math.floor(seconds);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

/** A servant the page registers with the router's adapter: IceStorm calls it through Glacier2. */
class RevocationListener extends IceFlix.TokenRevocation {
  constructor(readonly onRevoke: (token: string) => void) {
    super();
  }

  revoke(authentication: string): void {
    this.onRevoke(authentication);
  }
}

class SyncListener extends IceFlix.StreamerSync {
  constructor(readonly onRequest: () => void) {
    super();
  }

  requestAuthentication(): void {
    this.onRequest();
  }
}

/** The page's state and what each button does with it. */
class WebClient {
  readonly #config: PageConfig;
  #communicator?: Ice.Communicator;
  #adapter?: Ice.ObjectAdapter;
  #category = "";
  #main?: IceFlix.MainPrx;
  #session?: Session;
  #revocations?: { proxy: Ice.ObjectPrx; unsubscribe: () => Promise<void> };
  #results: IceFlix.Media[] = [];
  #selection?: IceFlix.Media;
  #playback?: Playback;

  constructor(config: PageConfig) {
    this.#config = config;
    setInterval(() => this.#tick(), 1000);
  }

  /** connected · user · selection · playing, in one line, as the text client shows it. */
  stateLine(): string {
    const playback = this.#playback;
    let playing = "not playing";
    if (playback) {
      const title = playback.tile.id === this.#selection?.id ? "" : `«${playback.tile.info.name}» `;
      playing = `playing ${title}${clock(video.currentTime)}`;
    }
    return [
      this.#main ? "connected" : "not connected",
      this.#session ? `user ${this.#session.user}` : "not logged in",
      this.#selection ? `selected «${this.#selection.info.name}»` : "nothing selected",
      playing,
    ].join(" · ");
  }

  render(): void {
    $("state").textContent = this.stateLine();
    const list = $("results");
    list.replaceChildren(...this.#results.map((tile, index) => {
      const item = document.createElement("li");
      item.className = tile.id === this.#selection?.id ? "selected" : "";
      item.dataset.index = String(index);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = tile.info.name;
      const tags = document.createElement("span");
      tags.className = "tags";
      tags.textContent = tile.info.tags.length > 0 ? tile.info.tags.join(", ") : "no tags";
      item.append(name, " ", tags);
      item.addEventListener("click", () => this.select(index));
      return item;
    }));
  }

  // --- Connection: a Glacier2 session, and an adapter whose callbacks come over the same connection ---

  async connect(): Promise<void> {
    await this.disconnect();
    const initData = new Ice.InitializationData();
    initData.properties = Ice.createProperties();
    initData.properties.setProperty("Ice.Default.Router", this.#config.router);
    initData.properties.setProperty("Ice.MessageSizeMax", this.#config.messageSizeMax);
    const communicator = Ice.initialize(initData);
    try {
      const router = Glacier2.RouterPrx.uncheckedCast(communicator.getDefaultRouter()!);
      // A null permissions verifier: any name opens a session; IceFlix tokens decide what it may do.
      await router.createSession("web", "");
      const [timeout, category, connection] = await Promise.all([
        router.getACMTimeout(),
        router.getCategoryForClient(),
        router.ice_getCachedConnection(),
      ]);
      // Heartbeats keep the session while the page is idle; a lost connection is said at once.
      if (timeout > 0) connection!.setACM(timeout, Ice.ACMClose.CloseOff, Ice.ACMHeartbeat.HeartbeatAlways);
      connection!.setCloseCallback(() => {
        if (this.#communicator !== communicator) return;
        this.#forget();
        say("the connection to the gateway was lost: connect again", "error");
        this.render();
      });
      this.#adapter = await communicator.createObjectAdapterWithRouter("", router);
      await this.#adapter.activate();
      this.#category = category;
      this.#communicator = communicator;
      const main = await IceFlix.MainPrx.checkedCast(communicator.stringToProxy(this.#config.main));
      if (!main) throw new UserError(`${this.#config.main} is not an IceFlix Main`);
      this.#main = main;
    } catch (error) {
      this.#forget();
      await communicator.destroy().catch(() => {});
      throw error;
    }
    say("connected");
  }

  async disconnect(): Promise<void> {
    const communicator = this.#communicator;
    if (!communicator) return;
    await this.logout().catch(() => {});
    this.#forget();
    await communicator.destroy().catch(() => {});
  }

  #forget(): void {
    this.#stopVideo();
    this.#playback = undefined;
    this.#session = undefined;
    this.#revocations = undefined;
    this.#main = undefined;
    this.#communicator = undefined;
  }

  #requireMain(): IceFlix.MainPrx {
    if (!this.#main) throw new UserError("not connected: press Connect first");
    return this.#main;
  }

  #requireSession(what: string): Session {
    if (!this.#session) throw new UserError(`log in first to ${what}`);
    return this.#session;
  }

  #requireSelection(what: string): IceFlix.Media {
    if (!this.#selection) throw new UserError(`select a title first to ${what} (search, then click a result)`);
    return this.#selection;
  }

  /**
   * A callback object of the page, reachable through the router (its identity is in the session's category), named
   * at random with `getRandomValues`: `crypto.randomUUID`, like Web Crypto, is missing from a page over plain HTTP
   * from another host.
   */
  #addCallback(servant: Ice.Object): Ice.ObjectPrx {
    return this.#adapter!.add(
      servant,
      new Ice.Identity(hex(crypto.getRandomValues(new Uint8Array(16))), this.#category),
    );
  }

  /**
   * Subscribes `subscriber` to IceStorm topic `name` (created if needed) and keeps it subscribed: the subscription
   * is made again every `resubscribeInterval` (IceStorm answers AlreadySubscribed while it has it), so it comes back
   * when IceStorm restarts without its database or drops the page as unreachable. Returns how to unsubscribe.
   */
  async #subscribe(name: string, subscriber: Ice.ObjectPrx): Promise<() => Promise<void>> {
    const manager = IceStorm.TopicManagerPrx.uncheckedCast(
      this.#communicator!.stringToProxy(this.#config.topicManager),
    );
    let stopped = false;
    const subscribe = async () => {
      let found: IceStorm.TopicPrx | null;
      try {
        found = await manager.retrieve(name);
      } catch (error) {
        if (!(error instanceof IceStorm.NoSuchTopic)) throw error;
        found = await manager.create(name).catch(() => manager.retrieve(name));
      }
      // A replicated IceStorm (IceGrid) names its topics by its replica group (`topic.X @ ...TopicManagers`), which
      // Glacier2's address filter refuses, ending the session: topics live on the TopicManager's own adapter, so
      // they are reached at its endpoints (web.ts resolved those).
      if (found!.ice_getEndpoints().length === 0) {
        found = found!.ice_adapterId("").ice_endpoints(manager.ice_getEndpoints());
      }
      try {
        if (!stopped) await found!.subscribeAndGetPublisher(new Map(), subscriber);
      } catch (error) {
        if (!(error instanceof IceStorm.AlreadySubscribed)) throw error;
      }
      return found!;
    };
    let topic = await subscribe();
    // A failed renewal (IceStorm down) is tried again at the next one.
    const renewal = setInterval(
      () => subscribe().then((renewed) => topic = renewed, () => {}),
      this.#config.resubscribeInterval * 1000,
    );
    return async () => {
      stopped = true;
      clearInterval(renewal);
      await topic.unsubscribe(subscriber).catch(() => {});
      this.#adapter?.remove(subscriber.ice_getIdentity());
    };
  }

  // --- Session ---

  async login(user: string, password: string): Promise<void> {
    const main = this.#requireMain();
    if (user === "") throw new UserError("type a user name");
    const passwordHash = await sha256Hex(password);
    let token: string;
    try {
      token = await (await main.getAuthenticator())!.refreshAuthorization(user, passwordHash);
    } catch (error) {
      if (error instanceof IceFlix.Unauthorized) throw new UserError("wrong user name or password");
      throw error;
    }
    await this.logout();
    this.#session = { user, passwordHash, token };
    if (!this.#revocations) {
      const proxy = this.#addCallback(new RevocationListener((revoked) => this.#onRevoke(revoked)));
      this.#revocations = { proxy, unsubscribe: await this.#subscribe(this.#config.revocationTopic, proxy) };
    }
    say(`logged in as ${user}`);
  }

  async logout(): Promise<void> {
    if (this.#playback) await this.stop();
    this.#session = undefined;
    const revocations = this.#revocations;
    this.#revocations = undefined;
    await revocations?.unsubscribe();
  }

  #onRevoke(token: string): void {
    const session = this.#session;
    if (!session || session.token !== token) return;
    this.#renew(session).catch((error) => {
      say(explain(error), "error");
      this.render();
    });
  }

  /**
   * A new token with the stored hash; one renewal at a time. If the credentials are refused the page logs out; a
   * playback goes on until the streaming service ends it (its grace period), as the server decides.
   */
  #renew(session: Session): Promise<string> {
    session.renewal ??= (async () => {
      try {
        session.token = await (await this.#requireMain().getAuthenticator())!.refreshAuthorization(
          session.user,
          session.passwordHash,
        );
        return session.token;
      } catch (error) {
        if (error instanceof IceFlix.Unauthorized && this.#session === session) {
          this.#session = undefined;
          throw new UserError(
            `the credentials of ${session.user} are no longer accepted; logged out` +
              (this.#playback ? " (the video stops when the server's grace period ends)" : ""),
          );
        }
        throw error;
      } finally {
        session.renewal = undefined;
      }
    })();
    return session.renewal;
  }

  /**
   * Runs `call` with the session's token; a refused token is renewed once (it may have just expired). A stream
   * limit is no token problem: a new token would be refused the same.
   */
  async #withToken<T>(session: Session, call: (token: string) => PromiseLike<T>): Promise<T> {
    try {
      return await call(await (session.renewal ?? session.token));
    } catch (error) {
      const refusedToken = error instanceof IceFlix.Unauthorized &&
        !(error instanceof IceFlixStreams.StreamLimitReached);
      if (!refusedToken || this.#session !== session) throw error;
      return await call(await this.#renew(session));
    }
  }

  // --- Catalog ---

  async search(text: string, mode: string): Promise<void> {
    const catalog = (await this.#requireMain().getCatalogService())!;
    let ids: string[];
    if (mode === "any" || mode === "all") {
      const tags = tagList(text);
      if (tags.length === 0) throw new UserError("type one or more tags, separated by commas");
      ids = await catalog.getTilesByTags(tags, mode === "all");
    } else {
      if (text.trim() === "") throw new UserError("type a name (or part of one) to search for");
      ids = await catalog.getTilesByName(text.trim(), mode === "exact");
    }
    const tiles = await Promise.all(ids.map((id) => catalog.getTile(id).catch(() => undefined)));
    const found = tiles.filter((tile): tile is IceFlix.Media => tile !== undefined);
    if (found.length === 0) {
      say(ids.length === 0 ? "nothing found" : "found titles, but no streaming service has them now");
      return;
    }
    this.#results = found;
    say(`${found.length} title(s) found: click one to select it`);
  }

  select(index: number): void {
    this.#selection = this.#results[index];
    say(`selected «${this.#selection.info.name}»`);
    this.render();
  }

  async rename(name: string): Promise<void> {
    const session = this.#requireSession("rename a title");
    const tile = this.#requireSelection("rename it");
    if (name.trim() === "") throw new UserError("type the new name");
    const catalog = (await this.#requireMain().getCatalogService())!;
    await this.#withToken(session, (token) => catalog.renameTile(tile.id, name.trim(), token));
    await this.#refreshTile(catalog, tile.id);
    say(`renamed to «${name.trim()}»`);
  }

  async editTags(text: string, add: boolean): Promise<void> {
    const session = this.#requireSession(add ? "add tags" : "remove tags");
    const tile = this.#requireSelection(add ? "tag it" : "untag it");
    const tags = tagList(text);
    if (tags.length === 0) throw new UserError("type one or more tags, separated by commas");
    const catalog = (await this.#requireMain().getCatalogService())!;
    await this.#withToken(
      session,
      (token) => add ? catalog.addTags(tile.id, tags, token) : catalog.removeTags(tile.id, tags, token),
    );
    await this.#refreshTile(catalog, tile.id);
    say(`${add ? "added" : "removed"}: ${tags.join(", ")}`);
  }

  /** Reads a title again after an edit, so the list and the selection show what the catalog now holds. */
  async #refreshTile(catalog: IceFlix.MediaCatalogPrx, id: string): Promise<void> {
    const tile = await catalog.getTile(id);
    this.#results = this.#results.map((known) => known.id === id ? tile : known);
    if (this.#selection?.id === id) this.#selection = tile;
  }

  // --- Playback ---

  async play(): Promise<void> {
    const session = this.#requireSession("play a title");
    const selected = this.#requireSelection("play it");
    if (this.#playback) await this.stop();
    const catalog = (await this.#requireMain().getCatalogService())!;
    const tile = await catalog.getTile(selected.id); // the provider that has it now
    const http = IceFlixWeb.HttpStreamingPrx.uncheckedCast(tile.provider!, "HttpStreaming");
    let stream: IceFlixWeb.HttpStream;
    try {
      stream = await this.#withToken(session, (token) => http.getHttpStream(tile.id, token));
    } catch (error) {
      if (error instanceof Ice.FacetNotExistException) {
        throw new UserError(`the streaming service of «${tile.info.name}» does not serve browsers`);
      }
      throw error;
    }
    const controller = stream.controller!;
    if (video.canPlayType(stream.mimeType) === "") {
      await controller.stop().catch(() => {});
      throw new UserError(cannotPlay(tile.info.name, stream.mimeType));
    }
    const sync = this.#addCallback(new SyncListener(() => this.#onTokenRequest()));
    const unsubscribe = await this.#subscribe(await controller.getSyncTopic(), sync);
    this.#playback = { tile, controller, url: stream.url, unsubscribe };
    video.src = stream.url;
    video.dataset.mimeType = stream.mimeType;
    await video.play();
    say(`playing «${tile.info.name}»`);
  }

  async stop(reason = "stopped", kind: "info" | "error" = "info"): Promise<void> {
    const playback = this.#playback;
    if (!playback) throw new UserError("nothing plays");
    this.#playback = undefined;
    this.#stopVideo();
    await playback.controller.stop().catch(() => {}); // gone already when the server ended it
    await playback.unsubscribe();
    say(reason, kind);
  }

  #stopVideo(): void {
    video.pause();
    video.removeAttribute("src");
    video.load();
  }

  /** The controller's sync topic asks for a token: send the current one (renewed first if it was revoked). */
  #onTokenRequest(): void {
    const playback = this.#playback;
    const session = this.#session;
    if (!playback || !session) return;
    this.#withToken(session, (token) => playback.controller.refreshAuthentication(token)).catch((error) => {
      say(`the stream asked for a new token and could not get one: ${explain(error)}`, "error");
    });
  }

  /** The video's own end, or a failure to load it. */
  async onVideoEvent(event: Event): Promise<void> {
    const playback = this.#playback;
    if (!playback) return;
    if (event.type === "ended") {
      await this.stop(`«${playback.tile.info.name}» is over`);
    } else if (video.error?.code === MediaError.MEDIA_ERR_SRC_NOT_SUPPORTED) {
      await this.stop(cannotPlay(playback.tile.info.name, video.dataset.mimeType ?? ""), "error");
    }
  }

  /**
   * Every second: the state line, and whether the stream still exists. A server that ends it (its token revoked and
   * not renewed within the grace period) refuses the URL, but what the browser buffered would play on: the page
   * stops it, as the controller's disappearance says.
   */
  async #tick(): Promise<void> {
    const playback = this.#playback;
    if (playback) {
      try {
        await playback.controller.ice_ping();
      } catch (error) {
        if (error instanceof Ice.ObjectNotExistException && this.#playback === playback) {
          await this.stop("the server ended the stream: its token expired and was not renewed in time", "error");
        }
      }
    }
    this.render();
  }
}

/** What the page says about a title this browser cannot decode. */
function cannotPlay(name: string, mimeType: string): string {
  const codec = mimeType.includes("avc1") ? "H.264" : mimeType.includes("vp8") ? "VP8" : mimeType;
  return `this browser cannot play «${name}» (${codec}: ${mimeType}); titles in WebM (VP8, VP9) play everywhere`;
}

/** Runs a button's action: its error becomes the page's message, and the page is redrawn. */
function action(run: (event: Event) => Promise<void> | void): (event: Event) => void {
  return async (event) => {
    if (event.type === "submit" || event.type === "click") event.preventDefault();
    try {
      await run(event);
    } catch (error) {
      say(explain(error), "error");
    }
    client.render();
  };
}

const value = (id: string) => $<HTMLInputElement>(id).value;
const client = new WebClient(await (await fetch("config.json")).json() as PageConfig);
$("connect").addEventListener("click", action(() => client.connect()));
$("login").addEventListener(
  "submit",
  action(async () => {
    const password = $<HTMLInputElement>("password");
    try {
      await client.login(value("user").trim(), password.value);
    } finally {
      password.value = "";
    }
  }),
);
$("logout").addEventListener("click", action(async () => (await client.logout(), say("logged out"))));
$("search").addEventListener("submit", action(() => client.search(value("query"), value("mode"))));
$("rename").addEventListener("submit", action(() => client.rename(value("new-name"))));
$("tags").addEventListener("submit", action(() => client.editTags(value("tag-list"), true)));
$("remove-tags").addEventListener("click", action(() => client.editTags(value("tag-list"), false)));
$("play").addEventListener("click", action(() => client.play()));
$("stop").addEventListener("click", action(() => client.stop()));
for (const type of ["ended", "error"]) video.addEventListener(type, action((event) => client.onVideoEvent(event)));
action(() => client.connect())(new Event("load"));
