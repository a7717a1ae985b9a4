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
 * The parts: `client_state.ts` (the state and what each command does),
 * `client_commands.ts` (commands and their words), `client_settings.ts`,
 * `client_terminal.ts`, `client_connection.ts` (Main), `client_session.ts`
 * (login and tokens), `client_playback.ts`, `client_text.ts` (messages).
 *
 * @module
 */
import { Ice } from "ice";
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
import { readSettings, SettingsError, USAGE } from "./client_settings.ts";
import { Client } from "./client_state.ts";
import { LineEditor, ScriptInput, type Terminal } from "./client_terminal.ts";
import { CancelledError, explain, UserError } from "./client_text.ts";
import { createLogger, describeError, keepAliveOnStrayErrors } from "./service.ts";

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
