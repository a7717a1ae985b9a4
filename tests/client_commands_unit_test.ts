/**
 * Unit tests of client_commands.ts and client_settings.ts: the word
 * splitter, the parser of every command (quotes included), completion, and
 * the help and README table rendered from the one command table. Pure code,
 * milliseconds, no permissions (`deno task test:unit`).
 *
 * @module
 */
import assert from "node:assert/strict";
import helpFile from "../client_help.txt" with { type: "text" };
import readme from "../README.md" with { type: "text" };
import {
  abbreviate,
  CommandError,
  COMMANDS,
  commandTableMarkdown,
  completeCommand,
  helpText,
  parseCommand,
} from "../client_commands.ts";
import { readSettings, SettingsError } from "../client_settings.ts";

/** The command name and argument parts of a parsed line, for short assertions. */
function parsed(line: string) {
  const command = parseCommand(line);
  if (!command) return undefined;
  const { spec, ...rest } = command;
  return { name: spec.name, ...Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== undefined)) };
}

Deno.test("parseCommand: quotes keep spaces and are removed, for every command that takes words", () => {
  assert.deepEqual(parsed('search "bouncing"'), { name: "search", text: "bouncing", missing: false });
  assert.deepEqual(parsed('search "two  spaces" more'), { name: "search", text: "two  spaces more", missing: false });
  assert.deepEqual(parsed("search"), { name: "search", text: "", missing: false });
  assert.deepEqual(parsed('exact "Test Card"'), { name: "exact", text: "Test Card", missing: false });
  assert.deepEqual(parsed('rename "Quoted Name"'), { name: "rename", text: "Quoted Name", missing: false });
  assert.deepEqual(parsed("rename   Test    Card"), { name: "rename", text: "Test Card", missing: false });
  assert.deepEqual(parsed('login "demo"'), { name: "login", text: "demo", missing: false });
  assert.deepEqual(parsed('connect "Main:tcp -h 127.0.0.1 -p 1"'), {
    name: "connect",
    text: "Main:tcp -h 127.0.0.1 -p 1",
    missing: false,
  });
  assert.deepEqual(parsed('addtags classic "test card"'), {
    name: "addtags",
    words: ["classic", "test card"],
    missing: false,
  });
  assert.deepEqual(parsed('removetags "" x'), { name: "removetags", words: ["", "x"], missing: false });
  assert.deepEqual(parsed('tags ALL e2e "two words"'), {
    name: "tags",
    words: ["e2e", "two words"],
    all: true,
    missing: false,
  });
  assert.deepEqual(parsed("tags any"), { name: "tags", words: [], all: false, missing: true });
  assert.deepEqual(parsed("tags all"), { name: "tags", words: [], all: true, missing: true });
  assert.deepEqual(parsed('select "2"'), { name: "select", number: 2, missing: false });
  assert.deepEqual(parsed("wait 0.5"), { name: "wait", number: 0.5, missing: false });
  assert.throws(() => parseCommand('search "open'), CommandError);
});

Deno.test("parseCommand: a number selects; missing words are asked; extra words are refused alike", () => {
  assert.deepEqual(parsed("  7 "), { name: "select", number: 7, missing: false });
  assert.deepEqual(parsed("select"), { name: "select", missing: true });
  assert.deepEqual(parsed("exact"), { name: "exact", text: "", missing: true });
  assert.deepEqual(parsed("login"), { name: "login", text: "", missing: true });
  assert.deepEqual(parsed("addtags"), { name: "addtags", words: [], missing: true });
  assert.equal(parseCommand(""), undefined);
  assert.equal(parseCommand("   # a comment"), undefined);
  assert.deepEqual(parsed("EXIT"), { name: "quit", missing: false });
  for (const line of ["select 2 extra", "1 2", "stop now", "login a b", "wait 1 2", "quit please"]) {
    assert.throws(() => parseCommand(line), CommandError, line);
  }
  assert.throws(() => parseCommand("select two"), /"two" is not a result number/);
  assert.throws(() => parseCommand("wait -1"), /wait needs a number of seconds/);
  assert.throws(() => parseCommand("srch ball"), /unknown command "srch"/);
});

Deno.test("completeCommand: command names, then any/all after tags", () => {
  assert.deepEqual(completeCommand("resu"), [["results "], "resu"]);
  assert.deepEqual(completeCommand("se"), [["search ", "select "], "se"]);
  assert.deepEqual(completeCommand("tags a"), [["any ", "all "], "a"]);
  assert.deepEqual(completeCommand("search ba"), [[], "search ba"]);
});

Deno.test("abbreviate: a long text is cut and counted", () => {
  assert.equal(abbreviate("short"), "short");
  const long = abbreviate("x".repeat(20_000));
  assert.ok(long.length < 100 && long.endsWith("… (20000 characters)"), long);
});

Deno.test("help, client_help.txt and the README's command table come from the command table", () => {
  const help = helpText();
  for (const spec of COMMANDS) assert.ok(help.includes(spec.usage), spec.usage);
  assert.ok(helpFile.trimEnd().endsWith(help), `client_help.txt must end with the help text:\n${help}`);
  assert.ok(readme.includes(commandTableMarkdown()), `README.md must hold the table:\n${commandTableMarkdown()}`);
});

Deno.test("readSettings: options are checked under the name typed; 0 s between attempts is fine", () => {
  const settings = (...args: string[]) => readSettings(args).settings;
  assert.deepEqual(settings("Main:tcp -p 1", "--attempts", "1", "--retry-pause=0", "--script", "x.txt"), {
    mainProxy: "Main:tcp -p 1",
    attempts: 1,
    retryPause: 0,
    player: "gst",
    scriptFile: "x.txt",
  });
  assert.throws(
    () => settings("--retry-pause", "-1"),
    /--retry-pause must be 0 or more seconds, not "-1"$/,
  );
  assert.throws(() => settings("--IceFlix.Client.RetryPause=-1"), /IceFlix.Client.RetryPause must be/);
  assert.throws(() => settings("--attempts", "0"), /--attempts must be a whole number, 1 or more, not "0"/);
  assert.throws(() => settings("--player", "vlc"), /--player must be one of gst, ffplay, headless/);
  assert.throws(() => settings("--attempts"), SettingsError);
  assert.throws(() => settings("--what"), /unknown argument "--what"/);
});
