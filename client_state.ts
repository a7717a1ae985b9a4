/**
 * The client's state (spec 3): the connection, the session, the last
 * results and the selection, what plays, the remote command under way; and
 * what each command does with them. The state line is drawn from here.
 *
 * @module
 */
import type { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
import { abbreviate, type CommandArgument, helpText } from "./client_commands.ts";
import { MainConnection, pause } from "./client_connection.ts";
import { Playback } from "./client_playback.ts";
import { ClientSession } from "./client_session.ts";
import type { ClientSettings } from "./client_settings.ts";
import type { Terminal } from "./client_terminal.ts";
import { CancelledError, compareTitles, count, describeTags, explain, UserError } from "./client_text.ts";
import { EventChannel } from "./events.ts";
import { describeError, type Logger } from "./log.ts";

/** A title of the last search: its Media, or why it cannot be shown now. */
interface Result {
  id: string;
  media?: IceFlix.Media;
  problem?: string;
}

/** A remote command under way on a terminal. */
export interface Operation {
  doing: string;
  cancel: AbortController;
}

/** The client's state and what each command does with it. */
export class Client {
  readonly #communicator: Ice.Communicator;
  readonly #adapter: Ice.ObjectAdapter;
  readonly #events: EventChannel;
  readonly #logger: Logger;
  readonly #settings: ClientSettings;
  readonly connection: MainConnection;
  readonly #session: ClientSession;
  #terminal: Terminal | undefined;
  #results: Result[] = [];
  #selection: IceFlix.Media | undefined;
  #playback: Playback | undefined;
  /** The remote command under way (terminal only). */
  operation: Operation | undefined;
  readonly #ticker: ReturnType<typeof setInterval>;
  #ticks = 0;
  /** Whether a tick's remote checks are still under way (they may take a call timeout). */
  #tickBusy = false;

  constructor(adapter: Ice.ObjectAdapter, logger: Logger, settings: ClientSettings) {
    this.#communicator = adapter.getCommunicator();
    this.#adapter = adapter;
    this.#logger = logger;
    this.#settings = settings;
    // The client tells the user about IceStorm in words (client_session.ts); the channel's own reports are debug.
    this.#events = new EventChannel(this.#communicator, { ...logger, warn: logger.debug, info: logger.debug });
    this.connection = new MainConnection(this.#communicator, settings, {
      print: (text) => this.print(text),
      changed: () => this.#terminal?.refresh(),
      back: () => this.#session.renewNow("Main answers again"),
    });
    this.#session = new ClientSession(this.connection, this.#events, adapter, logger, {
      print: (text) => this.print(text),
      ended: () => this.#stopPlaying("stopped (logged out)"),
    });
    this.#ticker = setInterval(() => this.#tick(), 1000);
  }

  /** Where messages go from now on. */
  set terminal(terminal: Terminal) {
    this.#terminal = terminal;
  }

  print(text: string): void {
    if (this.#terminal) this.#terminal.print(text);
    else console.log(text);
  }

  /** connected · user · selection · playing (· what runs), in one line. */
  stateLine(): string {
    const playing = this.#playback?.describe(this.#playback.media.id !== this.#selection?.id) ?? "not playing";
    return [
      this.connection.state,
      this.#session.user ? `user ${this.#session.user}` : "not logged in",
      this.#selection ? `selected «${this.#selection.info.name}»` : "nothing selected",
      playing,
      // "connecting · ... · connecting…" would say it twice.
      ...(this.operation
        ? [`${this.connection.state === this.operation.doing ? "" : `${this.operation.doing}… `}(Ctrl-C cancels)`]
        : []),
    ].join(" · ");
  }

  /** Says, in one error, everything `action` still needs. */
  require(action: string, needs: { session?: boolean; selection?: boolean; results?: boolean }): void {
    const missing = [
      needs.session && !this.#session.user && "a session (login)",
      needs.selection && !this.#selection && "a selected title (search, then its number)",
      needs.results && this.#results.length === 0 && "search results (search, exact or tags)",
    ].filter(Boolean);
    if (missing.length > 0) throw new UserError(`${action} needs ${missing.join(" and ")}`);
  }

  /** What must hold before a command's missing words are asked for (on a terminal). */
  checkBeforeAsking(name: string): void {
    if (name === "select") this.require("selecting", { results: true });
    if (["rename", "addtags", "removetags"].includes(name)) this.require("editing", { session: true, selection: true });
  }

  /** Runs one parsed command with its argument (and, for login, the password). */
  async run(name: string, argument: CommandArgument, password: string, signal?: AbortSignal): Promise<void> {
    switch (name) {
      case "connect":
        return await this.connection.connect(argument.text || undefined, signal);
      case "login":
        return await this.#session.login(argument.text!, password, () => this.logout(), signal);
      case "logout":
        return await this.logout();
      case "search":
      case "exact": {
        const text = argument.text!;
        const exact = name === "exact";
        const what = exact
          ? `named "${abbreviate(text)}"`
          : text === ""
          ? "in the catalog"
          : `whose name contains "${abbreviate(text)}"`;
        return await this.#search(what, (catalog) => catalog.getTilesByName(text, exact), signal);
      }
      case "tags": {
        const tags = argument.words!;
        const what = `with ${argument.all ? "all" : "any"} of the tags ${abbreviate(tags.join(", "))}`;
        return await this.#search(what, (catalog) => catalog.getTilesByTags(tags, argument.all!), signal);
      }
      case "results":
        return this.#showResults();
      case "select":
        return this.#select(argument.number!);
      case "rename":
        return await this.#edit((catalog, id, token) => catalog.renameTile(id, argument.text!, token), signal);
      case "addtags":
        return await this.#edit((catalog, id, token) => catalog.addTags(id, argument.words!, token), signal);
      case "removetags":
        return await this.#edit((catalog, id, token) => catalog.removeTags(id, argument.words!, token), signal);
      case "play":
        return await this.#play(signal);
      case "stop":
        if (!this.#playback) throw new UserError("nothing is playing");
        return await this.#stopPlaying("stopped");
      case "status":
        return this.#status();
      case "wait":
        for (const end = Date.now() + argument.number! * 1000; Date.now() < end;) {
          await pause(Math.min(1000, end - Date.now()), signal);
          if (this.#playback && !this.#terminal?.interactive) this.print(`state: ${this.stateLine()}`);
        }
        return;
      case "help":
        return this.print(helpText());
    }
  }

  /** Ends the session, stopping what plays first. */
  async logout(): Promise<void> {
    if (!this.#session.user) throw new UserError("not logged in");
    await this.#stopPlaying("stopped (logging out)");
    await this.#session.logout();
  }

  // --- Searching and selecting (spec 3.2) ---

  async #search(
    what: string,
    find: (catalog: IceFlix.MediaCatalogPrx) => PromiseLike<string[]>,
    signal?: AbortSignal,
  ): Promise<void> {
    const ids = await this.connection.use("catalog", find, signal);
    if (ids.length === 0) {
      const keep = this.#results.length > 0 ? " (the previous results are still selectable)" : "";
      this.print(`no titles ${what}${keep}`);
      return;
    }
    const results = await Promise.all(
      ids.map((id) =>
        this.connection.use("catalog", (catalog) => catalog.getTile(id), signal).then(
          (media): Result => ({ id, media }),
          (error): Result => {
            if (error instanceof CancelledError) throw error;
            const problem = error instanceof IceFlix.TemporaryUnavailable
              ? "not available now: no streaming service holding it is online"
              : explain(error, "the catalog service");
            return { id, problem };
          },
        )
      ),
    );
    results.sort((a, b) =>
      compareTitles({ id: a.id, name: a.media?.info.name }, { id: b.id, name: b.media?.info.name })
    );
    this.#results = results;
    this.print(`${count(results.length, "title")} ${what}:`);
    this.#showResults();
  }

  #showResults(): void {
    if (this.#results.length === 0) throw new UserError("no search results yet (use search, exact or tags)");
    const lines = this.#results.map(({ id, media, problem }, index) => {
      const number = `${String(index + 1).padStart(3)}.`;
      if (!media) return `${number} [id ${id.slice(0, 12)}…] ${problem}`;
      return `${number} ${media.info.name}  ${describeTags(media.info.tags)}`;
    });
    this.print(lines.join("\n"));
  }

  #select(number: number): void {
    this.require("selecting", { results: true });
    const result = this.#results[number - 1];
    if (!Number.isInteger(number) || !result) {
      throw new UserError(`choose a result number from 1 to ${this.#results.length}`);
    }
    if (!result.media) throw new UserError(`result ${number} is ${result.problem}`);
    this.#selection = result.media;
    this.print(`selected ${number}: «${result.media.info.name}»`);
  }

  // --- Editing (spec 3.3) ---

  async #edit(
    change: (catalog: IceFlix.MediaCatalogPrx, id: string, token: string) => PromiseLike<void>,
    signal?: AbortSignal,
  ): Promise<void> {
    this.require("editing", { session: true, selection: true });
    const { id } = this.#selection!;
    await this.#session.withToken(
      (token) => this.connection.use("catalog", (catalog) => change(catalog, id, token)),
      signal,
    );
    const media = await this.connection.use("catalog", (catalog) => catalog.getTile(id), signal);
    this.#selection = media;
    this.#results = this.#results.map((result) => result.id === id ? { id, media } : result);
    this.print(`done: «${media.info.name}»  ${describeTags(media.info.tags)}`);
  }

  // --- Playing (spec 3.4) ---

  async #play(signal?: AbortSignal): Promise<void> {
    this.require("playing", { session: true, selection: true });
    await this.#stopPlaying("stopped");
    // The catalog knows which live provider holds the title now.
    const { id } = this.#selection!;
    const media = await this.connection.use("catalog", (catalog) => catalog.getTile(id), signal);
    this.#playback = await Playback.start(
      {
        adapter: this.#adapter,
        events: this.#events,
        session: this.#session,
        logger: this.#logger,
        player: this.#settings.player,
        print: (text) => this.print(text),
        ended: (playback, reason) => {
          if (this.#playback === playback) this.#stopPlaying(reason).catch(() => {});
        },
      },
      media,
      signal,
    );
  }

  /** Stops what plays, if anything. */
  async #stopPlaying(reason: string): Promise<void> {
    const playback = this.#playback;
    if (!playback) return;
    this.#playback = undefined;
    await playback.stop(reason);
  }

  #status(): void {
    const iceStorm = this.#session.user
      ? this.#session.iceStormAnswers ? "answers (token expiries arrive)" : "does not answer"
      : "used once logged in";
    this.print(
      [
        `Main at ${this.connection.proxyText}: ${this.connection.state}`,
        `IceStorm at ${this.#session.iceStormProxy}: ${iceStorm}`,
      ].join("\n"),
    );
  }

  /**
   * Every second: watch Main, redraw the state line while playing and watch
   * the video arrive; every 3 s check the controller and IceStorm; every 5 s
   * renew the IceStorm subscriptions.
   */
  async #tick(): Promise<void> {
    this.#ticks++;
    this.connection.watch();
    const playback = this.#playback;
    if (playback) this.#terminal?.refresh();
    if (this.#tickBusy) return;
    this.#tickBusy = true;
    try {
      if (playback) await playback.check(this.#ticks % 3 === 0);
      if (this.#ticks % 3 === 0) await this.#session.checkIceStorm();
      if (this.#ticks % 5 === 0) await this.#events.maintain();
    } catch (error) {
      this.#logger.warn(describeError(error));
    } finally {
      this.#tickBusy = false;
    }
  }

  /** Leaves cleanly: stops playing, ends the session, unsubscribes, destroys the communicator. */
  async close(): Promise<void> {
    clearInterval(this.#ticker);
    this.operation?.cancel.abort();
    await this.#stopPlaying("stopped (leaving)").catch(() => {});
    if (this.#session.user) await this.#session.logout().catch(() => {});
    await this.#events.close();
    await this.#communicator.destroy();
  }
}
