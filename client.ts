/**
 * The IceFlix client (spec 3): a menu on a terminal to connect to Main, log
 * in, search the catalog, edit titles and play them.
 *
 *   ./run_client [MAIN_PROXY] [--attempts N] [--retry-pause SECONDS] [--player gst|ffplay|headless]
 *   ./run_client --script FILE        (or commands piped on stdin)
 *
 * On a terminal the state line above the prompt always tells where things
 * stand; a command that calls the platform runs while the prompt stays
 * usable, and Ctrl-C cancels it. In script mode (`--script FILE`, or stdin
 * not a terminal) the same commands run one after the other, each echoed
 * with `> ` and followed by a `state:` line; the exit code is 1 if any
 * failed. Logs go to stderr (`IceFlix.LogLevel`, default warn), above the
 * prompt on a terminal.
 *
 * The parts: `client_commands.ts` (commands and their words),
 * `client_settings.ts`, `client_terminal.ts`, `client_connection.ts` (Main),
 * `client_session.ts` (login and tokens), `client_playback.ts`,
 * `client_text.ts` (messages).
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
import { createObjectAdapter } from "./acceptor.ts";
import {
  abbreviate,
  type CommandArgument,
  completeCommand,
  helpText,
  parseArgument,
  parseCommand,
  type ParsedCommand,
  splitWords,
} from "./client_commands.ts";
import { MainConnection, pause } from "./client_connection.ts";
import { Playback } from "./client_playback.ts";
import { ClientSession } from "./client_session.ts";
import { type ClientSettings, readSettings, SettingsError, USAGE } from "./client_settings.ts";
import { LineEditor, ScriptInput, type Terminal } from "./client_terminal.ts";
import { CancelledError, compareTitles, count, describeTags, explain, UserError } from "./client_text.ts";
import { EventChannel } from "./events.ts";
import { createLogger, describeError, keepAliveOnStrayErrors, type Logger } from "./service.ts";

/** A title of the last search: its Media, or why it cannot be shown now. */
interface Result {
  id: string;
  media?: IceFlix.Media;
  problem?: string;
}

/** A remote command under way on a terminal. */
interface Operation {
  doing: string;
  cancel: AbortController;
}

/** The client's state and what each command does with it. */
class Client {
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

/**
 * Reads what `command` is missing: its words (asked with its question) and,
 * for login, the password. Returns undefined when cancelled.
 */
async function completeArguments(
  terminal: Terminal,
  command: ParsedCommand,
): Promise<{ argument: CommandArgument; password: string }> {
  const answer = async (read: Promise<string | undefined>) => {
    const line = await read;
    if (line === undefined) throw terminal.interactive ? new CancelledError() : new UserError("input ended");
    return line;
  };
  let argument: CommandArgument = command;
  if (command.missing) {
    const parsed = parseArgument(command.spec, splitWords(await answer(terminal.ask(command.spec.question!))));
    if (parsed.missing) throw new UserError(`${command.spec.name}: nothing given`);
    // "tags all" asks for the tags and keeps the mode.
    argument = { ...parsed, all: command.all || parsed.all };
  }
  const password = command.spec.name === "login" ? await answer(terminal.askSecret("Password (not shown): ")) : "";
  return { argument, password };
}

async function main(): Promise<void> {
  if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
    console.log(`${USAGE}\n\n${helpText()}`);
    Deno.exit(0);
  }
  let configuration;
  try {
    configuration = readSettings(Deno.args);
  } catch (error) {
    if (!(error instanceof SettingsError)) throw error;
    console.error(`run_client: ${error.message}`);
    Deno.exit(2);
  }
  const { properties, settings } = configuration;
  let script: Deno.FsFile | undefined;
  if (settings.scriptFile !== undefined) {
    try {
      script = await Deno.open(settings.scriptFile);
    } catch (error) {
      console.error(`run_client: cannot read ${settings.scriptFile} (${(error as Error).message})`);
      Deno.exit(2);
    }
  }
  const interactive = !script && Deno.stdin.isTerminal();

