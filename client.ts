/**
 * The IceFlix client (spec 3): a plain-text menu to connect to Main, log in,
 * search the catalog, edit titles and play them.
 *
 *   ./run_client [MAIN_PROXY] [--retries N] [--retry-pause SECONDS] [--player gst|ffplay|headless]
 *   ./run_client --script FILE        (or commands piped on stdin)
 *
 * On a terminal it shows a menu, a state line above the prompt (connected,
 * user, selection, what plays and for how long) and reads the password
 * without echo. When stdin is not a terminal it runs in script mode: the same
 * commands, one a line, each echoed with `> ` and followed by a `state:` line,
 * so scripts and tests can follow what happens; the exit code is 1 if any
 * command failed. Logs go to stderr (`IceFlix.LogLevel`, default warn).
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
import dgram from "node:dgram";
import { createObjectAdapter } from "./acceptor.ts";
import { isUnreachable } from "./discovery.ts";
import { EventChannel, TOPICS } from "./events.ts";
import { type Player, PLAYER_CHOICES, type PlayerChoice, startPlayer } from "./player.ts";
import {
  createLogger,
  describeError,
  keepAliveOnStrayErrors,
  loadProperties,
  type Logger,
  secondsProperty,
} from "./service.ts";
import { sha256Hex } from "./users.ts";

/** Main's proxy when neither the command line nor `IceFlix.Client.MainProxy` names one (spec: port 10010). */
const DEFAULT_MAIN_PROXY = "Main:tcp -h 127.0.0.1 -p 10010";

/** How long any remote call may take before the client gives up on it (ms). */
const CALL_TIMEOUT = 5000;

/**
 * After this long without a new frame (ms) playback ends by itself: RTP has no
 * end-of-stream, so silence is how the end of the title (or a blocked UDP port) shows.
 */
const VIDEO_SILENCE_LIMIT = 10_000;

/** A problem the user can act on; its message is shown as it is. */
class UserError extends Error {}

/** One line that says what went wrong, for the user: never a stack trace. */
function explain(error: unknown): string {
  if (error instanceof UserError) return error.message;
  if (error instanceof IceFlix.Unauthorized) return "not authorized: the services refused the session (log in again)";
  if (error instanceof IceFlix.WrongMediaId) return `unknown media id ${error.id} (search again)`;
  if (error instanceof IceFlix.TemporaryUnavailable) return "temporarily unavailable, try again later";
  if (isUnreachable(error)) return `a service did not answer (${describeError(error)})`;
  return describeError(error);
}

/** The words of a command line; "double quotes" keep spaces inside one word. */
function words(text: string): string[] {
  return [...text.matchAll(/"([^"]*)"|(\S+)/g)].map((match) => match[1] ?? match[2]);
}

/** A UDP port nobody uses right now, where the streaming service will send the video. */
function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    socket.once("error", reject);
    socket.bind(0, () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `m:ss` for a duration in ms. */
function clock(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

/**
 * Where commands come from and messages go. On a terminal it keeps a small
 * line editor in cbreak mode (no echo, Ctrl-C still a signal), so the state
 * line and the prompt can be redrawn under messages that arrive at any time
 * and the password is never shown. Otherwise it reads plain lines.
 */
class Terminal {
  readonly interactive = Deno.stdin.isTerminal();
  readonly #encoder = new TextEncoder();
  readonly #stateLine: () => string;
  /** Complete lines not read yet, and whether stdin has ended. */
  readonly #lines: string[] = [];
  #ended = false;
  #wake: (() => void) | undefined;
  /** What the user is typing, and the prompt it belongs to while one is shown. */
  #buffer = "";
  #prompt: { text: string; hidden: boolean; withState: boolean } | undefined;
  #drawnRows = 0;
  #escape: "" | "esc" | "sequence" = "";

  constructor(stateLine: () => string) {
    this.#stateLine = stateLine;
    if (this.interactive) Deno.stdin.setRaw(true, { cbreak: true });
    this.#readInput();
  }

  /** Shows `text` (one or more lines) above the prompt. */
  print(text: string): void {
    this.#erase();
    this.#write(`${text}\n`);
    this.#draw();
  }

  /**
   * Reads one line, showing `prompt` on a terminal; `hidden` input is not
   * echoed. Resolves to `undefined` when the input has ended (Ctrl-D, EOF).
   */
  async readLine(prompt: string, options: { hidden?: boolean; withState?: boolean } = {}): Promise<string | undefined> {
    const hidden = options.hidden ?? false;
    if (this.interactive && this.#lines.length > 0) {
      // A line typed ahead appears after its prompt, so the transcript reads right.
      const line = this.#lines.shift()!;
      this.#write(`${prompt}${hidden ? "" : line}\n`);
      return line;
    }
    this.#prompt = { text: prompt, hidden, withState: options.withState ?? false };
    this.#draw();
    while (this.#lines.length === 0 && !this.#ended) await new Promise<void>((wake) => this.#wake = wake);
    return this.#lines.shift();
  }

  /** Redraws the state line and the prompt (the elapsed time of what plays changes every second). */
  refresh(): void {
    this.#erase();
    this.#draw();
  }

  /** Ends the prompt shown, if any, and gives the terminal back as it was; later messages are plain lines. */
  close(): void {
    if (!this.interactive) return;
    if (this.#prompt) this.#write("\n");
    this.#prompt = undefined;
    this.#drawnRows = 0;
    Deno.stdin.setRaw(false);
  }

  async #readInput(): Promise<void> {
    let partial = "";
    try {
      for await (const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
        if (this.interactive) {
          this.#keys(text);
        } else {
          const lines = (partial + text).split("\n");
          partial = lines.pop()!;
          this.#lines.push(...lines.map((line) => line.replace(/\r$/, "")));
        }
        this.#wake?.();
      }
    } catch {
      // stdin closed under us: the same as its end.
    }
    if (partial !== "") this.#lines.push(partial);
    this.#ended = true;
    this.#wake?.();
  }

  /** The line editor: printable characters, Backspace, Ctrl-U (clear), Enter, Ctrl-D (end); escape sequences are ignored. */
  #keys(text: string): void {
    for (const char of text) {
      if (this.#escape === "esc") {
        this.#escape = char === "[" || char === "O" ? "sequence" : "";
        continue;
      }
      if (this.#escape === "sequence") {
        if (char >= "@" && char <= "~") this.#escape = "";
        continue;
      }
      if (char === "\r" || char === "\n") {
        if (this.#prompt) this.#write("\n");
        this.#prompt = undefined;
        this.#drawnRows = 0;
        this.#lines.push(this.#buffer);
        this.#buffer = "";
        continue;
      }
      if (char === "\x04") {
        if (this.#buffer === "") this.#ended = true;
      } else if (char === "\x7f" || char === "\b") this.#buffer = [...this.#buffer].slice(0, -1).join("");
      else if (char === "\x15") this.#buffer = "";
      else if (char === "\x1b") this.#escape = "esc";
      else if (char === "\t") this.#buffer += " ";
      else if (char >= " ") this.#buffer += char;
      if (this.#prompt) this.refresh();
    }
  }

  #columns(): number {
    try {
      return Deno.consoleSize().columns || 80;
    } catch {
      return 80;
    }
  }

  #draw(): void {
    if (!this.interactive || !this.#prompt) return;
    const columns = this.#columns();
    let text = "";
    this.#drawnRows = 0;
    if (this.#prompt.withState) {
      const state = this.#stateLine();
      text += `${state}\n`;
      this.#drawnRows += Math.max(1, Math.ceil([...state].length / columns));
    }
    const input = this.#prompt.text + (this.#prompt.hidden ? "" : this.#buffer);
    text += input;
    this.#drawnRows += Math.max(1, Math.ceil([...input].length / columns));
    this.#write(text);
  }

  /** Clears what #draw wrote: up to its first row, then to the end of the screen. */
  #erase(): void {
    if (this.#drawnRows === 0) return;
    this.#write(`\r${this.#drawnRows > 1 ? `\x1b[${this.#drawnRows - 1}A` : ""}\x1b[J`);
    this.#drawnRows = 0;
  }

  #write(text: string): void {
    const bytes = this.#encoder.encode(text);
    for (let written = 0; written < bytes.length;) written += Deno.stdout.writeSync(bytes.subarray(written));
  }
}

/** A logged-in user. The password itself is never kept: only its hash, to renew the token. */
interface Session {
  user: string;
  passwordHash: string;
  /** The current token; undefined while it is being renewed. */
  token: string | undefined;
  renewal: Promise<string> | undefined;
}

/** What plays now. */
interface Playback {
  media: IceFlix.Media;
  controller: IceFlix.StreamControllerPrx;
  syncTopic: string;
  /** Our StreamerSync servant, subscribed to the controller's topic. */
  sync: Ice.ObjectPrx;
  player: Player;
  port: number;
  startedAt: number;
  /** The frame count at the last tick, and when it last grew (ms): a silent stream has ended. */
  framesSeen: number;
  lastVideoAt: number;
}

/** A title of the last search: its Media, or why it cannot be shown now. */
interface Result {
  id: string;
  media?: IceFlix.Media;
  problem?: string;
}

/** The services Main hands out. */
interface MainServices {
  auth: IceFlix.AuthenticatorPrx;
  catalog: IceFlix.MediaCatalogPrx;
}

/** How to ask Main for each service. */
const FROM_MAIN: { [K in keyof MainServices]: (main: IceFlix.MainPrx) => PromiseLike<MainServices[K]> } = {
  auth: (main) => main.getAuthenticator(),
  catalog: (main) => main.getCatalogService(),
};

/** What to call each service in messages. */
const SERVICE_NAMES: { [K in keyof MainServices]: string } = {
  auth: "authentication service",
  catalog: "catalog service",
};

/** Receives `revoke(token)` for every expired token on topic AuthenticationStatus. */
class RevocationListener extends IceFlix.TokenRevocation {
  constructor(readonly onRevoke: (token: string) => void) {
    super();
  }

  revoke(token: string): void {
    this.onRevoke(token);
  }
}

/** Receives `requestAuthentication()` from the StreamController on its sync topic. */
class StreamSync extends IceFlix.StreamerSync {
  constructor(readonly onRequest: () => void) {
    super();
  }

  requestAuthentication(): void {
    this.onRequest();
  }
}

/** How the client is set up: properties `IceFlix.Client.*`. */
interface ClientSettings {
  mainProxy: string;
  retries: number;
  retryPause: number;
  player: PlayerChoice;
}

/** The client's state and what each command does with it. */
class Client {
  readonly #communicator: Ice.Communicator;
  readonly #adapter: Ice.ObjectAdapter;
  readonly #events: EventChannel;
  readonly #logger: Logger;
  readonly #terminal: Terminal;
  readonly #settings: ClientSettings;
  readonly #revocations: Ice.ObjectPrx;
  #main: IceFlix.MainPrx | undefined;
  #connected = false;
  #services: Partial<MainServices> = {};
  #session: Session | undefined;
  #results: Result[] = [];
  #selection: IceFlix.Media | undefined;
  #playback: Playback | undefined;
  readonly #ticker: ReturnType<typeof setInterval>;
  #ticks = 0;
  /** Whether a tick's remote calls are still under way (they may take up to CALL_TIMEOUT). */
  #tickBusy = false;

  constructor(adapter: Ice.ObjectAdapter, logger: Logger, terminal: Terminal, settings: ClientSettings) {
    this.#communicator = adapter.getCommunicator();
    this.#adapter = adapter;
    this.#logger = logger;
    this.#terminal = terminal;
    this.#settings = settings;
    this.#events = new EventChannel(this.#communicator, logger);
    this.#revocations = adapter.addWithUUID(new RevocationListener((token) => this.#onRevoke(token)));
    this.#ticker = setInterval(() => this.#tick(), 1000);
  }

  /** connected · user · selection · playing, in one line. */
  stateLine(): string {
    const playback = this.#playback;
    let playing = "not playing";
    if (playback) {
      const frames = playback.player.frames;
      // The title is left out when it is the selected one, to keep the line short.
      const title = playback.media.id === this.#selection?.id ? "" : `«${playback.media.info.name}» `;
      const silence = Math.floor((Date.now() - playback.lastVideoAt) / 1000);
      playing = `playing ${title}${clock(Date.now() - playback.startedAt)}` +
        (frames === undefined ? "" : `, ${frames} frames received`) +
        (silence >= 3 ? `, no video for ${silence} s` : "");
    }
    return [
      this.#connected ? "connected" : "not connected",
      this.#session ? `user ${this.#session.user}` : "not logged in",
      this.#selection ? `selected «${this.#selection.info.name}»` : "nothing selected",
      playing,
    ].join(" · ");
  }

  /** Whether something plays now. */
  get playing(): boolean {
    return this.#playback !== undefined;
  }

  // --- Connection (spec 3.1) ---

  /** Connects to Main at `proxyText` (default: the configured one), verifying that it is a Main. */
  async connect(proxyText = this.#settings.mainProxy): Promise<void> {
    let proxy: Ice.ObjectPrx;
    try {
      proxy = this.#communicator.stringToProxy(proxyText).ice_invocationTimeout(CALL_TIMEOUT);
    } catch (error) {
      throw new UserError(`"${proxyText}" is not a proxy (${describeError(error)})`);
    }
    this.#settings.mainProxy = proxyText;
    this.#main = undefined;
    this.#connected = false;
    this.#services = {};
    this.#terminal.print(`connecting to Main at ${proxyText}`);
    // checkedCast asks the object whether it implements IceFlix::Main: the proxy is verified, not just parsed.
    const main = await this.#retrying("", () => IceFlix.MainPrx.checkedCast(proxy));
    if (!main) throw new UserError(`${proxyText} is not an IceFlix Main service`);
    this.#main = main;
    this.#connected = true;
    this.#terminal.print("connected");
  }

  /**
   * Runs `call` (a call to Main), again up to `IceFlix.Client.Retries`
   * attempts in all with `IceFlix.Client.RetryPause` seconds between them,
   * while Main is unreachable or answers TemporaryUnavailable (spec 3.1),
   * telling the user about each attempt.
   */
  async #retrying<T>(unavailableService: string, call: () => PromiseLike<T>): Promise<T> {
    const { retries, retryPause } = this.#settings;
    for (let attempt = 1;; attempt++) {
      try {
        const result = await call();
        this.#connected = true;
        return result;
      } catch (error) {
        const unavailable = error instanceof IceFlix.TemporaryUnavailable;
        if (!unavailable && !isUnreachable(error)) throw error;
        const problem = unavailable
          ? `Main has no ${unavailableService} available yet`
          : `Main at ${this.#settings.mainProxy} is unreachable (${describeError(error)})`;
        if (!unavailable) this.#connected = false;
        if (attempt >= retries) {
          throw new UserError(`${problem}; gave up after ${attempt} attempt${attempt === 1 ? "" : "s"}`);
        }
        this.#terminal.print(`${problem}; attempt ${attempt} of ${retries}, retrying in ${retryPause} s`);
        await delay(retryPause * 1000);
      }
    }
  }

  /** The Authenticator or MediaCatalog Main hands out, asked once and kept while it answers. */
  async #service<K extends keyof MainServices>(kind: K): Promise<MainServices[K]> {
    const known = this.#services[kind];
    if (known) return known;
    const main = this.#main;
    if (!main) throw new UserError("not connected to Main (use connect)");
    const service: MainServices[K] | null = await this.#retrying(SERVICE_NAMES[kind], () => FROM_MAIN[kind](main));
    if (!service) throw new UserError(`Main handed out no ${SERVICE_NAMES[kind]}`);
    const bounded = service.ice_invocationTimeout(CALL_TIMEOUT) as MainServices[K];
    this.#services[kind] = bounded;
    return bounded;
  }

  /** Calls a service Main hands out; if that one is gone, asks Main for another live one and calls it. */
  async #use<K extends keyof MainServices, T>(kind: K, call: (service: MainServices[K]) => PromiseLike<T>): Promise<T> {
    try {
      return await call(await this.#service(kind));
    } catch (error) {
      if (!isUnreachable(error)) throw error;
      this.#logger.info(`${kind} service unreachable (${describeError(error)}); asking Main for another`);
      delete this.#services[kind];
      return await call(await this.#service(kind));
    }
  }

  // --- Session (spec 3.1) ---

  /** Logs `user` in (another user's session ends first) and starts renewing the token as it expires. */
  async login(user: string, password: string): Promise<void> {
    this.require("logging in", { connection: true });
    // Only the SHA-256 of the password leaves the client (spec 3.1); the password itself is not kept.
    const passwordHash = await sha256Hex(password);
    let token: string;
    try {
      token = await this.#use("auth", (auth) => auth.refreshAuthorization(user, passwordHash));
    } catch (error) {
      if (error instanceof IceFlix.Unauthorized) throw new UserError("wrong user name or password");
      throw error;
    }
    if (this.#session) await this.logout();
    this.#session = { user, passwordHash, token, renewal: undefined };
    // IceStorm calls our listener for every revoked token; ours is renewed as it expires.
    await this.#events.subscribe(TOPICS.authenticationStatus, this.#revocations);
    this.#terminal.print(`logged in as ${user}`);
  }

  /** Ends the session: stops playing, stops renewing the token, forgets the credentials. */
  async logout(): Promise<void> {
    const session = this.#session;
    if (!session) throw new UserError("not logged in");
    if (this.#playback) await this.stop("stopped (logging out)");
    this.#session = undefined;
    await this.#events.unsubscribe(TOPICS.authenticationStatus, this.#revocations);
    this.#terminal.print(`logged out ${session.user}`);
  }

  #onRevoke(token: string): void {
    const session = this.#session;
    if (!session || session.token !== token) return;
    this.#renewToken(session).then(
      () => this.#logger.info("session token expired; renewed"),
      (error) => this.#terminal.print(`the session token expired and could not be renewed: ${explain(error)}`),
    );
  }

  /** Gets a new token with the stored hash; one renewal at a time. Ends the session if the credentials are refused. */
  #renewToken(session: Session): Promise<string> {
    session.token = undefined;
    session.renewal ??= this.#use("auth", (auth) => auth.refreshAuthorization(session.user, session.passwordHash))
      .then((token) => session.token = token)
      .catch(async (error) => {
        if (error instanceof IceFlix.Unauthorized && this.#session === session) {
          if (this.#playback) await this.stop("stopped");
          this.#session = undefined;
          await this.#events.unsubscribe(TOPICS.authenticationStatus, this.#revocations);
          throw new UserError(`the credentials of ${session.user} are no longer accepted; logged out`);
        }
        throw error;
      })
      .finally(() => session.renewal = undefined);
    return session.renewal;
  }

  /**
   * Runs `call` with the session's token. A refused token may have expired
   * without our hearing of it (an event lost, or not arrived yet): then the
   * token is renewed and the call made once more.
   */
  async #withToken<T>(call: (token: string) => PromiseLike<T>): Promise<T> {
    const session = this.#session;
    if (!session) throw new UserError("not logged in (use login)");
    try {
      return await call(session.token ?? await (session.renewal ?? this.#renewToken(session)));
    } catch (error) {
      if (!(error instanceof IceFlix.Unauthorized)) throw error;
      return await call(await this.#renewToken(session));
    }
  }

  // --- Searching and selecting (spec 3.2) ---

  /** Searches by name, exact or contained, case-insensitive. */
  searchByName(name: string, exact: boolean): Promise<void> {
    const what = exact ? `named "${name}"` : name === "" ? "at all" : `whose name contains "${name}"`;
    return this.#search(what, (catalog) => catalog.getTilesByName(name, exact));
  }

  /** Searches by tags, having all of them or any. */
  searchByTags(tags: string[], all: boolean): Promise<void> {
    return this.#search(
      `with ${all ? "all" : "any"} of the tags ${tags.join(", ")}`,
      (catalog) => catalog.getTilesByTags(tags, all),
    );
  }

  async #search(what: string, find: (catalog: IceFlix.MediaCatalogPrx) => PromiseLike<string[]>): Promise<void> {
    const ids = await this.#use("catalog", find);
    if (ids.length === 0) {
      const keep = this.#results.length > 0 ? " (the previous results are still selectable)" : "";
      this.#terminal.print(`no titles ${what}${keep}`);
      return;
    }
    const results = await Promise.all(ids.map((id) =>
      this.#use("catalog", (catalog) => catalog.getTile(id)).then(
        (media): Result => ({ id, media }),
        (error): Result => ({
          id,
          problem: error instanceof IceFlix.TemporaryUnavailable
            ? "not available now: no streaming service holding it is online"
            : explain(error),
        }),
      )
    ));
    this.#results = results;
    this.#terminal.print(`${results.length} title${results.length === 1 ? "" : "s"} ${what}:`);
    this.showResults();
  }

  /** Prints the last search results with their numbers. */
  showResults(): void {
    if (this.#results.length === 0) throw new UserError("no search results yet (use search, exact or tags)");
    const lines = this.#results.map(({ id, media, problem }, index) => {
      const number = `${String(index + 1).padStart(3)}.`;
      if (!media) return `${number} [id ${id.slice(0, 12)}…] ${problem}`;
      const tags = media.info.tags.length > 0 ? `  [${media.info.tags.join(", ")}]` : "  (no tags)";
      return `${number} ${media.info.name}${tags}`;
    });
    this.#terminal.print(lines.join("\n"));
  }

  /** Selects result `number` (1-based) of the last search. */
  select(number: number): void {
    if (this.#results.length === 0) throw new UserError("no search results to select from (search first)");
    const result = this.#results[number - 1];
    if (!Number.isInteger(number) || !result) {
      throw new UserError(`choose a result number from 1 to ${this.#results.length}`);
    }
    if (!result.media) throw new UserError(`result ${number} is ${result.problem}`);
    this.#selection = result.media;
    this.#terminal.print(`selected ${number}: «${result.media.info.name}»`);
  }

  // --- Editing (spec 3.3) ---

  /** Renames the selected title. */
  rename(name: string): Promise<void> {
    if (name === "") throw new UserError("the new name cannot be empty");
    return this.#edit((catalog, id, token) => catalog.renameTile(id, name, token));
  }

  /** Adds tags to the selected title. */
  addTags(tags: string[]): Promise<void> {
    if (tags.length === 0) throw new UserError("no tags given");
    return this.#edit((catalog, id, token) => catalog.addTags(id, tags, token));
  }

  /** Removes tags from the selected title (tags it does not have are ignored). */
  removeTags(tags: string[]): Promise<void> {
    if (tags.length === 0) throw new UserError("no tags given");
    return this.#edit((catalog, id, token) => catalog.removeTags(id, tags, token));
  }

  async #edit(change: (catalog: IceFlix.MediaCatalogPrx, id: string, token: string) => PromiseLike<void>) {
    this.require("editing", { session: true, selection: true });
    const { id } = this.#selection!;
    await this.#withToken((token) => this.#use("catalog", (catalog) => change(catalog, id, token)));
    const media = await this.#use("catalog", (catalog) => catalog.getTile(id));
    this.#selection = media;
    this.#results = this.#results.map((result) => result.id === id ? { id, media } : result);
    const tags = media.info.tags.length > 0 ? media.info.tags.join(", ") : "none";
    this.#terminal.print(`done: «${media.info.name}», tags: ${tags}`);
  }

  /** Says, in one error, everything `action` still needs. */
  require(action: string, needs: { connection?: boolean; session?: boolean; selection?: boolean }): void {
    const missing = [
      needs.connection && !this.#connected && "a connection to Main (connect)",
      needs.session && !this.#session && "a session (login)",
      needs.selection && !this.#selection && "a selected title (search, then its number)",
    ].filter(Boolean);
    if (missing.length > 0) throw new UserError(`${action} needs ${missing.join(" and ")}`);
  }

  // --- Playing (spec 3.4) ---

  /**
   * Plays the selected title: a StreamController from the title's provider,
   * our StreamerSync servant on its sync topic, the SDP for a free UDP port
   * of ours, and a local player fed with that SDP.
   */
  async play(): Promise<void> {
    this.require("playing", { connection: true, session: true, selection: true });
    if (this.#playback) await this.stop("stopped");
    // The catalog knows which live provider holds the title now.
    const { id } = this.#selection!;
    const media = await this.#use("catalog", (catalog) => catalog.getTile(id));
    const provider = media.provider.ice_invocationTimeout(CALL_TIMEOUT);
    let controller: IceFlix.StreamControllerPrx;
    try {
      controller = (await this.#withToken((token) => provider.getStream(media.id, token)))
        .ice_invocationTimeout(CALL_TIMEOUT);
    } catch (error) {
      if (!isUnreachable(error)) throw error;
      throw new UserError(
        `the streaming service holding «${media.info.name}» did not answer (${describeError(error)})`,
      );
    }
    const sync = this.#adapter.addWithUUID(new StreamSync(() => this.#onAuthenticationRequest()));
    let syncTopic = "";
    try {
      syncTopic = await controller.getSyncTopic();
      await this.#events.subscribe(syncTopic, sync);
      const port = await freeUdpPort();
      const sdp = await this.#withToken((token) => controller.getSDP(token, port));
      const player = startPlayer(this.#settings.player, sdp, media.info.name);
      const now = Date.now();
      const playback = {
        media,
        controller,
        syncTopic,
        sync,
        player,
        port,
        startedAt: now,
        framesSeen: 0,
        lastVideoAt: now,
      };
      this.#playback = playback;
      player.ended.then((reason) => {
        if (this.#playback === playback) this.stop(`stream ended (${reason})`).catch(() => {});
      });
      this.#terminal.print(`playing «${media.info.name}» on UDP port ${port} (player: ${player.description})`);
    } catch (error) {
      await this.#release(controller, syncTopic, sync);
      throw error;
    }
  }

  /** Stops what plays: the player, our subscription, the controller. */
  async stop(reason = "stopped"): Promise<void> {
    const playback = this.#playback;
    if (!playback) throw new UserError("nothing is playing");
    this.#playback = undefined;
    await this.#release(playback.controller, playback.syncTopic, playback.sync, playback.player);
    const frames = playback.player.frames === undefined ? "" : `, ${playback.player.frames} frames received`;
    const elapsed = clock(Date.now() - playback.startedAt);
    this.#terminal.print(`${reason}: «${playback.media.info.name}» after ${elapsed}${frames}`);
  }

  async #release(controller: IceFlix.StreamControllerPrx, syncTopic: string, sync: Ice.ObjectPrx, player?: Player) {
    const unsubscribed = syncTopic === "" ? Promise.resolve() : this.#events.unsubscribe(syncTopic, sync);
    await Promise.allSettled([player?.stop(), unsubscribed.then(() => controller.stop())]);
    try {
      this.#adapter.remove(sync.ice_getIdentity());
    } catch {
      // Removed already.
    }
  }

  /** The controller's token was revoked: send it the current (renewed) one before its grace period ends. */
  async #onAuthenticationRequest(): Promise<void> {
    const playback = this.#playback;
    if (!playback) return;
    try {
      await this.#withToken((token) => playback.controller.refreshAuthentication(token));
      this.#logger.info("the stream asked for a new token; sent it");
    } catch (error) {
      this.#terminal.print(`the stream asked for a new token and could not get one: ${explain(error)}`);
    }
  }

  /**
   * Every second: refresh the state line while playing and watch the video
   * arrive; check every 3 s that the controller still exists (it is removed
   * when its grace period runs out, or when its service stops); renew the
   * IceStorm subscriptions every 5 s.
   */
  async #tick(): Promise<void> {
    this.#ticks++;
    const playback = this.#playback;
    if (playback) this.#terminal.refresh();
    if (this.#tickBusy) return;
    this.#tickBusy = true;
    try {
      if (playback) await this.#watchVideo(playback);
      if (playback && this.#playback === playback && this.#ticks % 3 === 0) {
        try {
          await playback.controller.ice_ping();
        } catch (error) {
          if (this.#playback === playback) await this.stop(`the server ended the stream (${describeError(error)})`);
        }
      }
      if (this.#ticks % 5 === 0) await this.#events.maintain();
    } catch (error) {
      this.#logger.warn(describeError(error));
    } finally {
      this.#tickBusy = false;
    }
  }

  /** Notes new frames; ends playback after VIDEO_SILENCE_LIMIT without any (players that count frames). */
  async #watchVideo(playback: Playback): Promise<void> {
    const frames = playback.player.frames;
    if (frames === undefined || this.#playback !== playback) return;
    if (frames > playback.framesSeen) {
      playback.framesSeen = frames;
      playback.lastVideoAt = Date.now();
    } else if (Date.now() - playback.lastVideoAt >= VIDEO_SILENCE_LIMIT) {
      const seconds = VIDEO_SILENCE_LIMIT / 1000;
      await this.stop(
        frames === 0
          ? `no video arrived in ${seconds} s (can the streaming service reach UDP port ${playback.port} here?)`
          : `stream ended (no video for ${seconds} s: the title is over)`,
      );
    }
  }

  /** Leaves cleanly: stops playing, ends the session, unsubscribes, destroys the communicator. */
  async close(): Promise<void> {
    clearInterval(this.#ticker);
    if (this.#playback) await this.stop("stopped (leaving)").catch(() => {});
    if (this.#session) await this.logout().catch(() => {});
    await this.#events.close();
    await this.#communicator.destroy();
  }
}

/** The menu. */
const HELP = `IceFlix commands (a word in [brackets] is optional; if a needed one is missing, it is asked for):
  connect [PROXY]          connect to Main (default: the proxy given at start)
  login [USER]             log in; the password is asked without echo
  logout                   end the session (stops renewing its token)
  search [TEXT]            titles whose name contains TEXT (all titles if empty)
  exact NAME               titles named exactly NAME (case does not matter)
  tags [any|all] TAG...    titles with any (default) or all of the tags
  results                  the last results again
  NUMBER                   select that title of the last results (also: select NUMBER)
  rename NEW NAME          rename the selected title (needs login)
  addtags TAG...           add tags to the selected title (needs login)
  removetags TAG...        remove tags from the selected title (needs login)
  play                     play the selected title (needs login); the menu stays usable
  stop                     stop playing
  status                   show the state line
  wait SECONDS             wait, showing the state each second while playing (for scripts)
  help                     this menu
  quit                     leave (also Ctrl-D or Ctrl-C)
Tags are separated by spaces; "double quotes" keep a tag with spaces together.`;

/**
 * Runs one command line. Returns false for quit. Missing arguments are asked
 * for on the next line (with the password hidden on a terminal).
 */
async function runCommand(client: Client, terminal: Terminal, line: string): Promise<boolean> {
  const command = line.trim().split(/\s+/, 1)[0].toLowerCase();
  const rest = line.trim().slice(command.length).trim();
  const ask = async (prompt: string, hidden = false) => {
    const answer = await terminal.readLine(prompt, { hidden });
    if (answer === undefined) throw new UserError("input ended");
    return answer.trim();
  };
  // On a terminal, say what is missing before asking for arguments. A script's argument lines are read
  // regardless, so that a password or a name is never run as the next command.
  const checkFirst = (action: string, needs: Parameters<Client["require"]>[1]) => {
    if (terminal.interactive) client.require(action, needs);
  };
  const tagsOrAsk = async (prompt: string) => words(rest || await ask(prompt));

  if (/^\d+$/.test(command)) {
    client.select(Number(command));
    return true;
  }
  switch (command) {
    case "connect":
      await client.connect(rest || undefined);
      break;
    case "login": {
      checkFirst("logging in", { connection: true });
      const user = rest || await ask("User: ");
      if (user === "") throw new UserError("no user name given");
      const password = await terminal.readLine("Password (not shown): ", { hidden: true });
      if (password === undefined) throw new UserError("input ended");
      await client.login(user, password);
      break;
    }
    case "logout":
      await client.logout();
      break;
    case "search":
      await client.searchByName(rest, false);
      break;
    case "exact":
      await client.searchByName(rest || await ask("Exact name: "), true);
      break;
    case "tags": {
      let tags = await tagsOrAsk("Tags: ");
      const mode = tags[0]?.toLowerCase();
      if (mode === "any" || mode === "all") tags = tags.slice(1);
      if (tags.length === 0) throw new UserError("no tags given");
      await client.searchByTags(tags, mode === "all");
      break;
    }
    case "results":
      client.showResults();
      break;
    case "select":
      client.select(Number(rest || await ask("Number: ")));
      break;
    case "rename":
      checkFirst("editing", { session: true, selection: true });
      await client.rename(rest || await ask("New name: "));
      break;
    case "addtags":
      checkFirst("editing", { session: true, selection: true });
      await client.addTags(await tagsOrAsk("Tags to add: "));
      break;
    case "removetags":
      checkFirst("editing", { session: true, selection: true });
      await client.removeTags(await tagsOrAsk("Tags to remove: "));
      break;
    case "play":
      await client.play();
      break;
    case "stop":
      await client.stop();
      break;
    case "status":
      terminal.print(client.stateLine());
      break;
    case "wait": {
      const seconds = Number(rest);
      if (!(seconds > 0)) throw new UserError("wait needs a number of seconds");
      for (const end = Date.now() + seconds * 1000; Date.now() < end;) {
        await delay(Math.min(1000, end - Date.now()));
        if (client.playing && !terminal.interactive) terminal.print(`state: ${client.stateLine()}`);
      }
      break;
    }
    case "help":
    case "?":
      terminal.print(HELP);
      break;
    case "quit":
    case "exit":
      return false;
    default:
      throw new UserError(`unknown command "${command}" (help lists them)`);
  }
  return true;
}

/** The client's own options, turned into the properties they stand for; the rest is left to Ice. */
const OPTIONS: Record<string, string> = {
  "--retries": "IceFlix.Client.Retries",
  "--retry-pause": "IceFlix.Client.RetryPause",
  "--player": "IceFlix.Client.Player",
};

const USAGE = `usage: run_client [MAIN_PROXY] [--retries N] [--retry-pause SECONDS] [--player ${
  PLAYER_CHOICES.join("|")
}]
                  [--script FILE] [--Name=value ...]`;

/** Reads the command line and the configuration; throws UserError on nonsense. */
function readSettings(args: string[]): { properties: Ice.Properties; settings: ClientSettings } {
  const iceArgs: string[] = [];
  let mainProxy: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const [name, inline] = args[i].split(/=(.*)/s, 2);
    if (name in OPTIONS) {
      const value = inline ?? args[++i];
      if (value === undefined) throw new UserError(`${name} needs a value`);
      iceArgs.push(`--${OPTIONS[name]}=${value}`);
    } else if (!args[i].startsWith("-") && mainProxy === undefined) {
      mainProxy = args[i];
    } else if (args[i].startsWith("--") && args[i].includes("=")) {
      iceArgs.push(args[i]);
    } else {
      throw new UserError(`unknown argument "${args[i]}"\n${USAGE}`);
    }
  }
  const properties = loadProperties(iceArgs);
  const retries = Number(properties.getPropertyWithDefault("IceFlix.Client.Retries", "3"));
  if (!Number.isInteger(retries) || retries < 1) throw new UserError("the number of retries must be 1 or more");
  const player = properties.getPropertyWithDefault("IceFlix.Client.Player", "gst") as PlayerChoice;
  if (!PLAYER_CHOICES.includes(player)) throw new UserError(`the player must be one of ${PLAYER_CHOICES.join(", ")}`);
  // IceStorm calls us back (revocations, stream sync) at this adapter; loopback unless configured.
  if (properties.getProperty("ClientAdapter.Endpoints") === "") {
    properties.setProperty("ClientAdapter.Endpoints", "tcp -h 127.0.0.1");
  }
  return {
    properties,
    settings: {
      mainProxy: mainProxy ?? properties.getPropertyWithDefault("IceFlix.Client.MainProxy", DEFAULT_MAIN_PROXY),
      retries,
      retryPause: secondsProperty(properties, "IceFlix.Client.RetryPause", 10),
      player,
    },
  };
}

async function main(): Promise<void> {
  let configuration;
  if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
    console.log(`${USAGE}\n\n${HELP}`);
    Deno.exit(0);
  }
  try {
    configuration = readSettings([...Deno.args]);
  } catch (error) {
    console.error(`run_client: ${(error as Error).message}`);
    Deno.exit(2);
  }
  const { properties, settings } = configuration;
  if (properties.getProperty("IceFlix.LogLevel") === "") properties.setProperty("IceFlix.LogLevel", "warn");
  const logger = createLogger("client", properties);
  keepAliveOnStrayErrors(logger);

  const initData = new Ice.InitializationData();
  initData.properties = properties;
  const communicator = Ice.initialize(initData);
  // The client serves too: IceStorm delivers token revocations and stream sync requests to this adapter.
  const adapter = await createObjectAdapter(communicator, "ClientAdapter");
  await adapter.activate();

  const terminal: Terminal = new Terminal((): string => client.stateLine());
  const client: Client = new Client(adapter, logger, terminal, settings);

  let failures = 0;
  let leaving: Promise<never> | undefined;
  const leave = () =>
    leaving ??= (async () => {
      terminal.close();
      await client.close().catch((error: unknown) => logger.warn(`while leaving: ${describeError(error)}`));
      Deno.exit(terminal.interactive || failures === 0 ? 0 : 1);
    })();
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, leave);

  const attempt = async (action: () => Promise<unknown>) => {
    try {
      await action();
    } catch (error) {
      failures++;
      logger.debug((error as Error).stack ?? String(error));
      terminal.print(`error: ${explain(error)}`);
    }
  };
  if (terminal.interactive) terminal.print(`IceFlix client\n${HELP}`);
  await attempt(() => client.connect());
  while (true) {
    const line = await terminal.readLine("iceflix> ", { withState: true });
    if (line === undefined) break;
    if (line.trim() === "" || line.trim().startsWith("#")) continue;
    if (!terminal.interactive) terminal.print(`> ${line.trim()}`);
    let goOn = true;
    await attempt(async () => goOn = await runCommand(client, terminal, line));
    if (!terminal.interactive) terminal.print(`state: ${client.stateLine()}`);
    if (!goOn) break;
  }
  await leave();
}

await main();