  // On a terminal, log lines are printed above the prompt, never inside it.
  let terminal: Terminal | undefined;
  const logger = createLogger("client", properties, (line) => {
    if (interactive && terminal) terminal.print(line);
    else console.error(line);
  });
  keepAliveOnStrayErrors(logger);
  const initData = new Ice.InitializationData();
  initData.properties = properties;
  const communicator = Ice.initialize(initData);
  // The client serves too: IceStorm delivers token revocations and stream sync requests to this adapter.
  const adapter = await createObjectAdapter(communicator, "ClientAdapter");
  await adapter.activate();
  const client = new Client(adapter, logger, settings);

  let failures = 0;
  let leaving: Promise<never> | undefined;
  const leave = () =>
    leaving ??= (async () => {
      terminal?.close();
      await client.close().catch((error: unknown) => logger.warn(`while leaving: ${describeError(error)}`));
      Deno.exit(interactive || failures === 0 ? 0 : 1);
    })();
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) Deno.addSignalListener(signal, leave);

  const fail = (error: unknown) => {
    failures++;
    logger.debug((error as Error).stack ?? String(error));
    client.print(`error: ${explain(error)}`);
  };
  /** Runs a remote command while the prompt stays usable; Ctrl-C cancels it. */
  const runInBackground = (doing: string, action: (signal: AbortSignal) => Promise<void>) => {
    const operation = { doing, cancel: new AbortController() };
    client.operation = operation;
    terminal?.refresh();
    action(operation.cancel.signal).catch((error) => {
      if (error instanceof CancelledError) client.print(`cancelled: ${doing}`);
      else fail(error);
    }).finally(() => {
      if (client.operation === operation) client.operation = undefined;
      terminal?.refresh();
    });
  };

  if (interactive) {
    terminal = new LineEditor(() => client.stateLine(), completeCommand, (hadText) => {
      if (client.operation) client.operation.cancel.abort();
      else if (!hadText) client.print("(to leave: quit or Ctrl-D)");
    });
    client.terminal = terminal;
    client.print("IceFlix client: type help for the commands; quit or Ctrl-D leaves");
    runInBackground("connecting", (signal) => client.connection.connect(undefined, signal));
  } else {
    terminal = new ScriptInput(script?.readable ?? Deno.stdin.readable);
    client.terminal = terminal;
    await client.connection.connect().catch(fail);
  }

  while (true) {
    const line = await terminal.nextLine();
    if (line === undefined) break;
    let command: ParsedCommand | undefined;
    try {
      command = parseCommand(line);
      if (command && !interactive) client.print(`> ${abbreviate(line.trim())}`);
    } catch (error) {
      if (!interactive) client.print(`> ${abbreviate(line.trim())}`);
      fail(error);
      if (!interactive) client.print(`state: ${client.stateLine()}`);
      continue;
    }
    if (!command) continue;
    if (command.spec.name === "quit") {
      if (!interactive) client.print(`state: ${client.stateLine()}`);
      break;
    }
    const { spec } = command;
    try {
      if (interactive && spec.remote && client.operation) {
        throw new UserError(`${client.operation.doing} is under way; wait, or press Ctrl-C to cancel it`);
      }
      // On a terminal, say what is missing before asking for words. A script's answer lines are read
      // regardless, so that a password or a name is never run as the next command.
      if (interactive) client.checkBeforeAsking(spec.name);
      const { argument, password } = await completeArguments(terminal, command);
      if (interactive && spec.remote) {
        runInBackground(spec.doing ?? spec.name, (signal) => client.run(spec.name, argument, password, signal));
      } else {
        await client.run(spec.name, argument, password);
      }
    } catch (error) {
      if (error instanceof CancelledError) client.print("cancelled");
      else fail(error);
    }
    if (!interactive) client.print(`state: ${client.stateLine()}`);
  }
  await leave();
}

await main();
